"""Claiming, heartbeating and finishing long-running jobs (compression and evaluation runs).

A job row is the source of truth, not the broker: a task delivered twice finds the job already
running under a fresh lease (and backs off) or already finished (and does nothing).
"""

from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from compression.models import JobFields, RunStatus
from compression.selectors import job_lease
from ledger.services import ledger_append

Job = TypeVar("Job", bound=JobFields)


class JobCancelled(Exception):
    """Raised inside a job's progress callback when someone cancelled the job."""


def job_claim(model: type[Job], pk: int, *, object_type: str) -> Job | None:
    """Mark the job running for this delivery, or return None when there is nothing to do."""
    with transaction.atomic():
        job = model._default_manager.select_for_update().get(pk=pk)
        now = timezone.now()
        if job.is_terminal:
            return None
        if job.status == RunStatus.RUNNING and job.heartbeat_at and now - job.heartbeat_at < job_lease():
            return None
        job.status = RunStatus.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.failure_code = job.failure_reason = ""
        job.save(update_fields=["status", "attempts", "started_at", "heartbeat_at", "failure_code", "failure_reason"])
        ledger_append(
            actor=None,
            action="run.started",
            object_type=object_type,
            object_id=job.pk,
            payload={"attempt": job.attempts},
        )
    return job


def job_progress(model: type[Job], pk: int, *, stage: str, percent: float) -> None:
    """Record progress and renew the lease. Progress is not a ledger event: it records no decision."""
    updated = model._default_manager.filter(pk=pk, status=RunStatus.RUNNING).update(
        progress_stage=stage[:64], progress_percent=max(0, min(100, round(percent))), heartbeat_at=timezone.now()
    )
    if not updated:
        raise JobCancelled(f"{model.__name__} {pk} is no longer running")


def job_fail(model: type[Job], pk: int, *, object_type: str, code: str, reason: str) -> None:
    """Finish the job as FAILED with a readable reason (never a traceback)."""
    code = str(code)  # a registry member is stored and recorded as its plain value
    with transaction.atomic():
        job = model._default_manager.select_for_update().get(pk=pk)
        if job.is_terminal:
            return
        now = timezone.now()
        job.status = RunStatus.FAILED
        job.failure_code, job.failure_reason = code, reason[:2000]
        job.finished_at = now
        job.wall_seconds = (now - job.started_at).total_seconds() if job.started_at else None
        job.save(update_fields=["status", "failure_code", "failure_reason", "finished_at", "wall_seconds"])
        ledger_append(
            actor=None,
            action="run.failed",
            object_type=object_type,
            object_id=job.pk,
            payload={"code": code, "reason": job.failure_reason, "attempts": job.attempts},
        )
