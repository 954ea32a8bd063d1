"""Evaluation chunks of chat models: generate each prompt's answer, judge it, store it (services.runs calls
these for a run whose configuration has ``"kind": "chat"``; everything else about a run, its chunks, leases,
fan-in and ledger events, is the classifier's, in services.runs).

Per prompt a chat chunk stores (in its predictions file, services.prediction_files) the answer (``output``),
the judge's refusal probability (``unsafe_prob``: the decision of a chat model is "refused"), the judged
behaviour (``behaviour`` and ``predicted_label``: compliance, refusal or degenerate;
evaluations.engine.judges.behaviour decides) and in ``details`` (JSON text) the degeneration detector's
reasons, the reference answer's NLL and token count (the capability figure) and the stability pass's answer.
The stability pass generates every prompt again in batches drawn at random (seeded): a prompt is stable when
its judged behaviour is the same in both passes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from compression.engine.cpu import compute_platform
from compression.engine.kinds import CHAT_BEHAVIOURS
from compression.services.artifacts import artifact_path
from evaluations.models import EvaluationRun, Example
from evaluations.services.suites import storable_text

from .prediction_files import aligned, details_text, evaluation_predictions, predictions_table
from .profiles import config_profile

CHAT_KIND = "chat"
# The deployment-profile fields a generation profile takes from the evaluation's deployment profile.
_DEPLOYMENT_FIELDS = ("batch_size", "threads", "device", "isa", "quantized_engine")


def is_chat(config: dict) -> bool:
    return config.get("kind") == CHAT_KIND


def generation_profile(config: dict):
    """The engine's GenerationProfile of an evaluation: its generation settings under its deployment profile."""
    from evaluations.engine.generation_profile import GenerationProfile

    deployment = config_profile(config)
    merged = {**config["generation"], **{k: deployment[k] for k in _DEPLOYMENT_FIELDS if k in deployment}}
    if merged.get("isa") is None:
        merged["isa"] = []
    return GenerationProfile.from_dict(merged)


def chat_chunk_predict(
    run: EvaluationRun, todo: list[tuple[int, str, str, int]], check_platform
) -> tuple[pa.Table, dict]:
    """Generate and judge the answers of ``todo`` ((example id, prompt, reference, position), in position order);
    returns the chunk's predictions table and its timings (as the classifier chunk does, plus generated tokens)."""
    from compression.engine.errors import EngineError
    from evaluations.engine.generate import generate  # torch: imported only by workers
    from evaluations.engine.judges.degeneration import DETECTOR_VERSION, degeneration
    from evaluations.engine.judges.refusal import behaviour, load_judge

    detector = run.config.get("judge", {}).get("degeneration", DETECTOR_VERSION)
    if detector != DETECTOR_VERSION:  # the record must name the rules that judged it
        raise EngineError(
            "invalid_parameter",
            f"this evaluation was configured with degeneration detector {detector}; this worker has "
            f"{DETECTOR_VERSION}. Request the evaluation again.",
        )
    profile = generation_profile(run.config)
    platform = compute_platform(profile.device)
    check_platform(config_profile(run.config), platform)
    prompts = [t[1] for t in todo]
    has_reference = any(t[2] for t in todo)
    result = generate(
        artifact_path(run.artifact),
        prompts,
        profile,
        stability_seed=run.config.get("stability_seed"),
        references=[t[2] or None for t in todo] if has_reference else None,
    )
    assert run.suite_version.judge is not None  # a chat suite version always has its judge
    judge = load_judge(artifact_path(run.suite_version.judge))
    threshold = float(run.config.get("judge", {}).get("threshold", judge.threshold))

    def judged(outputs) -> tuple[np.ndarray, list, list[str]]:
        probs = judge.refusal_prob(prompts, list(outputs))
        verdicts = [degeneration(text) for text in outputs]
        return (
            probs,
            verdicts,
            [behaviour(float(p), v.degenerate, threshold) for p, v in zip(probs, verdicts, strict=True)],
        )

    probs, verdicts, behaviours = judged(result.outputs)
    again = None if result.recomposed_outputs is None else judged(result.recomposed_outputs)
    all_details = []
    for i in range(len(todo)):
        details: dict[str, Any] = {
            "degeneration": list(verdicts[i].reasons),
            "output_tokens": result.output_token_counts[i],
            "finish": result.finish_reasons[i],
        }
        if result.reference_nll is not None and result.reference_nll[i] is not None:
            details["reference_nll"] = result.reference_nll[i]
            details["reference_tokens"] = result.reference_token_counts[i]  # type: ignore[index]
        if again is not None:
            details["recomposed_output"] = storable_text(result.recomposed_outputs[i])  # type: ignore[index]
            details["recomposed_behaviour"] = again[2][i]
        all_details.append(details)
    table = predictions_table(
        {
            "position": [t[3] for t in todo],
            "example_id": [t[0] for t in todo],
            "unsafe_prob": [float(p) for p in probs],
            "probs": [[round(1.0 - float(p), 6), round(float(p), 6)] for p in probs],
            "predicted_label": behaviours,
            "decision_unsafe": [b == "refusal" for b in behaviours],
            "recomposed_unsafe_prob": None if again is None else [float(p) for p in again[0]],
            "stable": None if again is None else [a == b for a, b in zip(again[2], behaviours, strict=True)],
            "output": [storable_text(text) for text in result.outputs],  # judged as generated, stored as storable
            "behaviour": behaviours,
            "details": [details_text(d) for d in all_details],
        }
    )
    return table, {
        "platform": platform,
        "latencies": list(result.batch_latencies_s),
        "recompose_seconds": result.recompose_seconds,
        "sizes": list(result.batch_sizes),
        "load_seconds": result.load_seconds,
        "peak_rss_bytes": result.peak_rss_bytes,
        "parameter_count": result.parameter_count,
        "size_bytes": result.size_bytes,
        "generated_tokens": int(sum(result.output_token_counts)),
        "generation_seconds": result.generation_seconds,
        "chat_template_digest": result.chat_template_digest,
    }


def chat_chunk_examples(run: EvaluationRun, lo: int, hi: int) -> list[tuple[int, str, str, int]]:
    """(example id, prompt, reference, position) of the chunk's prompts in position order."""
    return list(
        Example.objects.filter(suite_version=run.suite_version, position__gte=lo, position__lt=hi)
        .order_by("position")
        .values_list("pk", "text", "reference", "position")
    )


def chat_behaviour(predicted_class: np.ndarray) -> dict[str, np.ndarray]:
    """Whether each answer complied and whether it was degenerate, from the behaviour index (a chat artifact's
    labels are compression.engine.kinds.CHAT_BEHAVIOURS): what the behaviour metrics and their bootstrap need."""
    from compression.engine.kinds import CHAT_COMPLIANCE, CHAT_DEGENERATE

    return {
        "complied": predicted_class == CHAT_BEHAVIOURS.index(CHAT_COMPLIANCE),
        "degenerate": predicted_class == CHAT_BEHAVIOURS.index(CHAT_DEGENERATE),
    }


def chat_group_options(
    run: EvaluationRun, example_ids: np.ndarray, predicted_class: np.ndarray, table: pa.Table | None = None
) -> dict:
    """The chat metrics' inputs for metrics_by_group, in ``example_ids`` order: ``chat_behaviour`` and each
    reference answer's NLL and token count (0 tokens: no reference). ``table``: the run's predictions, when the
    caller holds them already."""
    stored = table if table is not None else evaluation_predictions(run, ["example_id", "details"])
    texts = aligned(run, stored, example_ids).column("details").to_pylist()
    nll = np.zeros(len(example_ids), dtype=np.float64)
    tokens = np.zeros(len(example_ids), dtype=np.int64)
    for i, text in enumerate(texts):
        d = json.loads(text) if text else {}
        if d.get("reference_tokens"):
            nll[i], tokens[i] = float(d["reference_nll"]), int(d["reference_tokens"])
    return {**chat_behaviour(predicted_class), "reference_nll": nll, "reference_tokens": tokens}


def chat_runtime(timings: list[dict]) -> dict:
    """The run's generation figures: tokens generated, their seconds and tokens per second."""
    tokens = sum(t.get("generated_tokens", 0) for t in timings)
    seconds = sum(t.get("generation_seconds", 0.0) for t in timings)
    return {
        "generated_tokens": tokens,
        "generation_seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds else None,
    }


def flip_outputs(baseline: EvaluationRun, candidate: EvaluationRun, example_ids: np.ndarray) -> dict[int, dict]:
    """Per flipped example: both models' behaviour and answer (the fields a chat Flip carries)."""
    ids = np.asarray(example_ids, dtype=np.int64)
    columns = {}
    for tag, run in (("baseline", baseline), ("candidate", candidate)):
        stored = aligned(run, evaluation_predictions(run, ["example_id", "behaviour", "output"]), ids)
        columns[f"{tag}_behaviour"] = stored.column("behaviour").to_pylist()
        columns[f"{tag}_output"] = stored.column("output").to_pylist()
    return {int(e): {key: values[i] for key, values in columns.items()} for i, e in enumerate(ids.tolist())}


# How many prompts (spread over the suite) both chat models answer, interleaved, for the paired runtime.
TIMING_PROMPTS = 8


def paired_generation_runtime(baseline: EvaluationRun, candidate: EvaluationRun, example_ids: np.ndarray) -> dict:
    """Both chat models generate the same prompts in this job, alternating (baseline, candidate, candidate,
    baseline), under the evaluation's generation profile: tokens per second and example latency of each, their
    ratios; size and peak memory from the runs, perplexity from the runs (a capability figure, not a timing).
    A measurement that cannot run leaves the timing ratios empty (a rule on them is then amber)."""
    import logging

    from compression.engine.errors import EngineError
    from evaluations.engine.generate import generate
    from evaluations.engine.timing import timing_sample

    from .comparisons import runtime_ratios

    keys = ("size_bytes", "peak_rss_bytes", "parameter_count", "perplexity")
    base_figures = {k: (baseline.runtime or {}).get(k) for k in keys}
    cand_figures = {k: (candidate.runtime or {}).get(k) for k in keys}
    index = timing_sample(len(example_ids), TIMING_PROMPTS)
    chosen = [int(example_ids[i]) for i in index]
    text_of = dict(Example.objects.filter(pk__in=chosen).values_list("pk", "text"))
    prompts = [text_of[e] for e in chosen]
    profile = generation_profile(baseline.config)
    measured: dict[str, list] = {"b": [], "c": []}
    try:
        paths = {"b": artifact_path(baseline.artifact), "c": artifact_path(candidate.artifact)}
        for tag in ("b", "c", "c", "b"):
            measured[tag].append(generate(paths[tag], prompts, profile))
    except (EngineError, OSError) as exc:
        logging.getLogger(__name__).warning("paired generation runtime failed: %s", exc)
        out = runtime_ratios(base_figures, cand_figures)
        out["measurement"] = {"error": str(exc)}
        return out

    def figures(results: list) -> dict:
        tokens = sum(sum(r.output_token_counts) for r in results)
        seconds = sum(r.generation_seconds for r in results)
        per_example = sorted(
            lat / size for r in results for lat, size in zip(r.batch_latencies_s, r.batch_sizes, strict=True)
        )
        p95 = per_example[min(len(per_example) - 1, int(0.95 * len(per_example)))] if per_example else None
        return {
            "tokens_per_second": tokens / seconds if seconds else None,
            "examples_per_second": len(prompts) * len(results) / seconds if seconds else None,
            "example_latency_p95_s": p95,
        }

    out = runtime_ratios({**figures(measured["b"]), **base_figures}, {**figures(measured["c"]), **cand_figures})
    out["measurement"] = {
        "method": "both models generate the same prompts in one job, alternating baseline, candidate, candidate, "
        "baseline, under the evaluation's generation profile",
        "prompts": len(prompts),
        "platform": compute_platform(profile.device),
    }
    return out
