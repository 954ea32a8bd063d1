"""Escalations: opened by red zones, overdue reviews and incidents; raised a level when overdue."""

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from accounts.models import Role, User
from governance.error_codes import GovernanceErrorCode
from governance.models import (
    TERMINAL_RELEASE_STATUSES,
    AuthorityGrant,
    Escalation,
    EscalationStatus,
    EscalationTrigger,
    Incident,
    Release,
    ReleaseStatus,
)
from governance.selectors import approval_policy_for
from ledger.services import ledger_append, ledger_record_refusal

from .authority import require_authority, require_officer
from .notifications import notify
from .state import transition

MAX_LEVEL = 3


def _recipients(release: Release, level: int) -> list[User]:
    """Officers holding authority for the release's tier at this level or above."""
    grants = AuthorityGrant.objects.filter(risk_tier=release.experiment.risk_tier, level__gte=level)
    return list(User.objects.filter(pk__in=grants.values("user"), role=Role.OFFICER, is_active=True))


def escalation_open(*, release: Release, trigger: str, summary: str, actor=None) -> Escalation:
    """Open an escalation at level 1 with the tier's deadline, or return the release's unresolved
    escalation for this trigger (at most one: a partial unique constraint). Idempotent: a second
    call writes no ledger event and notifies nobody. Runs inside the caller's transaction."""
    with transaction.atomic():
        existing = _unresolved(release, trigger)
        if existing is not None:
            return existing
        policy = approval_policy_for(release.experiment.risk_tier)
        try:
            with transaction.atomic():  # a savepoint: a concurrent opener's row makes only this insert fail
                escalation = Escalation.objects.create(
                    release=release,
                    trigger=trigger,
                    summary=summary,
                    level=1,
                    owner_role=Role.OFFICER,
                    deadline=timezone.now() + dt.timedelta(hours=policy.escalation_hours),
                )
        except IntegrityError:
            existing = _unresolved(release, trigger)
            if existing is None:
                raise
            return existing
        ledger_append(
            actor=actor,
            action="escalation.opened",
            object_type="escalation",
            object_id=escalation.pk,
            payload={
                "release": release.pk,
                "trigger": trigger,
                "summary": summary,
                "level": 1,
                "deadline": escalation.deadline.isoformat(),
            },
        )
        notify(
            event="escalation.opened",
            payload={
                "escalation": escalation.pk,
                "release": release.pk,
                "trigger": trigger,
                "level": 1,
                "deadline": escalation.deadline.isoformat(),
            },
            recipients=_recipients(release, 1),
            subject=f"[SafeShrink] Escalation on release {release.pk}: {summary}",
        )
    return escalation


def _unresolved(release: Release, trigger: str) -> Escalation | None:
    return (
        Escalation.objects.filter(release=release, trigger=trigger)
        .exclude(status=EscalationStatus.RESOLVED)
        .order_by("pk")
        .first()
    )


def _locked(escalation_id: int) -> Escalation:
    escalation = (
        Escalation.objects.select_for_update().select_related("release__experiment").filter(pk=escalation_id).first()
    )
    if escalation is None:
        raise NotFound(f"No escalation {escalation_id}.")
    return escalation


def escalation_acknowledge(*, actor, escalation_id: int) -> Escalation:
    with transaction.atomic():
        escalation = _locked(escalation_id)
        require_officer(actor, "acknowledge an escalation")
        if escalation.status != EscalationStatus.OPEN:
            raise Conflict(
                f"Escalation {escalation.pk} is {escalation.status}.", code=GovernanceErrorCode.INVALID_TRANSITION
            )
        escalation.status = EscalationStatus.ACKNOWLEDGED
        escalation.save(update_fields=["status"])
        ledger_append(
            actor=actor,
            action="escalation.acknowledged",
            object_type="escalation",
            object_id=escalation.pk,
            payload={"release": escalation.release_id},
        )
    return escalation


def escalation_resolve(*, actor, escalation_id: int, resolution: str) -> Escalation:
    """Only an authority for the tier at the escalation's level (or above) resolves it."""
    if not resolution.strip():
        raise ValidationFailed("A resolution needs a note.", details={"resolution": ["May not be blank."]})
    try:
        with transaction.atomic():
            escalation = _locked(escalation_id)
            require_authority(actor, escalation.release, "resolve this escalation", level=escalation.level)
            if escalation.status == EscalationStatus.RESOLVED:
                raise Conflict(
                    f"Escalation {escalation.pk} is already resolved.", code=GovernanceErrorCode.INVALID_TRANSITION
                )
            escalation.status, escalation.resolution = EscalationStatus.RESOLVED, resolution.strip()
            escalation.resolved_by, escalation.resolved_at = actor, timezone.now()
            escalation.save(update_fields=["status", "resolution", "resolved_by", "resolved_at"])
            ledger_append(
                actor=actor,
                action="escalation.resolved",
                object_type="escalation",
                object_id=escalation.pk,
                payload={
                    "release": escalation.release_id,
                    "resolution": escalation.resolution,
                    "level": escalation.level,
                },
            )
    except (PermissionDenied, Conflict) as exc:
        ledger_record_refusal(
            actor=actor, object_type="escalation", object_id=escalation_id, code=exc.code, message=exc.message
        )
        raise
    return escalation


def escalations_escalate_overdue(*, now: dt.datetime | None = None) -> list[int]:
    """Raise every overdue escalation one level (new deadline, notify the next authority) and,
    where the tier's policy says so, halt the release. Called by Celery beat; idempotent per tick
    because the new deadline is in the future."""
    now = now or timezone.now()
    raised = []
    for escalation_id in (
        Escalation.objects.exclude(status=EscalationStatus.RESOLVED)
        .filter(deadline__lt=now)
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            escalation = _locked(escalation_id)
            if escalation.status == EscalationStatus.RESOLVED or escalation.deadline >= now:
                continue
            release = Release.objects.select_for_update().get(pk=escalation.release_id)
            policy = approval_policy_for(release.experiment.risk_tier)
            escalation.level = min(escalation.level + 1, MAX_LEVEL)
            escalation.status = EscalationStatus.OPEN
            escalation.deadline = now + dt.timedelta(hours=policy.escalation_hours)
            escalation.save(update_fields=["level", "status", "deadline"])
            ledger_append(
                actor=None,
                action="escalation.escalated",
                object_type="escalation",
                object_id=escalation.pk,
                payload={"release": release.pk, "level": escalation.level, "deadline": escalation.deadline.isoformat()},
            )
            if policy.halt_on_overdue and release.status not in (*TERMINAL_RELEASE_STATUSES, ReleaseStatus.HALTED):
                release.status_before_halt = release.status
                transition(
                    release,
                    actor=None,
                    to=ReleaseStatus.HALTED,
                    action="release.halted",
                    payload={"reason": f"escalation {escalation.pk} overdue"},
                    fields=("status_before_halt",),
                )
            notify(
                event="escalation.escalated",
                payload={"escalation": escalation.pk, "release": release.pk, "level": escalation.level},
                recipients=_recipients(release, escalation.level),
                subject=f"[SafeShrink] Overdue escalation on release {release.pk} raised to level {escalation.level}",
            )
            raised.append(escalation.pk)
    return raised


def incident_report(*, actor, release_id: int, severity: int, title: str, description: str) -> Incident:
    if actor.role not in (Role.OFFICER, Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only officers and engineers report incidents.")
    if not 1 <= int(severity) <= 4:
        raise ValidationFailed("Severity is 1 to 4.", details={"severity": ["Between 1 and 4."]})
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None:
            raise NotFound(f"No release {release_id}.")
        incident = Incident.objects.create(
            release=release, severity=severity, title=title, description=description, reported_by=actor
        )
        ledger_append(
            actor=actor,
            action="incident.reported",
            object_type="incident",
            object_id=incident.pk,
            payload={"release": release.pk, "severity": severity, "title": title},
        )
        escalation_open(
            release=release,
            trigger=EscalationTrigger.INCIDENT,
            actor=actor,
            summary=f"Incident (severity {severity}): {title}",
        )
    return incident
