"""Paired comparison of a baseline and a candidate evaluation on identical inputs."""

from django.db import transaction

from accounts.errors import ValidationFailed
from compression.models import RunStatus
from evaluations.engine.bootstrap import ModelScores, paired_bootstrap
from evaluations.engine.catalog import CATALOG, Scope
from evaluations.engine.metrics import benjamini_hochberg, flip_indices, holm, mcnemar_exact
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, Flip, FlipDirection
from ledger.canonical import digest
from ledger.services import ledger_append

from .runs import MIN_SUBGROUP_N, example_arrays, group_masks, run_outputs

DEFAULT_RESAMPLES = 2000


def comparison_compute(
    *, actor, baseline_run_id: int, candidate_run_id: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Comparison:
    """For every metric on every slice and subgroup: the delta with a paired-bootstrap interval
    (same resamples for both models), McNemar's exact test on decision changes with Holm and
    Benjamini-Hochberg adjusted p-values, and the flip set. Computed once per (baseline,
    candidate); a second call returns the stored comparison."""
    baseline = EvaluationRun.objects.select_related("artifact").get(pk=baseline_run_id)
    candidate = EvaluationRun.objects.select_related("artifact").get(pk=candidate_run_id)
    for field, run in (("baseline_run", baseline), ("candidate_run", candidate)):
        if run.status != RunStatus.SUCCEEDED:
            raise ValidationFailed(
                f"Evaluation {run.pk} has not succeeded.",
                code=EvaluationsErrorCode.EVALUATION_NOT_READY,
                details={field: [f"Status is {run.status}."]},
            )
    if baseline.suite_version_id != candidate.suite_version_id:
        raise ValidationFailed(
            "Both runs must use the same suite version.",
            code=EvaluationsErrorCode.DIFFERENT_INPUTS,
            details={"candidate_run": ["Different suite version from the baseline."]},
        )
    if baseline.artifact.labels != candidate.artifact.labels:
        raise ValidationFailed(
            "Both models must have the same classes.",
            code=EvaluationsErrorCode.DIFFERENT_CLASSES,
            details={"candidate_run": ["Different class labels from the baseline."]},
        )
    existing = Comparison.objects.filter(baseline_run=baseline, candidate_run=candidate).first()
    if existing and existing.status == ComparisonStatus.DONE:
        return existing

    labels = baseline.artifact.labels
    a = example_arrays(baseline.suite_version, labels)
    base, cand = run_outputs(baseline, a["example_id"]), run_outputs(candidate, a["example_id"])
    masks = group_masks(a["slice"], a["subgroup"], min_subgroup_n=MIN_SUBGROUP_N)
    perturbed = (a["source_index"] >= 0).any()
    result = paired_bootstrap(
        a["y"],
        ModelScores(base["unsafe_prob"], base["decision"], base["predicted_class"]),
        ModelScores(cand["unsafe_prob"], cand["decision"], cand["predicted_class"]),
        groups=masks,
        true_class=a["true_class"],
        n_classes=len(labels),
        subgroup=a["subgroup"],
        source_index=a["source_index"] if perturbed else None,
        resamples=resamples,
        seed=seed,
        min_subgroup_n=MIN_SUBGROUP_N,
    ).as_dict()
    groups = {}
    for key, mask in masks.items():
        y, bd, cd = a["y"][mask], base["decision"][mask], cand["decision"][mask]
        test = mcnemar_exact(bd == y, cd == y)
        groups[key] = {
            "n": int(mask.sum()),
            "n_unsafe": int(y.sum()),
            "flips": int((bd != cd).sum()),
            "metrics": result["groups"][key],
            "mcnemar": {"b": test.b, "c": test.c, "p_value": test.p_value},
        }
    keys = list(groups)
    pvalues = [groups[k]["mcnemar"]["p_value"] for k in keys]
    for k, p_holm, p_bh in zip(keys, holm(pvalues), benjamini_hochberg(pvalues), strict=True):
        groups[k]["mcnemar"].update({"p_holm": p_holm, "p_bh": p_bh})
    flipped = flip_indices(base["decision"], cand["decision"])
    statistics = {
        **result["statistics"],
        "level": 0.95,
        "test": "McNemar exact (two-sided binomial)",
        "multiple_comparisons": "Holm (family: every group) and Benjamini-Hochberg, both recorded",
        "min_subgroup_n": MIN_SUBGROUP_N,
    }
    with transaction.atomic():
        comparison, _ = Comparison.objects.select_for_update().get_or_create(
            baseline_run=baseline, candidate_run=candidate
        )
        if comparison.status == ComparisonStatus.DONE:
            return comparison
        Flip.objects.bulk_create(
            [
                Flip(
                    comparison=comparison,
                    example_id=int(a["example_id"][i]),
                    baseline_prob=float(base["unsafe_prob"][i]),
                    candidate_prob=float(cand["unsafe_prob"][i]),
                    direction=FlipDirection.TO_UNSAFE if cand["decision"][i] else FlipDirection.TO_SAFE,
                    candidate_correct=bool(cand["decision"][i] == a["y"][i]),
                )
                for i in flipped
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
        comparison.results = {"groups": groups, "runtime": runtime_ratios(baseline.runtime, candidate.runtime)}
        comparison.statistics = statistics
        comparison.flip_count = len(flipped)
        comparison.status = ComparisonStatus.DONE
        comparison.save()
        ledger_append(
            actor=actor,
            action="comparison.computed",
            object_type="comparison",
            object_id=comparison.pk,
            payload={
                "baseline_run": baseline.pk,
                "candidate_run": candidate.pk,
                "flips": len(flipped),
                "results_digest": digest(comparison.results),
                "statistics": statistics,
            },
        )
    return comparison


# ratio name: (runtime key, higher is better), from the metric catalogue
RUNTIME_RATIOS = {
    spec.name: (spec.runtime_key, spec.higher_is_better) for spec in CATALOG if spec.scope is Scope.RUNTIME
}


def runtime_ratios(baseline: dict | None, candidate: dict | None) -> dict:
    """Candidate / baseline for each runtime figure (both measured on the same suite and config)."""
    out = {"baseline": baseline, "candidate": candidate}
    for name, (key, _) in RUNTIME_RATIOS.items():
        b, c = (baseline or {}).get(key), (candidate or {}).get(key)
        out[name] = c / b if b and c is not None else None
    return out


def significant_groups(comparison: Comparison, *, alpha: float = 0.05, adjusted: str = "p_holm") -> list[str]:
    """Groups whose decision changes are significant after adjustment (McNemar)."""
    return [k for k, g in (comparison.results or {}).get("groups", {}).items() if g["mcnemar"][adjusted] < alpha]
