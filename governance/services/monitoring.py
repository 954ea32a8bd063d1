"""Authorities, mitigation templates and periodic revalidation."""

import datetime as dt
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from evaluations.models import EvaluationRun
from evaluations.services.comparisons import comparison_compute
from evaluations.services.profiles import config_profile
from evaluations.services.runs import evaluation_config, evaluation_run_request
from governance.models import (
    AuthorityGrant,
    EscalationTrigger,
    Release,
    ReleaseStatus,
    RevalidationSchedule,
    Zone,
)
from ledger.services import ledger_append

from .policies import policy_judge


def authority_grant(*, actor, user, risk_tier: str, level: int = 1) -> AuthorityGrant:
    if actor is not None and actor.role != Role.ADMIN:
        raise PermissionDenied("Only administrators grant authorities.")
    if user.role != Role.OFFICER:
        raise ValidationFailed("Authorities are granted to officers.", details={"user": ["Must be an officer."]})
    if not 1 <= level <= 3:
        raise ValidationFailed("Level is 1 to 3.", details={"level": ["Between 1 and 3."]})
    with transaction.atomic():
        grant, _ = AuthorityGrant.objects.update_or_create(
            user=user, risk_tier=risk_tier, defaults={"level": level, "granted_by": actor}
        )
        ledger_append(
            actor=actor,
            action="authority.granted",
            object_type="user",
            object_id=user.pk,
            payload={"risk_tier": risk_tier, "level": level},
        )
    return grant


LIVE = (ReleaseStatus.APPROVED, ReleaseStatus.ROLLING_OUT, ReleaseStatus.RELEASED)


def revalidation_schedule(*, actor, release_id: int, interval_hours: int) -> RevalidationSchedule:
    if actor.role not in (Role.OFFICER, Role.ADMIN):
        raise PermissionDenied("Only officers schedule revalidation.")
    if interval_hours < 1:
        raise ValidationFailed("The interval is at least one hour.", details={"interval_hours": ["At least 1."]})
    with transaction.atomic():
        release = Release.objects.select_for_update().get(pk=release_id)
        schedule, _ = RevalidationSchedule.objects.update_or_create(
            release=release,
            defaults={
                "interval_hours": interval_hours,
                "next_run_at": timezone.now() + dt.timedelta(hours=interval_hours),
            },
        )
        ledger_append(
            actor=actor,
            action="revalidation.scheduled",
            object_type="release",
            object_id=release.pk,
            payload={"interval_hours": interval_hours},
        )
    return schedule


def revalidations_run_due(*, now: dt.datetime | None = None) -> list[int]:
    """Start a fresh evaluation of each live release that is due; the gate is re-judged after it."""
    now = now or timezone.now()
    started = []
    for schedule_id in RevalidationSchedule.objects.filter(next_run_at__lte=now, release__status__in=LIVE).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            schedule = (
                RevalidationSchedule.objects.select_for_update()
                .select_related("release__experiment", "release__candidate")
                .get(pk=schedule_id)
            )
            if schedule.next_run_at > now:
                continue
            release = schedule.release
            schedule.runs += 1
            schedule.last_run_at = now
            schedule.next_run_at = now + dt.timedelta(hours=schedule.interval_hours)
            schedule.save(update_fields=["runs", "last_run_at", "next_run_at"])
            # the release's own deployment profile, so that the comparison with its baseline holds
            baseline_id = release.baseline_evaluation_id
            baseline = EvaluationRun.objects.filter(pk=baseline_id).only("config").first() if baseline_id else None
            baseline_config = baseline.config if baseline else {}
            config = evaluation_config(
                unsafe_labels=release.experiment.unsafe_labels,
                profile=config_profile(baseline_config) if baseline_config else None,
                revalidation=schedule.runs,
            )
            run = evaluation_run_request(
                actor=None, artifact=release.candidate, suite_version=release.suite_version, config=config
            )
            transaction.on_commit(partial(_enqueue_revalidation, run.pk, release.pk))
            started.append(release.pk)
    return started


def _enqueue_revalidation(run_id: int, release_id: int) -> None:
    from evaluations.services.runs import evaluation_queue, evaluation_run_enqueue
    from governance.tasks import complete_revalidation

    evaluation_run_enqueue(run_id)  # on its device's queue, like the release's own evaluations
    complete_revalidation.apply_async((release_id, run_id), queue=evaluation_queue(run_id))


def revalidation_complete(*, release_id: int, evaluation_id: int) -> str:
    """Compare the fresh candidate evaluation with the original baseline; red opens an escalation."""
    from compression.models import RunStatus

    from .escalations import escalation_open
    from .releases import EvaluationsPending

    release = Release.objects.get(pk=release_id)
    run = EvaluationRun.objects.get(pk=evaluation_id)
    if not run.is_terminal:
        raise EvaluationsPending(f"revalidation evaluation {evaluation_id} still running")
    if run.status != RunStatus.SUCCEEDED:
        with transaction.atomic():
            ledger_append(
                actor=None,
                action="revalidation.ran",
                object_type="release",
                object_id=release_id,
                payload={"evaluation": evaluation_id, "zone": None, "failure": run.failure_reason},
            )
        return "failed"
    # only live releases are revalidated, and a live release passed its evaluation (baseline set)
    assert release.baseline_evaluation_id is not None
    comparison = comparison_compute(
        actor=None, baseline_run_id=release.baseline_evaluation_id, candidate_run_id=evaluation_id
    )
    assert comparison.results is not None  # a computed comparison always has results
    zone, verdicts = policy_judge(release.policy, comparison.results)
    with transaction.atomic():
        release = Release.objects.select_for_update().get(pk=release_id)
        ledger_append(
            actor=None,
            action="revalidation.ran",
            object_type="release",
            object_id=release.pk,
            payload={"evaluation": evaluation_id, "comparison": comparison.pk, "zone": zone},
        )
        if zone == Zone.RED:
            escalation_open(
                release=release,
                trigger=EscalationTrigger.RED_ZONE,
                summary="Revalidation found a red zone: " + ", ".join(v.title for v in verdicts if v.zone == Zone.RED),
            )
    return zone
