"""Server-rendered pages for external runs (runs done outside SafeShrink, recorded through tracking/): the list,
one run with everything its engineer reported, and the owner's "create a release from this run". Everything on
these pages is reported, not verified; a release made from a run is evaluated by SafeShrink like any other."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from compression.selectors import experiments_visible_to
from evaluations.models import SuiteVersion
from governance.candidate_source import GATE_BASIS, external_run_page
from governance.charts import line_chart
from governance.models import ThresholdPolicy
from governance.services.candidates import release_create_from_external_run
from governance.views import _choice_filters
from governance.web_inventory import refuse_outside_inventory
from governance.web_runs import release_and_evaluate
from tracking.models import ExternalRun, ExternalRunStatus
from tracking.selectors import external_runs_visible_to, metric_history

RUNS_PER_PAGE = 25
CHART_POINTS = 500  # the newest values of a key drawn; the full history is in the API


@login_required
def external_run_list(request: HttpRequest) -> HttpResponse:
    refuse_outside_inventory(request)  # reviewers and regulators: 403, as /runs/ and each run's page
    runs = external_runs_visible_to(request.user)
    experiments = experiments_visible_to(request.user).filter(pk__in=runs.values("experiment")).order_by("name")
    experiment_ids = [str(pk) for pk in experiments.values_list("pk", flat=True)]
    filters, refused = _choice_filters(request, {"experiment": experiment_ids, "status": ExternalRunStatus.values})
    if filters["experiment"]:
        runs = runs.filter(experiment_id=int(filters["experiment"]))
    if filters["status"]:
        runs = runs.filter(status=filters["status"])
    page = Paginator(runs.order_by("-created_at", "-pk"), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "governance/external_runs.html",
        status=400 if refused else 200,
        context={
            "page": page,
            "filters": filters,
            "query": urlencode({k: v for k, v in filters.items() if v}),
            "experiments": experiments,
            "statuses": ExternalRunStatus.choices,
            "may_record": request.user.role in (Role.ENGINEER, Role.ADMIN),
            "sees_runs": request.user.role in (Role.ENGINEER, Role.OFFICER, Role.ADMIN),
        },
    )


def _may_release(user, run: ExternalRun) -> bool:
    return (
        user.role in (Role.ENGINEER, Role.ADMIN)
        and (user.role == Role.ADMIN or run.experiment.owner_id == user.pk)
        and run.status == ExternalRunStatus.FINISHED
        and run.output_artifact_id is not None
    )


def _charts(run: ExternalRun) -> list[dict]:
    histories: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in metric_history(run).values_list("key", "step", "value").iterator():
        histories.setdefault(key, []).append((step, value))
    return [
        {"key": key, "count": len(points), "chart": line_chart(points[-CHART_POINTS:])}
        for key, points in histories.items()
    ]


@login_required
def external_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    refuse_outside_inventory(request)  # 403 for reviewers and regulators; 404 outside an engineer's scope
    run = get_object_or_404(external_runs_visible_to(request.user), pk=pk)
    may_release = _may_release(request.user, run)
    return render(
        request,
        "governance/external_run.html",
        context={
            "run": run,
            "report": external_run_page(run),
            "charts": _charts(run),
            "releases": run.releases.order_by("-created_at"),
            "may_release": may_release,
            # Not the versions a release of this run already uses (refused: `release_exists`).
            "suite_versions": SuiteVersion.objects.select_related("suite")
            .exclude(pk__in=run.releases.values("suite_version"))
            .order_by("-pk")[:50]
            if may_release
            else [],
            "policies": ThresholdPolicy.objects.order_by("name", "-version") if may_release else [],
            "gate_basis": GATE_BASIS,
        },
    )


@login_required
@require_http_methods(["POST"])
def external_run_release(request: HttpRequest, pk: int) -> HttpResponse:
    """Create a release whose candidate is the run's output and start SafeShrink's own evaluation of it."""
    refuse_outside_inventory(request)
    run = get_object_or_404(external_runs_visible_to(request.user), pk=pk)

    def create(suite_version_id: int, policy_id: int):
        return release_create_from_external_run(
            actor=request.user, external_run_id=run.pk, suite_version_id=suite_version_id, policy_id=policy_id
        )

    return release_and_evaluate(request, create, "web:external-run", run.pk)
