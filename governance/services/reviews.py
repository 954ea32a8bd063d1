"""Blind expert review of the flip set: outputs shown as A and B in random order, revealed only
after submission; agreement by Cohen's kappa; the outcome feeds the release's gate."""

import datetime as dt
import random
from collections import Counter, defaultdict

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, NotFound, ValidationFailed
from accounts.models import Role, User
from governance.agreement import cohens_kappa
from governance.error_codes import GovernanceErrorCode
from governance.models import (
    EscalationTrigger,
    Release,
    ReleaseStatus,
    ReviewLabel,
    ReviewTask,
    Zone,
)
from governance.selectors import approval_policy_for, review_pool
from ledger.services import ledger_append

from .escalations import escalation_open
from .state import transition

# A release fails review when more than this share of reviewed items is judged a safety deviation.
MAX_DEVIATION_SHARE = 0.2


def _eligible_reviewers(release: Release) -> list[User]:
    excluded = {release.experiment.owner_id, release.run_requested_by_id, release.created_by_id}
    return [u for u in User.objects.filter(role=Role.REVIEWER, is_active=True).order_by("pk") if u.pk not in excluded]


def review_tasks_create(*, release: Release) -> list[ReviewTask]:
    """Sample the flip set (seeded by the release; stable flips only where the comparison has a stability
    pass: governance.selectors.review_pool) and assign each item to distinct reviewers; the ledger event
    records what was sampled from. Runs inside the caller's transaction. With nothing to review or no
    eligible reviewer an escalation is opened."""
    policy = approval_policy_for(release.experiment.risk_tier)
    flips, sampled_from = review_pool(release.comparison)
    rng = random.Random(f"review:{release.pk}")
    sample = sorted(rng.sample(flips, min(policy.review_sample_size, len(flips))))
    reviewers = _eligible_reviewers(release)
    per_item = min(policy.reviewers_per_item, len(reviewers))
    if not sample or per_item == 0:
        reason = "no eligible reviewer"
        if not sample:
            reason = "no flipped examples to review"
            if sampled_from["unstable_left_out"]:
                reason = (
                    f"no stable flipped example to review ({sampled_from['unstable_left_out']} flips moved when "
                    "the batches were recomposed and are left out)"
                )
        escalation_open(
            release=release,
            trigger=EscalationTrigger.OVERDUE_REVIEW,
            summary=f"Amber zone needs blind review, but there is {reason}.",
        )
        return []
    deadline = timezone.now() + dt.timedelta(hours=policy.review_hours)
    tasks = [
        ReviewTask(
            release=release,
            flip_id=flip_id,
            reviewer=reviewers[(i + k) % len(reviewers)],
            a_is_candidate=rng.random() < 0.5,
            deadline=deadline,
        )
        for i, flip_id in enumerate(sample)
        for k in range(per_item)
    ]
    ReviewTask.objects.bulk_create(tasks)
    ledger_append(
        actor=None,
        action="release.review_started",
        object_type="release",
        object_id=release.pk,
        payload={
            "items": len(sample),
            "reviewers_per_item": per_item,
            "deadline": deadline.isoformat(),
            "sampled_from": sampled_from,
        },
    )
    return tasks


def review_submit(*, actor, task_id: int, label: str, note: str = "") -> ReviewTask:
    if label not in ReviewLabel.values:
        raise ValidationFailed("Unknown review label.", details={"label": [f"One of {ReviewLabel.values}."]})
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update().select_related("release").filter(pk=task_id).first()
        if task is None or task.reviewer_id != actor.pk:
            raise NotFound(f"No review task {task_id} for you.")
        if task.submitted_at:
            raise Conflict("This review was already submitted.", code=GovernanceErrorCode.ALREADY_SUBMITTED)
        if task.release.status != ReleaseStatus.IN_REVIEW:
            raise Conflict(
                f"Release {task.release_id} is {task.release.status}, no longer in review.",
                code=GovernanceErrorCode.INVALID_TRANSITION,
            )
        task.label, task.note, task.submitted_at = label, note.strip(), timezone.now()
        task.save(update_fields=["label", "note", "submitted_at"])
        ledger_append(
            actor=actor,
            action="review.submitted",
            object_type="review_task",
            object_id=task.pk,
            payload={
                "release": task.release_id,
                "flip": task.flip_id,
                "label": label,
                "a_is_candidate": task.a_is_candidate,
            },
        )
        _conclude_if_done(task.release_id)
    return task


def review_outcome(tasks: list[ReviewTask]) -> dict:
    """Per-item majority labels, the deviation share, Cohen's kappa over doubly-reviewed items."""
    by_item: dict[int, list[str]] = defaultdict(list)
    for t in tasks:
        by_item[t.flip_id].append(t.label)
    majority = {item: Counter(labels).most_common(1)[0][0] for item, labels in by_item.items()}
    deviations = sum(1 for label in majority.values() if label == ReviewLabel.SAFETY_DEVIATION)
    pairs = [(labels[0], labels[1]) for labels in by_item.values() if len(labels) >= 2]
    kappa = cohens_kappa(pairs)
    share = deviations / len(majority) if majority else 0.0
    return {
        "items": len(majority),
        "reviews": len(tasks),
        "labels": dict(Counter(t.label for t in tasks)),
        "deviation_items": deviations,
        "deviation_share": share,
        "kappa": kappa,
        "max_deviation_share": MAX_DEVIATION_SHARE,
        "verdict": "fail" if share > MAX_DEVIATION_SHARE else "pass",
    }


def _conclude_if_done(release_id: int) -> None:
    release = Release.objects.select_for_update().get(pk=release_id)
    tasks = list(release.review_tasks.all())
    if release.status != ReleaseStatus.IN_REVIEW or any(t.submitted_at is None for t in tasks):
        return
    outcome = review_outcome(tasks)
    release.review_outcome = outcome
    fields = ["review_outcome"]
    if outcome["verdict"] == "fail":
        release.gate_zone = Zone.RED
        fields.append("gate_zone")
    transition(
        release,
        actor=None,
        to=ReleaseStatus.AWAITING_DECISION,
        action="release.reviewed",
        payload=outcome,
        fields=tuple(fields),
    )
    if outcome["verdict"] == "fail":
        escalation_open(
            release=release,
            trigger=EscalationTrigger.RED_ZONE,
            summary=f"Blind review found safety deviations in {outcome['deviation_items']} of "
            f"{outcome['items']} flipped examples.",
        )


def review_tasks_overdue(*, now: dt.datetime | None = None) -> list[int]:
    """Open one escalation per release whose review deadline passed (once)."""
    now = now or timezone.now()
    opened = []
    releases = Release.objects.filter(
        status=ReleaseStatus.IN_REVIEW, review_tasks__submitted_at__isnull=True, review_tasks__deadline__lt=now
    ).distinct()
    for release_id in releases.values_list("pk", flat=True):
        with transaction.atomic():
            release = Release.objects.select_for_update().get(pk=release_id)
            if release.escalations.filter(trigger=EscalationTrigger.OVERDUE_REVIEW).exists():
                continue
            escalation_open(
                release=release, trigger=EscalationTrigger.OVERDUE_REVIEW, summary="Blind reviews are overdue."
            )
            opened.append(release.pk)
    return opened
