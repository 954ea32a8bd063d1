"""Reads of external runs: who may see which run and key, a run's metric summary and history, and the digest of
everything a run reports."""

from __future__ import annotations

from django.db.models import Count, Max, Min, OuterRef, QuerySet, Subquery

from accounts.models import Role
from compression.selectors import experiments_visible_to
from trust.canonical import digest

from .models import EngineerKey, ExternalRun, ExternalRunMetric, ExternalRunParam, ExternalRunTag


def external_runs_visible_to(user) -> QuerySet[ExternalRun]:
    """As for SafeShrink's own runs: an engineer sees the runs of their experiments, officers and admins every
    run, other roles none. A run outside the scope is 404 (its existence does not leak)."""
    return ExternalRun.objects.select_related(
        "experiment", "experiment__owner", "recorded_by", "output_artifact"
    ).filter(experiment__in=experiments_visible_to(user).values("pk"))


def engineer_keys_visible_to(user) -> QuerySet[EngineerKey]:
    """An engineer sees their own keys; officers and admins every key (they check signatures with them)."""
    qs = EngineerKey.objects.select_related("owner")
    if user.role == Role.ENGINEER:
        return qs.filter(owner=user)
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    return qs.none()


def metric_history(run: ExternalRun, key: str | None = None) -> QuerySet[ExternalRunMetric]:
    """A run's metrics in (key, step, timestamp) order; one key's history when `key` is given."""
    qs = ExternalRunMetric.objects.filter(run=run)
    if key is not None:
        qs = qs.filter(key=key)
    return qs.order_by("key", "step", "timestamp", "id")


def metric_summary(run: ExternalRun) -> list[dict]:
    """Per metric key: how many values, the step range, and the latest value (highest step, then latest
    timestamp), which is what MLflow's run view calls the metric's value. One query."""
    latest = ExternalRunMetric.objects.filter(run=OuterRef("run"), key=OuterRef("key")).order_by(
        "-step", "-timestamp", "-id"
    )
    rows = (
        ExternalRunMetric.objects.filter(run=run)
        .values("key")
        .annotate(
            count=Count("id"),
            first_step=Min("step"),
            last_step=Max("step"),
            latest_value=Subquery(latest.values("value")[:1]),
            latest_timestamp=Subquery(latest.values("timestamp")[:1]),
        )
        .order_by("key")
    )
    return [dict(row) for row in rows]


def run_record(run: ExternalRun) -> dict:
    """What the engineer reported about the run itself (not its params, metrics and tags), as digested."""
    return {
        "run_uuid": run.run_uuid,
        "experiment": run.experiment_id,
        "name": run.name,
        "method": run.method,
        "known_method": run.known_method,
        "parameters": run.parameters,
        "code_reference": run.code_reference,
        "tool_versions": run.tool_versions,
        "hardware": run.hardware,
        "seeds": run.seeds,
        "input_artifacts": sorted(run.input_artifacts.values_list("digest", flat=True)),
        "output_artifact": run.output_artifact.digest if run.output_artifact else None,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "source": ExternalRun.SOURCE,
        "verification": ExternalRun.VERIFICATION,
    }


def run_contents_digest(run: ExternalRun) -> str:
    """sha256 of the canonical JSON of everything the run reports: {"record": run_record(run), "params": [[key,
    value], ...] by key, "tags": likewise, "metrics": [[key, value, step, timestamp], ...] in (key, step,
    timestamp, insertion) order}. Written on the run when it ends, so a release or export can pin it."""
    return digest(
        {
            "record": run_record(run),
            "params": [
                list(p) for p in ExternalRunParam.objects.filter(run=run).order_by("key").values_list("key", "value")
            ],
            "tags": [
                list(t) for t in ExternalRunTag.objects.filter(run=run).order_by("key").values_list("key", "value")
            ],
            "metrics": [
                list(m) for m in metric_history(run).values_list("key", "value", "step", "timestamp").iterator()
            ],
        }
    )
