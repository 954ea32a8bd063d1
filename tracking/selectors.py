"""Reads of external runs: who may see which run and key, a run's metric summary and history, and the digest of
everything a run reports."""

from __future__ import annotations

from django.db.models import Count, Exists, Max, Min, OuterRef, QuerySet, Subquery

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


def latest_metrics(run_ids) -> dict[int, list[tuple[str, float, int, int]]]:
    """Per run: each metric key's latest (key, value, timestamp, step), as MLflow's run data shows it (highest
    step, then latest timestamp, as metric_summary). One query for all the runs."""
    latest = ExternalRunMetric.objects.filter(run=OuterRef("run"), key=OuterRef("key")).order_by(
        "-step", "-timestamp", "-id"
    )
    rows = (
        ExternalRunMetric.objects.filter(run__in=list(run_ids))
        .values("run", "key")
        .annotate(
            value_=Subquery(latest.values("value")[:1]),
            timestamp_=Subquery(latest.values("timestamp")[:1]),
            step_=Max("step"),
        )
        .order_by("run", "key")
    )
    out: dict[int, list[tuple[str, float, int, int]]] = {}
    for row in rows:
        out.setdefault(row["run"], []).append((row["key"], row["value_"], row["timestamp_"], row["step_"]))
    return out


_COMPARE = {"=": "exact", "!=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "LIKE": "contains"}


def external_runs_search(user, experiment_ids, conditions, *, oldest_first: bool = False) -> QuerySet[ExternalRun]:
    """Runs of the given experiments visible to `user`, matching every condition (kind, key, op, value) with kind
    one of param, tag, metric (the key's latest value), attribute (status, run_name, start_time, end_time). The
    conditions come parsed (tracking.mlflow.search)."""
    qs = external_runs_visible_to(user).filter(experiment_id__in=list(experiment_ids))
    for i, (kind, key, op, value) in enumerate(conditions):
        if kind in ("param", "tag"):
            model = ExternalRunParam if kind == "param" else ExternalRunTag
            match = model.objects.filter(run=OuterRef("pk"), key=key, **{f"value__{_COMPARE[op]}": value})
            qs = qs.filter(~Exists(match) if op == "!=" else Exists(match))
            if op == "!=":
                qs = qs.filter(Exists(model.objects.filter(run=OuterRef("pk"), key=key)))
        elif kind == "metric":
            latest = ExternalRunMetric.objects.filter(run=OuterRef("pk"), key=key).order_by(
                "-step", "-timestamp", "-id"
            )
            name = f"m{i}"
            qs = qs.annotate(**{name: Subquery(latest.values("value")[:1])}).filter(**{f"{name}__isnull": False})
            lookup = {f"{name}__{_COMPARE[op]}": value}
            qs = qs.exclude(**lookup) if op == "!=" else qs.filter(**lookup)
        else:  # attribute: the field and value come translated
            lookup = {f"{key}__{_COMPARE[op]}": value}
            qs = qs.exclude(**lookup) if op == "!=" else qs.filter(**lookup)
    order = ("started_at", "id") if oldest_first else ("-started_at", "-id")
    return qs.order_by(*order)
