"""Paired comparison of a baseline and a candidate evaluation on identical inputs."""

import numpy as np
from django.db import transaction

from accounts.errors import ValidationFailed
from compression.models import RunStatus
from evaluations.engine.metrics import binary_metrics, flip_indices, mcnemar_exact, paired_bootstrap_delta
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, Example, Flip, FlipDirection
from ledger.canonical import digest
from ledger.services import ledger_append

from .runs import evaluation_predictions, group_masks

COMPARED_METRICS = ("accuracy", "unsafe_recall", "benign_fpr")
DEFAULT_RESAMPLES = 2000
MIN_SUBGROUP_N = 30


def _arrays(baseline: EvaluationRun, candidate: EvaluationRun) -> dict[str, np.ndarray]:
    examples = list(Example.objects.filter(suite_version=baseline.suite_version).order_by("position")
                    .values_list("pk", "is_unsafe", "slice", "subgroup"))
    base, cand = evaluation_predictions(baseline), evaluation_predictions(candidate)
    missing = [pk for pk, *_ in examples if pk not in base or pk not in cand]
    if missing:
        raise ValidationFailed(f"{len(missing)} example(s) lack a prediction in one of the runs.",
                               code="incomplete_evaluation")
    return {
        "example_id": np.array([e[0] for e in examples]),
        "y": np.array([e[1] for e in examples], dtype=bool),
        "slice": np.array([e[2] for e in examples]),
        "subgroup": np.array([e[3] for e in examples]),
        "base_prob": np.array([base[e[0]][0] for e in examples]),
        "base_dec": np.array([base[e[0]][1] for e in examples], dtype=bool),
        "cand_prob": np.array([cand[e[0]][0] for e in examples]),
        "cand_dec": np.array([cand[e[0]][1] for e in examples], dtype=bool),
    }


def _group_result(a: dict[str, np.ndarray], mask: np.ndarray, *, resamples: int, seed: int) -> dict:
    y, bd, cd = a["y"][mask], a["base_dec"][mask], a["cand_dec"][mask]
    metrics = {}
    for name in COMPARED_METRICS:
        est = paired_bootstrap_delta(y, bd, cd, metric=name, resamples=resamples, seed=seed)
        metrics[name] = {"baseline": est.baseline, "candidate": est.candidate, "delta": est.delta,
                         "ci_low": est.ci_low, "ci_high": est.ci_high}
    test = mcnemar_exact(bd == y, cd == y)
    return {
        "n": int(mask.sum()), "n_unsafe": int(y.sum()), "flips": int((bd != cd).sum()),
        "metrics": metrics,
        "baseline": binary_metrics(y, bd, a["base_prob"][mask]),
        "candidate": binary_metrics(y, cd, a["cand_prob"][mask]),
        "mcnemar": {"b": test.b, "c": test.c, "p_value": test.p_value},
    }


def comparison_compute(
    *, actor, baseline_run_id: int, candidate_run_id: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Comparison:
    """Deltas with paired-bootstrap intervals per slice and subgroup, McNemar, and the flip set.
    Computed once per (baseline, candidate); a second call returns the stored comparison."""
    baseline = EvaluationRun.objects.get(pk=baseline_run_id)
    candidate = EvaluationRun.objects.get(pk=candidate_run_id)
    for field, run in (("baseline_run", baseline), ("candidate_run", candidate)):
        if run.status != RunStatus.SUCCEEDED:
            raise ValidationFailed(f"Evaluation {run.pk} has not succeeded.", code="evaluation_not_ready",
                                   details={field: [f"Status is {run.status}."]})
    if baseline.suite_version_id != candidate.suite_version_id:
        raise ValidationFailed("Both runs must use the same suite version.", code="different_inputs",
                               details={"candidate_run": ["Different suite version from the baseline."]})
    existing = Comparison.objects.filter(baseline_run=baseline, candidate_run=candidate).first()
    if existing and existing.status == ComparisonStatus.DONE:
        return existing

    a = _arrays(baseline, candidate)
    masks = group_masks(a["slice"], a["subgroup"])
    groups = {
        key: _group_result(a, mask, resamples=resamples, seed=seed)
        for key, mask in masks.items()
        if not key.startswith("subgroup:") or mask.sum() >= MIN_SUBGROUP_N
    }
    flipped = flip_indices(a["base_dec"], a["cand_dec"])
    statistics = {"interval": "paired bootstrap, percentile", "level": 0.95, "resamples": resamples, "seed": seed,
                  "test": "McNemar exact (two-sided binomial)", "min_subgroup_n": MIN_SUBGROUP_N}
    with transaction.atomic():
        comparison, _ = Comparison.objects.select_for_update().get_or_create(
            baseline_run=baseline, candidate_run=candidate
        )
        if comparison.status == ComparisonStatus.DONE:
            return comparison
        Flip.objects.bulk_create(
            [Flip(comparison=comparison, example_id=int(a["example_id"][i]),
                  baseline_prob=float(a["base_prob"][i]), candidate_prob=float(a["cand_prob"][i]),
                  direction=FlipDirection.TO_UNSAFE if a["cand_dec"][i] else FlipDirection.TO_SAFE,
                  candidate_correct=bool(a["cand_dec"][i] == a["y"][i]))
             for i in flipped],
            batch_size=2000, ignore_conflicts=True,
        )
        comparison.results = {"groups": groups}
        comparison.statistics = statistics
        comparison.flip_count = len(flipped)
        comparison.status = ComparisonStatus.DONE
        comparison.save()
        ledger_append(
            actor=actor, action="comparison.computed", object_type="comparison", object_id=comparison.pk,
            payload={"baseline_run": baseline.pk, "candidate_run": candidate.pk, "flips": len(flipped),
                     "results_digest": digest(comparison.results), "statistics": statistics},
        )
    return comparison
