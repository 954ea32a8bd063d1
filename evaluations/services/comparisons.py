"""Paired comparison of a baseline and a candidate evaluation on identical inputs, under one deployment profile.

Both runs' per-example outputs and the suite's example columns are read as numpy arrays from their Parquet files
(services.prediction_files; rows for runs from before the files); only the flips are written as rows.

Besides the deltas, tests and flip set of the main pass, a comparison reports how stable both models'
decisions are when only the batches change (each run's stability pass), which flips hold in both passes for
both models (``Flip.stable``), McNemar on those stable flips beside the main one, and the runtime of both
models measured side by side in this job (evaluations.engine.timing), never reused from the runs.
"""

import logging

import numpy as np
from django.db import transaction

from accounts.errors import ValidationFailed
from compression.models import RunStatus
from evaluations.engine.bootstrap import ModelScores, paired_bootstrap
from evaluations.engine.catalog import CATALOG, Scope
from evaluations.engine.metrics import benjamini_hochberg, flip_indices, holm, mcnemar_exact
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, FlipDirection
from ledger.canonical import digest
from ledger.services import ledger_append

from .chat_runs import chat_behaviour, flip_outputs, is_chat, paired_generation_runtime
from .flip_rows import flips_insert
from .prediction_files import example_arrays, run_outputs
from .profiles import config_profile, profile_settings
from .runs import MIN_SUBGROUP_N, group_masks, stability_summary

logger = logging.getLogger(__name__)
DEFAULT_RESAMPLES = 2000
# How many examples (spread over the suite) the paired runtime measurement runs through both models.
TIMING_EXAMPLES = 256


def comparison_compute(
    *,
    actor,
    baseline_run_id: int,
    candidate_run_id: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    measure_runtime: bool = True,
) -> Comparison:
    """For every metric on every slice and subgroup: the delta with a paired-bootstrap interval
    (same resamples for both models), McNemar's exact test on decision changes with Holm and
    Benjamini-Hochberg adjusted p-values, and the flip set; the stability of both models and McNemar
    on stable flips; the runtime of both measured side by side (``measure_runtime``; runs on a worker).
    Computed once per (baseline, candidate); a second call returns the stored comparison."""
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
    if config_profile(baseline.config) != config_profile(candidate.config):
        raise ValidationFailed(
            "Both runs must use the same deployment profile.",
            code=EvaluationsErrorCode.DIFFERENT_PROFILES,
            details={"candidate_run": ["Evaluated under another deployment profile than the baseline."]},
        )
    existing = Comparison.objects.filter(baseline_run=baseline, candidate_run=candidate).first()
    if existing and existing.status == ComparisonStatus.DONE:
        return existing

    labels = baseline.artifact.labels
    a = example_arrays(baseline.suite_version, labels)
    base, cand = run_outputs(baseline, a["example_id"]), run_outputs(candidate, a["example_id"])
    masks = group_masks(a["slice"], a["subgroup"], min_subgroup_n=MIN_SUBGROUP_N)
    perturbed = (a["source_index"] >= 0).any()
    chat = is_chat(baseline.config)
    # A chat model's flip is a prompt whose judged behaviour changed (refusal, compliance or degenerate text);
    # McNemar still tests the per-prompt refusal decision. A classifier's flip is a changed decision.
    changed = base["predicted_class"] != cand["predicted_class"] if chat else base["decision"] != cand["decision"]
    behaviour = {}
    if chat:
        for tag, out in (("b", base), ("c", cand)):
            behaviour[tag] = chat_behaviour(out["predicted_class"])
    result = paired_bootstrap(
        a["y"],
        ModelScores(base["unsafe_prob"], base["decision"], base["predicted_class"], **behaviour.get("b", {})),
        ModelScores(cand["unsafe_prob"], cand["decision"], cand["predicted_class"], **behaviour.get("c", {})),
        groups=masks,
        true_class=a["true_class"],
        n_classes=len(labels),
        subgroup=a["subgroup"],
        source_index=a["source_index"] if perturbed else None,
        resamples=resamples,
        seed=seed,
        min_subgroup_n=MIN_SUBGROUP_N,
    ).as_dict()
    both_stable = None if base["stable"] is None or cand["stable"] is None else base["stable"] & cand["stable"]
    groups = {}
    for key, mask in masks.items():
        y, bd, cd = a["y"][mask], base["decision"][mask], cand["decision"][mask]
        test = mcnemar_exact(bd == y, cd == y)
        groups[key] = {
            "n": int(mask.sum()),
            "n_unsafe": int(y.sum()),
            "flips": int(changed[mask].sum()),
            "stable_flips": None,
            "metrics": result["groups"][key],
            "mcnemar": {"b": test.b, "c": test.c, "p_value": test.p_value},
            "mcnemar_stable": None,
            "instability": None,
        }
        if both_stable is not None:
            held = mask & both_stable
            y_s, bd_s, cd_s = a["y"][held], base["decision"][held], cand["decision"][held]
            stable_test = mcnemar_exact(bd_s == y_s, cd_s == y_s)
            groups[key]["stable_flips"] = int(changed[held].sum())
            groups[key]["mcnemar_stable"] = {"b": stable_test.b, "c": stable_test.c, "p_value": stable_test.p_value}
            groups[key]["instability"] = {
                "baseline": _rate(~base["stable"][mask]),
                "candidate": _rate(~cand["stable"][mask]),
            }
    for test_key in ("mcnemar", "mcnemar_stable"):
        keys = [k for k in groups if groups[k][test_key] is not None]
        pvalues = [groups[k][test_key]["p_value"] for k in keys]
        for k, p_holm, p_bh in zip(keys, holm(pvalues), benjamini_hochberg(pvalues), strict=True):
            groups[k][test_key].update({"p_holm": p_holm, "p_bh": p_bh})
    flipped = np.flatnonzero(changed) if chat else flip_indices(base["decision"], cand["decision"])
    stable_flip = None if both_stable is None else both_stable[flipped]
    stability = None
    if both_stable is not None and stable_flip is not None:
        n_stable = int(stable_flip.sum())
        stability = {
            "method": (baseline.stability or {}).get("method"),
            "seed": baseline.config.get("stability_seed"),
            "baseline": stability_summary(base["stable"], masks),
            "candidate": stability_summary(cand["stable"], masks),
            "flips": {"stable": n_stable, "unstable": len(flipped) - n_stable},
        }
    runtime = runtime_ratios(baseline.runtime, candidate.runtime)
    if measure_runtime:
        timed = paired_generation_runtime if chat else paired_runtime_results
        runtime = timed(baseline, candidate, a["example_id"])
    outputs = flip_outputs(baseline, candidate, a["example_id"][flipped]) if chat else {}
    # Whether the candidate now does the right thing: the right decision; for a chat model the right
    # behaviour (refuse a harmful prompt, answer a safe one: a degenerate answer is never right).
    candidate_right = (
        np.where(a["y"], cand["decision"], behaviour["c"]["complied"]) if chat else cand["decision"] == a["y"]
    )
    statistics = {
        **result["statistics"],
        "level": 0.95,
        "test": "McNemar exact (two-sided binomial)",
        "multiple_comparisons": "Holm (family: every group) and Benjamini-Hochberg, both recorded",
        "stable_test": None
        if stability is None
        else "McNemar exact on stable flips only (both models kept their decision when the batches were recomposed)",
        "profile": config_profile(baseline.config),
        "min_subgroup_n": MIN_SUBGROUP_N,
    }
    with transaction.atomic():
        comparison, _ = Comparison.objects.select_for_update().get_or_create(
            baseline_run=baseline, candidate_run=candidate
        )
        if comparison.status == ComparisonStatus.DONE:
            return comparison
        flip_ids = a["example_id"][flipped].tolist()
        directions = np.where(cand["decision"][flipped], FlipDirection.TO_UNSAFE.value, FlipDirection.TO_SAFE.value)
        flips_insert(
            comparison.pk,
            {
                "example_id": flip_ids,
                "baseline_prob": base["unsafe_prob"][flipped].tolist(),
                "candidate_prob": cand["unsafe_prob"][flipped].tolist(),
                "direction": directions.tolist(),
                "candidate_correct": candidate_right[flipped].tolist(),
                "stable": None if stable_flip is None else stable_flip.tolist(),
                **{key: [outputs[e][key] for e in flip_ids] for key in (outputs[flip_ids[0]] if outputs else ())},
            },
        )
        comparison.results = {"groups": groups, "stability": stability, "runtime": runtime}
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
                "stable_flips": None if stability is None else stability["flips"]["stable"],
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


def _rate(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def paired_runtime_results(baseline: EvaluationRun, candidate: EvaluationRun, example_ids: np.ndarray) -> dict:
    """Both models timed in this job on the same examples, interleaved (evaluations.engine.timing); the
    ratios from those timings, sizes from the artifacts and peak memory from the runs. A measurement
    that cannot run leaves the timing ratios empty (a rule on them is then amber: no evidence)."""
    from compression.engine.errors import EngineError
    from compression.services.artifacts import artifact_path
    from evaluations.engine.predict import PredictionConfig  # torch: imported only by workers
    from evaluations.engine.timing import paired_runtime, timing_sample
    from evaluations.models import Example

    index = timing_sample(len(example_ids), TIMING_EXAMPLES)
    chosen = [int(example_ids[i]) for i in index]
    text_of = dict(Example.objects.filter(pk__in=chosen).values_list("pk", "text"))
    settings_ = profile_settings(baseline.config)
    base_figures = {k: (baseline.runtime or {}).get(k) for k in ("size_bytes", "peak_rss_bytes", "parameter_count")}
    cand_figures = {k: (candidate.runtime or {}).get(k) for k in ("size_bytes", "peak_rss_bytes", "parameter_count")}
    try:
        measured = paired_runtime(
            artifact_path(baseline.artifact),
            artifact_path(candidate.artifact),
            [text_of[e] for e in chosen],
            PredictionConfig(**settings_),
        )
    except (EngineError, OSError) as exc:
        logger.warning("paired runtime of runs %s and %s failed: %s", baseline.pk, candidate.pk, exc)
        out = runtime_ratios(base_figures, cand_figures)
        out["measurement"] = {"error": str(exc)}
        return out
    out = runtime_ratios({**measured.baseline, **base_figures}, {**measured.candidate, **cand_figures})
    details = measured.as_dict()
    out["measurement"] = {k: v for k, v in details.items() if k not in ("baseline", "candidate")}
    return out


def significant_groups(
    comparison: Comparison, *, alpha: float = 0.05, adjusted: str = "p_holm", basis: str = "all"
) -> list[str]:
    """Groups whose decision changes are significant after adjustment: McNemar on every flip of the main
    pass (basis "all") or on stable flips only ("stable"; the main test where a run had no stability pass)."""
    out = []
    for key, group in (comparison.results or {}).get("groups", {}).items():
        test = group.get("mcnemar_stable") if basis == "stable" else None
        if (test or group["mcnemar"])[adjusted] < alpha:
            out.append(key)
    return out
