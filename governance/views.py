"""Server-rendered pages for officers. Views read through selectors and write through services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.errors import DomainError
from accounts.models import Role
from compression.selectors import runs_visible_to
from evaluations.models import FlipDirection, Slice
from evaluations.selectors import flips_filtered
from governance.charts import delta_chart
from governance.models import DecisionKind, ReleaseStatus
from governance.selectors import releases_visible_to
from governance.services.releases import release_decide, release_evidence
from ledger.selectors import ledger_events_for

DECISION_COPY = {
    DecisionKind.APPROVE: ("Approve release", "The release moves to approved once the tier's approvals are in."),
    DecisionKind.REJECT: ("Reject release", "Rejection is final: the candidate will not be deployed."),
    DecisionKind.HALT: ("Halt release", "Everything stops until the tier's authority resumes it."),
}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    releases = releases_visible_to(request.user)
    counts = dict(releases.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    status = request.GET.get("status", "")
    if status:
        releases = releases.filter(status=status)
    page = Paginator(releases.order_by("-updated_at"), 25).get_page(request.GET.get("page"))
    return render(request, "governance/dashboard.html", {
        "page": page, "status": status,
        "states": [(value, label, counts.get(value, 0)) for value, label in ReleaseStatus.choices],
        "awaiting": counts.get(ReleaseStatus.AWAITING_DECISION, 0),
    })


@login_required
def release_detail(request: HttpRequest, pk: int) -> HttpResponse:
    release = get_object_or_404(releases_visible_to(request.user).select_related("comparison"), pk=pk)
    flip_filters = {k: request.GET.get(k) or None for k in ("slice", "direction")}
    flips = None
    if release.comparison:
        flips = Paginator(flips_filtered(comparison_id=release.comparison_id, **flip_filters), 20).get_page(
            request.GET.get("page"))
    groups = (release.comparison.results or {}).get("groups", {}) if release.comparison else {}
    return render(request, "governance/release.html", {
        "release": release,
        "chart": delta_chart(release.gate or []),
        "groups": groups,
        "flips": flips, "flip_filters": flip_filters,
        "slices": Slice.choices, "directions": FlipDirection.choices,
        "decisions": release.decisions.select_related("actor"),
        "events": ledger_events_for(object_type="release", object_id=release.pk),
        "can_decide": request.user.role == Role.OFFICER and release.status == ReleaseStatus.AWAITING_DECISION,
        "can_halt": request.user.role in (Role.OFFICER, Role.ADMIN)
        and release.status not in (ReleaseStatus.HALTED, ReleaseStatus.REJECTED, ReleaseStatus.ROLLED_BACK),
    })


@login_required
@require_http_methods(["GET", "POST"])
def release_decide_confirm(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """A confirmation step: the officer sees what they are deciding on, writes a rationale, confirms."""
    release = get_object_or_404(releases_visible_to(request.user), pk=pk)
    if kind not in DecisionKind.values:
        return redirect("web:release", pk=pk)
    title, consequence = DECISION_COPY[kind]
    error = None
    if request.method == "POST":
        try:
            release_decide(actor=request.user, release_id=pk, kind=kind, rationale=request.POST.get("rationale", ""),
                           expected_version=int(request.POST.get("expected_version") or release.version))
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, f"{title}: recorded.")
            return redirect("web:release", pk=pk)
    return render(request, "governance/decide.html", {
        "release": release, "kind": kind, "title": title, "consequence": consequence, "error": error,
        "evidence": release_evidence(release), "rationale": request.POST.get("rationale", ""),
    }, status=400 if error else 200)


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(runs_visible_to(request.user), pk=pk)
    return render(request, "governance/run.html", {"run": run})
