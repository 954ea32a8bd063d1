"""Server-rendered pages for officers. Views read through selectors and write through services."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from accounts.errors import DomainError, ValidationFailed
from accounts.models import Role, User
from accounts.services import access_denied_record
from compression.selectors import runs_visible_to
from evaluations.models import FlipDirection, Slice
from evaluations.selectors import flip_groups, flips_filtered
from evaluations.services.chat_runs import is_chat
from governance.agreement import kappa_text
from governance.candidate_source import GATE_BASIS, external_run_page
from governance.charts import gate_chart
from governance.models import DecisionKind, EscalationStatus, ReleaseStatus, ReviewTask, RiskTaxonomy, ThresholdPolicy
from governance.rounds import distill_section
from governance.selectors import (
    escalations_visible_to,
    mitigations_for,
    release_allowed_decisions,
    release_evidence,
    release_warnings,
    releases_visible_to,
    review_task_view,
    unstable_flips_not_sampled,
)
from governance.services.access import access_read
from governance.services.escalations import escalation_resolve
from governance.services.releases import (
    default_rollout_stages,
    release_advance_rollout,
    release_decide,
    release_start_rollout,
)
from governance.services.reviews import review_submit
from governance.web_progress import release_progress_context, running_context
from governance.web_release import (
    FLIP_BASIS_COUNTED,
    FLIPS_PER_PAGE,
    STABLE_FILTER,
    comparison_table,
    decision_unavailable,
    evaluation_conditions,
    export_unavailable,
    flip_options,
    flip_pages,
    known_subgroups,
    review_rows,
    stability_section,
    subgroup_errors,
)
from ledger.selectors import ledger_events_for

DECISION_COPY = {
    DecisionKind.APPROVE: ("Approve release", "The release moves to approved once the tier's approvals are in."),
    DecisionKind.REJECT: ("Reject release", "Rejection is final: the candidate will not be deployed."),
    DecisionKind.HALT: ("Halt release", "Everything stops until the tier's authority resumes it."),
    DecisionKind.RESUME: ("Resume release", "The release returns to the state it was halted in."),
    DecisionKind.ROLL_BACK: ("Roll back release", "Roll-back is final: the candidate is withdrawn from service."),
}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    if request.user.role == Role.REVIEWER:
        return redirect("web:reviews")
    releases = releases_visible_to(request.user)
    counts = dict(releases.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    status, refused = _choice_filters(request, {"status": ReleaseStatus.values})
    status = status["status"] or ""
    if status:
        releases = releases.filter(status=status)
    page = Paginator(releases.select_related("compression_run", "external_run").order_by("-updated_at"), 25).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "governance/dashboard.html",
        status=400 if refused else 200,
        context={
            "page": page,
            "status": status,
            "states": [(value, label, counts.get(value, 0)) for value, label in ReleaseStatus.choices],
            "awaiting": counts.get(ReleaseStatus.AWAITING_DECISION, 0),
            "escalations": escalations_visible_to(request.user).exclude(status=EscalationStatus.RESOLVED)[:20],
            "now": timezone.now(),
            **running_context(request.user),
        },
    )


def _choice_filters(request: HttpRequest, allowed: dict[str, list[str]]) -> tuple[dict[str, str | None], bool]:
    """Read choice filters from the query string. An unknown value is not applied: the page says so (and
    answers 400) rather than silently showing an empty or unfiltered list."""
    values, refused = {}, False
    for name, choices in allowed.items():
        value = request.GET.get(name) or None
        if value is not None and value not in choices:
            known = f"use one of {', '.join(choices)}" if choices else "there is none to choose from"
            messages.error(request, f"Unknown {name} “{value}”: {known}. Showing all.")
            value, refused = None, True
        values[name] = value
    return values, refused


@login_required
def release_detail(request: HttpRequest, pk: int) -> HttpResponse:
    release = access_read(
        actor=request.user,
        request=request,
        what=f"release page {pk}",
        object_id=pk,
        read=lambda: get_object_or_404(
            releases_visible_to(request.user).select_related(
                "comparison", "policy", "baseline_evaluation", "candidate_evaluation", "compression_run"
            ),
            pk=pk,
        ),
    )
    comparison = release.comparison
    results = (comparison.results or {}) if comparison else {}
    slices, subgroups = flip_groups(comparison_id=comparison.pk) if comparison else ([], [])
    flip_filters, refused = _choice_filters(
        request,
        {
            "slice": Slice.values,
            "subgroup": known_subgroups(subgroups, results),
            "direction": FlipDirection.values,
            "stable": list(STABLE_FILTER),
        },
    )
    options = flip_options(slices, subgroups, flip_filters)
    flips = None
    if comparison:
        selected = flips_filtered(
            comparison_id=comparison.pk,
            slice=flip_filters["slice"],
            subgroup=flip_filters["subgroup"],
            direction=flip_filters["direction"],
            stable=STABLE_FILTER.get(flip_filters["stable"] or ""),
        )
        flips = Paginator(selected, FLIPS_PER_PAGE).get_page(request.GET.get("page"))
    reviews = list(
        release.review_tasks.select_related("reviewer", "flip__example", "carried_from").order_by(
            "flip_id", "reviewer_id"
        )
    )
    submitted = comparison is not None and any(task.submitted_at for task in reviews)
    pages = (
        flip_pages(list(flips_filtered(comparison_id=comparison.pk).values_list("pk", flat=True))) if submitted else {}
    )
    allowed = release_allowed_decisions(release, request.user)
    run = release.compression_run
    distill = _distill(run) if run is not None else None
    if run is not None and distill is not None:
        distill["run_visible"] = runs_visible_to(request.user).filter(pk=run.pk).exists()
    return render(
        request,
        "governance/release.html",
        status=400 if refused else 200,
        context={
            "release": release,
            **release_progress_context(request.user, release),
            "external": external_run_page(release.external_run) if release.external_run_id else None,
            "warnings": release_warnings(release),
            "distill": distill,
            "gate_basis": GATE_BASIS,
            "gate": [{**v, "counted": FLIP_BASIS_COUNTED.get(v.get("flip_basis"), "")} for v in release.gate or []],
            # Escaped by governance.charts (every text is XML-escaped), so safe to inline.
            "chart": mark_safe(gate_chart(release.gate or [])),
            "table": comparison_table(results),
            "subgroup_errors": subgroup_errors(results, release.gate, comparison.statistics) if comparison else None,
            "conditions": evaluation_conditions(release),
            "stability": stability_section(comparison, release.policy),
            "flips": flips,
            "chat": is_chat((release.baseline_evaluation.config if release.baseline_evaluation_id else None) or {}),
            "flip_filters": flip_filters,
            "flip_query": urlencode({k: v for k, v in flip_filters.items() if v}),
            "slices": options["slices"],
            "directions": FlipDirection.choices,
            "subgroups": options["subgroups"],
            "decisions": release.decisions.select_related("actor"),
            "events": ledger_events_for(object_type="release", object_id=release.pk),
            "allowed": allowed,
            "escalations": release.escalations.order_by("status", "deadline"),
            "reviews": review_rows(reviews, pages),
            "kappa_words": kappa_text(release.review_outcome) if release.review_outcome else "",
            "mitigations": mitigations_for(release),
            "stages": release.rollout_stages.order_by("position"),
            "exports": release.exports.order_by("-created_at")[:10],
            "export_unavailable": export_unavailable(release),
            "grants": release.regulator_grants.select_related("regulator").order_by("-created_at"),
            "regulators": User.objects.filter(role=Role.REGULATOR, is_active=True).order_by("username")
            if request.user.role == Role.OFFICER
            else [],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def release_decide_confirm(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """A confirmation step: the officer sees what they are deciding on, writes a rationale, confirms. Only
    officers decide: another role gets 403 (recorded), once the release is in its scope (else 404)."""
    release = get_object_or_404(releases_visible_to(request.user), pk=pk)
    if request.user.role != Role.OFFICER:
        access_denied_record(actor=request.user, method=request.method, path=request.path, reason="role_not_allowed")
        raise PermissionDenied("Only governance officers decide on releases.")
    if kind not in DecisionKind.values:
        return redirect("web:release", pk=pk)
    title, consequence = DECISION_COPY[kind]
    titles = {k: t for k, (t, _) in DECISION_COPY.items()}
    error, closed = None, decision_unavailable(release, kind, titles)
    if request.method == "POST":
        try:
            release_decide(
                actor=request.user,
                release_id=pk,
                kind=kind,
                rationale=request.POST.get("rationale", ""),
                expected_version=_expected_version(request),
            )
        except DomainError as exc:
            # The service's refusal is recorded; the officer reads where the release stands, in words.
            release.refresh_from_db()
            closed = decision_unavailable(release, kind, titles)
            error = closed or exc.message
        else:
            messages.success(request, f"{title}: recorded.")
            return redirect("web:release", pk=pk)
    return render(
        request,
        "governance/decide.html",
        {
            "release": release,
            "kind": kind,
            "title": title,
            "consequence": consequence,
            "error": error,
            "closed": closed,
            "evidence": release_evidence(release),
            "rationale": request.POST.get("rationale", ""),
        },
        status=400 if error else 200,
    )


def _expected_version(request: HttpRequest) -> int:
    """The release version the form was rendered with; a form without a valid one is refused, never guessed."""
    raw = request.POST.get("expected_version", "").strip()
    if not raw:
        raise ValidationFailed(
            "The form did not say which version of the release you saw (expected_version); "
            "reload the release page and try again.",
            details={"expected_version": ["Required."]},
        )
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ValidationFailed(
            f"The form's release version {raw[:20]!r} is not a number; reload the release page and try again.",
            details={"expected_version": ["A whole number."]},
        )
    return int(raw)


def _distill(run) -> dict | None:
    """A behavioural_distill run's rounds, teachers, judge and prompt sets (None for other methods)."""
    return distill_section(method=run.method, status=run.status, rounds=run.rounds, data_source=run.data_source)


@login_required
@require_http_methods(["POST"])
def release_rollout(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the default staged rollout (the service's default_rollout_stages) or advance to the next stage."""
    release = get_object_or_404(releases_visible_to(request.user), pk=pk)
    try:
        expected_version = _expected_version(request)
    except DomainError as exc:
        # A malformed form: show the release page again with the reason, as a 400 (nothing was changed).
        messages.error(request, exc.message)
        response = release_detail(request, pk)
        response.status_code = 400
        return response
    try:
        if release.status == ReleaseStatus.APPROVED:
            release_start_rollout(
                actor=request.user, release_id=pk, stages=default_rollout_stages(), expected_version=expected_version
            )
        else:
            release_advance_rollout(actor=request.user, release_id=pk, expected_version=expected_version)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Rollout updated.")
    return redirect("web:release", pk=pk)


@login_required
@require_http_methods(["POST"])
def escalation_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    escalation = get_object_or_404(escalations_visible_to(request.user), pk=pk)
    try:
        escalation_resolve(actor=request.user, escalation_id=pk, resolution=request.POST.get("resolution", ""))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Escalation {pk} resolved.")
    return redirect("web:release", pk=escalation.release_id)


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    if request.user.role != Role.REVIEWER:  # tasks go to reviewers; others see which visible releases await them
        in_review = (
            releases_visible_to(request.user)
            .filter(status=ReleaseStatus.IN_REVIEW)
            .annotate(pending=Count("review_tasks", filter=Q(review_tasks__submitted_at__isnull=True)))
            .order_by("pk")
        )
        return render(request, "governance/reviews.html", {"not_reviewer": True, "in_review": in_review})
    # A judgement carried to a later release of the same artifacts (carried_from) is listed once, where it was made.
    tasks = ReviewTask.objects.filter(reviewer=request.user, carried_from__isnull=True).select_related(
        "flip__example", "release__comparison", "release__policy"
    )
    open_tasks = list(tasks.filter(submitted_at__isnull=True).order_by("deadline", "pk"))
    releases = {t.release_id: t.release for t in open_tasks}
    open_views = [review_task_view(t) for t in open_tasks]
    return render(
        request,
        "governance/reviews.html",
        {
            "open": open_views,
            # The Expected column only where some task's policy shows reviewers the expected label.
            "show_expected": any(t["expected_label_shown"] for t in open_views),
            "done": [
                review_task_view(t) for t in tasks.filter(submitted_at__isnull=False).order_by("-submitted_at")[:50]
            ],
            # Per release with open tasks: the flips left out of the sample because they moved with the batches.
            "not_sampled": [
                {"release": pk, "unstable": unstable_flips_not_sampled(releases[pk].comparison)}
                for pk in sorted(releases)
            ],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def review_detail(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(
        ReviewTask.objects.select_related("flip__example", "release__comparison", "release__policy"),
        pk=pk,
        reviewer=request.user,
    )
    error = None
    if request.method == "POST":
        try:
            review_submit(
                actor=request.user, task_id=pk, label=request.POST.get("label", ""), note=request.POST.get("note", "")
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, "Review submitted: the models behind A and B are now shown.")
            return redirect("web:review", pk=pk)
        task.refresh_from_db()
    return render(
        request,
        "governance/review.html",
        {
            "task": review_task_view(task),
            "error": error,
            "release_id": task.release_id,
            "not_sampled": unstable_flips_not_sampled(task.release.comparison),
        },
        status=400 if error else 200,
    )


@login_required
def taxonomy_page(request: HttpRequest) -> HttpResponse:
    taxonomies = RiskTaxonomy.objects.prefetch_related("failure_modes").order_by("name", "-version")
    return render(request, "governance/taxonomy.html", {"taxonomies": taxonomies})


@login_required
def policies_page(request: HttpRequest) -> HttpResponse:
    policies = ThresholdPolicy.objects.prefetch_related("rules").select_related("taxonomy").order_by("name", "-version")
    return render(request, "governance/policies.html", {"policies": policies})
