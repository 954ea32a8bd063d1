"""Reads of the exports app: which exports a user may see, the release behind an export, the evidence
bundle (every fact about a release that a regulator needs, as plain JSON) and the rows of an export's
predictions file (both models' outputs on every example, from which the comparison can be recomputed).

The dossier PDF is rendered from the same bundle dict, so both carry the same digests. Nothing about the
export itself (its id, when it was made) goes in, so the same records give the same bundle. Nothing here
writes: the services (exports.services.exports) record, sign and store."""

from django.db.models import Q

from compression.models import ModelArtifact
from evaluations.models import Comparison, EvaluationRun, Flip
from evaluations.services.prediction_files import aligned, evaluation_predictions, suite_examples
from exports.models import Export
from governance.candidate_source import candidate_source
from governance.models import Release
from governance.selectors import release_warnings, releases_visible_to
from ledger.models import Checkpoint, LedgerEvent
from ledger.signing import system_public_key
from trust.keys import key_id

SCHEMA = "https://safeshrink.dev/schemas/evidence-bundle/v1"
FLIPS_IN_BUNDLE = 25
LEDGER_EVENTS_IN_BUNDLE = 200


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _artifact(artifact: ModelArtifact, role: str) -> dict:
    return {
        "role": role,
        "id": artifact.pk,
        "name": artifact.name,
        "digest": artifact.digest,
        "format": artifact.format,
        "size_bytes": artifact.size_bytes,
        "parameter_count": artifact.parameter_count,
        "parent_digest": artifact.parent.digest if artifact.parent_id else None,
    }


def _metric_table(metrics: dict | None) -> dict:
    """Per group: the scalar metrics, and the reliability bins as `ece_bins` (per-subgroup rates
    are summarised by fnr_gap / fpr_gap; the full table stays in the evaluation record)."""
    out = {}
    for group, values in (metrics or {}).items():
        row = {k: v for k, v in values.items() if isinstance(v, int | float) or v is None}
        if values.get("reliability"):
            row["ece_bins"] = values["reliability"]
        out[group] = row
    return out


def _evaluation(run: EvaluationRun | None) -> dict | None:
    if run is None:
        return None
    return {
        "id": run.pk,
        "artifact_digest": run.artifact.digest,
        "config": run.config,
        "metrics": _metric_table(run.metrics),
        "runtime": run.runtime,
        "stability": run.stability,
    }


def _verdict(release: Release) -> dict:
    zone = release.gate_zone or "none"
    last = release.decisions.order_by("-created_at").first()
    decided = f"; last decision: {last.kind} by {last.actor.username} ({last.actor_role})" if last else ""
    return {
        "status": release.status,
        "gate_zone": release.gate_zone,
        "summary": f"Release {release.pk} is {release.get_status_display().lower()}, gate {zone}{decided}.",
    }


def _related_events(release: Release) -> Q:
    """The release's own ledger events and those of the run that made its candidate (SafeShrink's or external)."""
    run = (
        Q(object_type="external_run", object_id=str(release.external_run_id))
        if release.external_run_id
        else Q(object_type="compression_run", object_id=str(release.compression_run_id))
    )
    return Q(object_type="release", object_id=str(release.pk)) | run


def _ledger_excerpt(release: Release, checkpoint: Checkpoint | None) -> dict:
    related = _related_events(release)
    events = LedgerEvent.objects.filter(related, seq__isnull=False).order_by("-seq")[:LEDGER_EVENTS_IN_BUNDLE]
    return {
        "events": [
            {
                "seq": e.seq,
                "occurred_at": _iso(e.occurred_at),
                "action": e.action,
                "actor": e.actor_username,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "hash": e.hash,
            }
            for e in sorted(events, key=lambda e: e.seq)
        ],
        "checkpoint": checkpoint.as_statement() if checkpoint else None,
        "public_key_id": key_id(system_public_key()),
    }


def last_release_event_seq(release: Release) -> int:
    related = _related_events(release)
    return (
        LedgerEvent.objects.filter(related, seq__isnull=False).order_by("-seq").values_list("seq", flat=True).first()
        or 1
    )


def _candidates(release: Release) -> list[dict]:
    """Every release of the same experiment: the alternatives that were considered, side by side."""
    out = []
    for other in (
        Release.objects.filter(experiment=release.experiment)
        .select_related("compression_run", "external_run", "candidate", "comparison")
        .order_by("pk")
    ):
        made_by = other.compression_run or other.external_run
        assert made_by is not None  # exactly one is set (release_one_candidate_source)
        overall = (other.comparison.results or {}).get("groups", {}).get("overall", {}) if other.comparison else {}
        metrics = overall.get("metrics", {})
        out.append(
            {
                "release": other.pk,
                "method": made_by.method,
                "parameters": made_by.parameters,
                "source": other.source,
                "candidate_digest": other.candidate_digest,
                "size_bytes": other.candidate.size_bytes,
                "status": other.status,
                "gate_zone": other.gate_zone,
                "flips": overall.get("flips"),
                "accuracy_delta": (metrics.get("accuracy") or {}).get("delta"),
                "unsafe_recall_delta": (metrics.get("unsafe_recall") or {}).get("delta"),
                "this_release": other.pk == release.pk,
            }
        )
    return out


# The per-example predictions file of an export (one row per example of the suite, in suite order): what a
# third party recomputes the comparison from (trust/recompute_comparison.py). Booleans are 0/1; an empty cell
# is a missing value (no stability pass, no source example).
PREDICTION_MODELS = ("baseline", "candidate")
PREDICTION_EXAMPLE_COLUMNS = (
    "position",
    "example_id",
    "external_id",
    "slice",
    "subgroup",
    "label",
    "is_unsafe",
    "source_position",
)
PREDICTION_MODEL_COLUMNS = ("decision", "unsafe_prob", "recomposed_unsafe_prob", "stable", "predicted_label")
PREDICTION_COLUMNS = PREDICTION_EXAMPLE_COLUMNS + tuple(
    f"{model}_{column}" for model in PREDICTION_MODELS for column in PREDICTION_MODEL_COLUMNS
)


def _cell(value) -> str:
    """One CSV cell: 0/1 for booleans, the shortest round-trip text for floats (read back bit for bit)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


# Examples per batch when the predictions file is written (1,000,000 rows are never all Python objects at once).
PREDICTION_BATCH_ROWS = 50_000
# The columns of the suite's examples file (evaluations.services.prediction_files) and of a run's predictions
# behind PREDICTION_EXAMPLE_COLUMNS and PREDICTION_MODEL_COLUMNS.
_EXAMPLE_SOURCES = (
    "position",
    "example_id",
    "external_id",
    "slice",
    "subgroup",
    "label",
    "is_unsafe",
    "source_position",
)
_MODEL_SOURCES = ("decision_unsafe", "unsafe_prob", "recomposed_unsafe_prob", "stable", "predicted_label")


def predictions_rows(comparison: Comparison):
    """Every example of the comparison's suite with both models' outputs, in suite order, as rows of
    PREDICTION_COLUMNS (lists of cells), batch by batch: exactly the values the comparison was computed from,
    read from the runs' predictions files (rows for runs from before the files) and the suite's examples file."""
    runs = (comparison.baseline_run, comparison.candidate_run)
    examples = suite_examples(runs[0].suite_version, _EXAMPLE_SOURCES).select(_EXAMPLE_SOURCES)
    ids = examples.column("example_id").to_numpy()
    outputs = [
        aligned(run, evaluation_predictions(run, ("example_id", *_MODEL_SOURCES)), ids).select(_MODEL_SOURCES)
        for run in runs
    ]
    for start in range(0, examples.num_rows, PREDICTION_BATCH_ROWS):
        columns = [
            column.to_pylist()
            for table in (examples, *outputs)
            for column in table.slice(start, PREDICTION_BATCH_ROWS).columns
        ]
        yield from ([_cell(v) for v in row] for row in zip(*columns, strict=True))


def predictions_table(comparison: Comparison) -> list[list[str]]:
    """predictions_rows, all at once (small suites, tests)."""
    return list(predictions_rows(comparison))


def bundle_build(release: Release, *, checkpoint: Checkpoint | None, predictions: dict | None = None) -> dict:
    """The evidence bundle of a release. ``predictions`` describes the export's predictions file (name,
    sha256, size, ...; see exports/BUNDLE.md), written before the bundle so that its digest is signed with it."""
    release = Release.objects.select_related(
        "experiment__owner",
        "experiment__base_artifact",
        "candidate__parent",
        "compression_run",
        "external_run__output_artifact",
        "suite_version__suite",
        "policy__taxonomy",
        "comparison",
        "baseline_evaluation__artifact",
        "candidate_evaluation__artifact",
    ).get(pk=release.pk)
    experiment, run, policy = release.experiment, release.compression_run, release.policy
    taxonomy = policy.taxonomy
    comparison = release.comparison
    flips = (
        Flip.objects.filter(comparison=comparison)
        .select_related("example")
        .order_by("example__position")[:FLIPS_IN_BUNDLE]
        if comparison
        else []
    )
    return {
        "schema": SCHEMA,
        "release": {
            "id": release.pk,
            "status": release.status,
            "version": release.version,
            "risk_tier": experiment.risk_tier,
            "created_at": _iso(release.created_at),
            "candidate_digest": release.candidate_digest,
            "gate_zone": release.gate_zone,
            # What the evidence should be read with (governance.selectors.release_warnings; [] when nothing), as
            # the API and the release page show it.
            "warnings": release_warnings(release),
            "review_outcome": release.review_outcome,
            "rollout": [
                {
                    "position": s.position,
                    "percent": s.percent,
                    "starts_at": _iso(s.starts_at),
                    "started_at": _iso(s.started_at),
                }
                for s in release.rollout_stages.order_by("position")
            ],
        },
        "verdict": _verdict(release),
        "experiment": {
            "id": experiment.pk,
            "name": experiment.name,
            "description": experiment.description,
            "owner": experiment.owner.username,
            "risk_tier": experiment.risk_tier,
            "unsafe_labels": experiment.unsafe_labels,
        },
        "artifacts": [_artifact(experiment.base_artifact, "base"), _artifact(release.candidate, "candidate")],
        "compression_run": None
        if run is None
        else {
            "id": run.pk,
            "method": run.method,
            "parameters": run.parameters,
            "seed": run.seed,
            "status": run.status,
            "wall_seconds": run.wall_seconds,
            "provenance": run.provenance,
            "provenance_envelope": run.provenance_envelope,
            # What the run was given (suite versions, teachers, judge, with digests) and, for behavioural_distill,
            # every finished round: the dossier draws them.
            "data_source": run.data_source,
            "rounds": run.rounds,
        },
        "candidate_source": candidate_source(release),
        "candidates": _candidates(release),
        "suite_version": {
            "suite": release.suite_version.suite.name,
            "number": release.suite_version.number,
            "digest": release.suite_version.digest,
            "example_count": release.suite_version.example_count,
            "unsafe_labels": release.suite_version.unsafe_labels,
            "source": release.suite_version.source,
        },
        "taxonomy": None
        if taxonomy is None
        else {
            "name": taxonomy.name,
            "version": taxonomy.version,
            "failure_modes": [
                {
                    "code": m.code,
                    "category": m.category,
                    "title": m.title,
                    "severity": m.severity,
                    "likelihood": m.likelihood,
                    "measures": m.measures,
                    "regulatory_refs": m.regulatory_refs,
                }
                for m in taxonomy.failure_modes.all()
            ],
        },
        "policy": {
            "name": policy.name,
            "version": policy.version,
            "flip_basis": policy.flip_basis,
            "required_profile": policy.required_profile,
            "reviewers_see_expected_label": policy.reviewers_see_expected_label,
            "forbid_training_data_overlap": policy.forbid_training_data_overlap,
            "rules": [
                {
                    "code": r.code,
                    "title": r.title,
                    "failure_mode_code": r.failure_mode_code,
                    "metric": r.metric,
                    "group": r.group,
                    "kind": r.kind,
                    "bound": r.bound,
                    "higher_is_better": r.higher_is_better,
                    "green_limit": r.green_limit,
                    "red_limit": r.red_limit,
                }
                for r in policy.rules.all()
            ],
        },
        "evaluations": {
            "baseline": _evaluation(release.baseline_evaluation),
            "candidate": _evaluation(release.candidate_evaluation),
        },
        "comparison": None
        if comparison is None
        else {
            "id": comparison.pk,
            "statistics": comparison.statistics,
            "flip_count": comparison.flip_count,
            "groups": (comparison.results or {}).get("groups", {}),
            "stability": (comparison.results or {}).get("stability"),
            "runtime": (comparison.results or {}).get("runtime"),
        },
        "predictions": predictions,
        "gate": release.gate or [],
        "flips_excerpt": [
            {
                "id": f.pk,
                "example_id": f.example_id,
                "external_id": f.example.external_id,
                "text": f.example.text,
                "slice": f.example.slice,
                "subgroup": f.example.subgroup,
                "label": f.example.label,
                "baseline_prob": f.baseline_prob,
                "candidate_prob": f.candidate_prob,
                "direction": f.direction,
                "candidate_correct": f.candidate_correct,
                "stable": f.stable,
                **(
                    {
                        "baseline_behaviour": f.baseline_behaviour,
                        "candidate_behaviour": f.candidate_behaviour,
                        "baseline_output": f.baseline_output,
                        "candidate_output": f.candidate_output,
                    }
                    if f.baseline_behaviour
                    else {}
                ),
            }
            for f in flips
        ],
        "reviews": [
            {
                "flip": t.flip_id,
                "reviewer": t.reviewer.username,
                "label": t.label,
                "note": t.note,
                "submitted_at": _iso(t.submitted_at),
                # A judgement made for an earlier release of the same artifacts, carried here (not asked twice).
                **({"carried_from_release": t.carried_from.release_id} if t.carried_from_id else {}),
            }
            for t in release.review_tasks.select_related("reviewer", "carried_from").order_by("flip_id", "reviewer_id")
        ],
        "escalations": [
            {
                "id": e.pk,
                "trigger": e.trigger,
                "summary": e.summary,
                "level": e.level,
                "deadline": _iso(e.deadline),
                "status": e.status,
                "resolution": e.resolution,
                "opened_at": _iso(e.opened_at),
                "resolved_at": _iso(e.resolved_at),
            }
            for e in release.escalations.order_by("opened_at", "pk")
        ],
        "incidents": [
            {"id": i.pk, "severity": i.severity, "title": i.title, "opened_at": _iso(i.opened_at)}
            for i in release.incidents.order_by("opened_at", "pk")
        ],
        "decisions": [
            {
                "kind": d.kind,
                "actor": d.actor.username,
                "actor_role": d.actor_role,
                "rationale": d.rationale,
                "evidence": d.evidence,
                "created_at": _iso(d.created_at),
            }
            for d in release.decisions.select_related("actor").order_by("created_at", "pk")
        ],
        "ledger": _ledger_excerpt(release, checkpoint),
    }


def exports_visible_to(user):
    return Export.objects.filter(release__in=releases_visible_to(user)).select_related("release")


def export_release_id(export_id) -> int | None:
    """The release behind an export id (None if there is no such export), to name why a read was refused."""
    return Export.objects.filter(pk=export_id).values_list("release_id", flat=True).first()
