"""The compression run page: status and progress, a behavioural_distill run's rounds, provenance, the releases
made from the run and, for its experiment's owner, a form that creates a release and starts its evaluation
(the same services as POST /api/releases/ and /evaluate/)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from accounts.errors import DomainError
from accounts.models import Role
from compression.models import CompressionRun, RunStatus
from compression.selectors import run_input_artifacts, runs_visible_to
from evaluations.models import SuiteKind, SuiteVersion
from governance.error_codes import GovernanceErrorCode
from governance.models import Release, ThresholdPolicy
from governance.rounds import distill_section
from governance.services.releases import release_create, release_start_evaluation
from governance.web_inventory import refuse_outside_inventory


def _may_release(user, run: CompressionRun) -> bool:
    return (
        user.role in (Role.ENGINEER, Role.ADMIN)
        and (user.role == Role.ADMIN or run.experiment.owner_id == user.pk)
        and run.status == RunStatus.SUCCEEDED
        and run.output_artifact_id is not None
    )


def provenance_view(statement: dict | None) -> dict | None:
    """The in-toto statement as the page shows it: what was built, by whom and when, from what (each dependency
    with its digest), and the environment's figures; the statement itself is downloadable as JSON."""
    if not statement:
        return None
    predicate = statement.get("predicate", {})
    build, details = predicate.get("buildDefinition", {}), predicate.get("runDetails", {})
    environment = next(
        (b.get("content", {}) for b in details.get("byproducts", []) if b.get("name") == "environment"), {}
    )
    hardware = environment.get("hardware", {})
    return {
        "subject": statement.get("subject", []),
        "build_type": build.get("buildType", ""),
        "builder": details.get("builder", {}).get("id", ""),
        "started": details.get("metadata", {}).get("startedOn", ""),
        "finished": details.get("metadata", {}).get("finishedOn", ""),
        "internal": build.get("internalParameters", {}),
        "dependencies": [
            {
                "name": d.get("name", "code" if str(d.get("uri", "")).startswith("git+") else ""),
                "uri": d.get("uri", ""),
                "digest": ", ".join(f"{k}: {v}" for k, v in (d.get("digest") or {}).items()),
            }
            for d in build.get("resolvedDependencies", [])
        ],
        "figures": [
            ("Wall time", f"{environment['wall_seconds']:.1f} s" if "wall_seconds" in environment else "—"),
            ("Peak memory", environment.get("peak_rss_bytes")),
            ("Size", environment.get("size_bytes")),
            ("Source size", environment.get("source_size_bytes")),
            ("Parameters", environment.get("parameter_count")),
            ("Source parameters", environment.get("source_parameter_count")),
        ],
        "cpu": hardware.get("cpu") or hardware.get("cpu_model") or "",
        "isa": hardware.get("isa") or hardware.get("cpu_instruction_sets") or [],
        "packages": environment.get("packages", {}),
    }


@login_required
def run_provenance(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's in-toto statement as a JSON download (404 before the run has succeeded)."""
    refuse_outside_inventory(request)
    run = get_object_or_404(runs_visible_to(request.user).exclude(provenance=None), pk=pk)
    response = JsonResponse(run.provenance, json_dumps_params={"indent": 2, "sort_keys": True})
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-provenance.intoto.json"'
    return response


def _release_suites(run: CompressionRun, kind: str):
    """The suite versions a release of this run may be evaluated on, newest first: of the model's kind, without
    the versions a behavioural_distill run trained or tested on and those a release of this run already uses (a
    release on either is refused: `prompt_overlap`, `release_exists`)."""
    used = [(run.data_source or {}).get(name, {}).get("suite_version") for name in ("stress_set", "heldback_split")]
    versions = SuiteVersion.objects.select_related("suite").filter(kind=kind).exclude(pk__in=[v for v in used if v])
    versions = versions.exclude(pk__in=run.releases.values("suite_version"))
    return versions.order_by("-pk")[:50]


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    refuse_outside_inventory(request)  # 403 for reviewers and regulators, as /runs/; 404 outside an engineer's scope
    run = get_object_or_404(runs_visible_to(request.user).select_related("experiment__base_artifact"), pk=pk)
    may_release = _may_release(request.user, run)
    kind = SuiteKind.CHAT if run.experiment.base_artifact.kind == "causal-lm" else SuiteKind.CLASSIFIER
    return render(
        request,
        "governance/run.html",
        {
            "run": run,
            "distill": distill_section(
                method=run.method, status=run.status, rounds=run.rounds, data_source=run.data_source
            ),
            "provenance": provenance_view(run.provenance),
            "inputs": run_input_artifacts(request.user, run),
            "releases": Release.objects.filter(compression_run=run).order_by("-pk"),
            "may_release": may_release,
            "suite_versions": _release_suites(run, kind) if may_release else [],
            "policies": ThresholdPolicy.objects.order_by("name", "-version") if may_release else [],
        },
    )


def _refusal(exc: DomainError) -> str:
    """A refused release in words; `release_exists` links to the release that already proposes the candidate."""
    existing = exc.details.get("release") if exc.code == GovernanceErrorCode.RELEASE_EXISTS else None
    if not existing:
        return exc.message
    url = reverse("web:release", kwargs={"pk": existing[0]})
    return format_html('{} <a href="{}">Open release #{}</a>.', exc.message, url, existing[0])


def release_and_evaluate(request: HttpRequest, create, back: str, pk: int) -> HttpResponse:
    """The release form of a run page (compression or external run): ``create(suite_version_id, policy_id)``
    makes the release; its evaluation starts; a refusal is said in words on the run page ``back``."""
    try:
        suite_version_id, policy_id = int(request.POST.get("suite_version", "")), int(request.POST.get("policy", ""))
    except ValueError:
        messages.error(request, "Choose a suite version and a threshold policy.")
        return redirect(back, pk=pk)
    try:
        release = create(suite_version_id, policy_id)
    except DomainError as exc:
        messages.error(request, _refusal(exc))
        return redirect(back, pk=pk)
    try:
        release_start_evaluation(actor=request.user, release_id=release.pk)
    except DomainError as exc:  # the release exists as a draft; the API can start its evaluation later
        messages.error(request, f"Release #{release.pk} was created, but its evaluation did not start: {exc.message}")
    else:
        messages.success(request, f"Release #{release.pk} created: SafeShrink is evaluating baseline and candidate.")
    return redirect("web:release", pk=release.pk)


@login_required
@require_http_methods(["POST"])
def run_release(request: HttpRequest, pk: int) -> HttpResponse:
    """Create a release whose candidate is the run's output and start SafeShrink's evaluation of it."""
    refuse_outside_inventory(request)
    run = get_object_or_404(runs_visible_to(request.user), pk=pk)

    def create(suite_version_id: int, policy_id: int):
        return release_create(
            actor=request.user, compression_run_id=run.pk, suite_version_id=suite_version_id, policy_id=policy_id
        )

    return release_and_evaluate(request, create, "web:run", run.pk)
