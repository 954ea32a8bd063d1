"""Completing releases whose evaluations have finished: on the announcement of a finished evaluation
(evaluations' RUN_FINISHED_TASK, governance.tasks.evaluation_finished) and from beat's sweep of releases whose
announcement was lost. The completion itself is releases.release_complete_evaluation (idempotent)."""

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from compression.models import TERMINAL_RUN_STATUSES
from compression.services.workers import queue_served
from evaluations.services.runs import evaluation_queue
from governance.models import Release, ReleaseStatus

from .releases import release_complete_evaluation

logger = logging.getLogger(__name__)


def releases_complete_for_evaluation(*, evaluation_id: int) -> list[int]:
    """Complete every release evaluating on this (finished) evaluation whose other evaluation has
    finished too. Returns the ids of the releases that left `evaluating`."""
    waiting = Release.objects.filter(
        Q(baseline_evaluation_id=evaluation_id) | Q(candidate_evaluation_id=evaluation_id),
        status=ReleaseStatus.EVALUATING,
    )
    return _complete_each(waiting.order_by("pk").values_list("pk", flat=True))


def releases_complete_stuck(*, now: dt.datetime | None = None) -> list[int]:
    """Called by beat: complete releases still `evaluating` although both evaluations finished at
    least a sweep period ago (their completion message was lost). Returns the ids completed here. The completion
    times both models, so one evaluated off the default queue (where beat's sweeps run) is sent to its queue
    instead, while a live worker serves it (else left for the next sweep: nothing piles up for a pool that is down)."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.SAFESHRINK.get("SWEEP_SECONDS", 60))
    stuck = Release.objects.filter(
        Q(baseline_evaluation__finished_at__isnull=True) | Q(baseline_evaluation__finished_at__lt=cutoff),
        Q(candidate_evaluation__finished_at__isnull=True) | Q(candidate_evaluation__finished_at__lt=cutoff),
        status=ReleaseStatus.EVALUATING,
        baseline_evaluation__status__in=TERMINAL_RUN_STATUSES,
        candidate_evaluation__status__in=TERMINAL_RUN_STATUSES,
    )
    here: list[int] = []
    for release_id, baseline_id in stuck.order_by("pk").values_list("pk", "baseline_evaluation_id"):
        if (queue := evaluation_queue(baseline_id)) == settings.CELERY_TASK_DEFAULT_QUEUE:
            here.append(release_id)
        elif queue_served(queue):
            from governance.tasks import complete_release_evaluation

            complete_release_evaluation.apply_async((release_id,), queue=queue)
    return _complete_each(here)


def _complete_each(release_ids) -> list[int]:
    completed = []
    for release_id in list(release_ids):
        try:
            release = release_complete_evaluation(release_id=release_id)
        except Exception:  # noqa: BLE001 - one release's failure must not stop the others; the sweep retries
            logger.exception("completing the evaluation of release %s failed", release_id)
            continue
        if release.status != ReleaseStatus.EVALUATING:
            completed.append(release_id)
    return completed
