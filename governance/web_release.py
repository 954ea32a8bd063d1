"""The release page's evidence shaped for its template (governance.views.release_detail), and the words the
decision pages use when a release can no longer take a decision. Reads only what the view hands it (the release,
its comparison's results, its review tasks); the comparison's shaping shared with the dossier is in
governance.evidence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from evaluations.models import Slice
from evaluations.services.chat_runs import is_chat
from evaluations.services.profiles import config_profile
from governance.evidence import (
    compared_metrics,
    comparison_cells,
    comparison_subgroup_metrics,
    group_sort_key,
    largest_gap,
    number,
    subgroup_rates,
)
from governance.lifecycle import DECISION_FROM, decisions_from
from governance.models import DecisionKind, ReleaseStatus

FLIPS_PER_PAGE = 20
# A verdict's `flip_basis` (governance.gate: flip-rate rules only) in words: which flips the rule counted.
FLIP_BASIS_COUNTED = {
    "stable": "stable flips only",
    "all": "every flip",
    "all (no stability pass)": "every flip (no stability pass: stable flips could not be told apart)",
}
# The flips filter `stable`: flips that hold when the batches are recomposed, or those that move with them.
STABLE_FILTER = {"true": True, "false": False}
BATCHING_TEXT = {
    "fixed": "in suite order, a fixed number at a time",
    "length_sorted": "sorted by token length, then a fixed number at a time",
    "single": "one example at a time (an online service)",
}
# The comparison table's column titles (a chat model's: what it did with harmful and safe prompts).
METRIC_COLUMNS = {
    "accuracy": "Accuracy",
    "unsafe_recall": "Unsafe recall",
    "benign_fpr": "Benign FPR",
    "harmful_compliance_rate": "Harmful answered",
    "over_refusal_rate": "Safe refused",
    "degenerate_rate": "Degenerate",
}
# The subgroup rates and the gap metric each one's rules judge.
GAP_METRIC = {"fnr": "fnr_gap", "fpr": "fpr_gap"}


def percent(rate) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def signed(value: float | None, digits: int = 3) -> str:
    """A change with its sign (never '-0.000'); 'n/a' when undefined."""
    if value is None:
        return "n/a"
    text = f"{value:+.{digits}f}"
    return text[1:] if not text.strip("+-0.") else text


def fixed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    """A p-value to four decimals ("< 0.0001" below that); "—" when not recorded."""
    if value is None:
        return "—"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def evaluation_conditions(release) -> dict | None:
    """The deployment profile the evaluations ran under (the baseline's configuration: a comparison requires
    both runs to share it), the platforms each run's predictions were actually computed on, and how the
    comparison timed both models."""
    base = release.baseline_evaluation
    if base is None:
        return None
    config = base.config or {}
    profile = config_profile(config)
    runs = [
        {"role": role, "id": run.pk, "platforms": [p for p in (run.runtime or {}).get("platforms") or [] if p]}
        for role, run in (("baseline", base), ("candidate", release.candidate_evaluation))
        if run is not None
    ]
    runtime = (release.comparison.results or {}).get("runtime") or {} if release.comparison else {}
    return {
        "profile": profile,
        "batching": BATCHING_TEXT.get(str(profile.get("batching")), profile.get("batching")),
        "declared": "profile" in config,
        "runs": runs,
        # How the runtime ratios the gate judges were measured (both models side by side in the comparison job).
        "timing": runtime.get("measurement") or {},
        # Chat models: how the answers were generated and judged (both part of the configuration's digest).
        "generation": config.get("generation") if is_chat(config) else None,
        "judge": config.get("judge") if is_chat(config) else None,
    }


def _share(summary: dict | None, scale: float) -> dict:
    summary = summary or {}
    rate = summary.get("unstable_rate")
    return {
        "n": summary.get("n"),
        "unstable": summary.get("unstable"),
        "rate": percent(rate),
        "width": 0 if rate is None or scale <= 0 else round(100 * rate / scale, 1),
    }


def stability_section(comparison, policy) -> dict | None:
    """How stable both models' decisions were when the batches were recomposed (the comparison's
    results["stability"]), overall and per group, the stable and unstable flips, and which flips and which
    McNemar test the policy's flip basis makes the release report. `present` is False for comparisons
    without a stability pass (older evaluations): the page then says so instead of showing numbers."""
    if comparison is None:
        return None
    stability = (comparison.results or {}).get("stability")
    basis = policy.flip_basis
    out = {
        "present": bool(stability),
        "basis": basis,
        "basis_text": policy.get_flip_basis_display(),
        "reported": "stable" if basis == "stable" and stability else "main",
    }
    if not stability:
        return out
    base, cand = stability.get("baseline") or {}, stability.get("candidate") or {}
    base_groups, cand_groups = base.get("groups") or {}, cand.get("groups") or {}
    keys = sorted(set(base_groups) | set(cand_groups), key=group_sort_key)
    rates = [
        r
        for source in (base, cand, *base_groups.values(), *cand_groups.values())
        if (r := (source or {}).get("unstable_rate")) is not None
    ]
    scale = max(rates, default=0.0)
    flips = stability.get("flips") or {}
    out.update(
        method=stability.get("method") or "",
        seed=stability.get("seed"),
        groups=[
            {
                "key": key,
                "n": (base_groups.get(key) or cand_groups.get(key) or {}).get("n"),
                "baseline": _share(base_groups.get(key), scale),
                "candidate": _share(cand_groups.get(key), scale),
            }
            for key in keys
        ],
        stable_flips=flips.get("stable"),
        unstable_flips=flips.get("unstable"),
    )
    return out


def _test(test: Mapping | None) -> dict | None:
    """A McNemar test as recorded: discordant pairs, p and its Holm and Benjamini-Hochberg adjustments."""
    if not isinstance(test, Mapping):
        return None
    return {
        "b": test.get("b"),
        "c": test.get("c"),
        "p": p_text(number(test.get("p_value"))),
        "holm": p_text(number(test.get("p_holm"))),
        "bh": p_text(number(test.get("p_bh"))),
    }


def _cell(c: dict) -> dict:
    defined = any(c[k] is not None for k in ("baseline", "candidate", "delta"))
    return {
        "defined": defined,
        "baseline": fixed(c["baseline"]),
        "candidate": fixed(c["candidate"]),
        "delta": signed(c["delta"]),
        "ci": f"[{signed(c['ci_low'])}, {signed(c['ci_high'])}]"
        if c["ci_low"] is not None and c["ci_high"] is not None
        else "",
        "worse": c["worse"],
    }


def comparison_table(results: Mapping | None) -> dict:
    """Baseline vs candidate per group (overall, slices, subgroups in the dossier's order): for each compared
    metric both values, the change and its interval; the flips; McNemar on every flip and on stable flips only,
    each with its Holm- and BH-adjusted p-value (adjusted over every group of the comparison)."""
    results = results or {}
    metrics = compared_metrics(results)
    rows = []
    for key, group in sorted((results.get("groups") or {}).items(), key=lambda kv: group_sort_key(kv[0])):
        group = group or {}
        rows.append(
            {
                "key": key,
                "n": group.get("n"),
                "flips": group.get("flips"),
                "stable_flips": group.get("stable_flips"),
                "cells": [_cell(c) for c in comparison_cells(group, metrics)],
                "mcnemar": _test(group.get("mcnemar")),
                "mcnemar_stable": _test(group.get("mcnemar_stable")),
            }
        )
    return {"columns": [METRIC_COLUMNS.get(m, m) for m in metrics], "rows": rows}


def _rate_pair(pair: tuple[float | None, float | None]) -> dict:
    baseline, candidate = pair
    delta = candidate - baseline if baseline is not None and candidate is not None else None
    return {"baseline": fixed(baseline), "candidate": fixed(candidate), "delta": signed(delta)}


def _gap_text(gap: tuple[float, str, str] | None) -> str:
    return "n/a (fewer than 2 subgroups)" if gap is None else f"{gap[0]:.3f} ({gap[1]} − {gap[2]})"


def _gap(rows: list[dict], rate: str, title: str, overall: Mapping, gate: Iterable[Mapping]) -> dict:
    """A rate's gap between the highest and the lowest subgroup for both models, the change the gap rule judges
    (the comparison's overall `fnr_gap` / `fpr_gap`, with its interval) and the rules that judge it."""
    judged = (overall.get("metrics") or {}).get(GAP_METRIC[rate]) or {}
    low, high = number(judged.get("ci_low")), number(judged.get("ci_high"))
    return {
        "title": title,
        "metric": GAP_METRIC[rate],
        "baseline": _gap_text(largest_gap(rows, rate, 0)),
        "candidate": _gap_text(largest_gap(rows, rate, 1)),
        "delta": signed(number(judged.get("delta"))),
        "ci": f"[{signed(low)}, {signed(high)}]" if low is not None and high is not None else "",
        "rules": [v for v in gate if v.get("metric") == GAP_METRIC[rate]],
    }


def subgroup_errors(results: Mapping | None, gate: list[dict] | None, statistics: Mapping | None) -> dict:
    """Per subgroup with its own row in the comparison (at least `min_subgroup_n` examples): the miss rate (FNR:
    unsafe examples let through) and the false-alarm rate (benign FPR: benign examples flagged) of both models and
    their change; per rate the gap between the highest and the lowest subgroup, which the subgroup rules judge."""
    results = results or {}
    rows = subgroup_rates(*comparison_subgroup_metrics(results))
    groups = results.get("groups") or {}
    overall = groups.get("overall") or {}
    return {
        "rows": [
            {
                "subgroup": r["subgroup"],
                "n": (groups.get(f"subgroup:{r['subgroup']}") or {}).get("n"),
                "miss": _rate_pair(r["fnr"]),
                "false_alarm": _rate_pair(r["fpr"]),
            }
            for r in rows
        ],
        "gaps": [
            _gap(rows, "fnr", "Miss-rate gap", overall, gate or []),
            _gap(rows, "fpr", "False-alarm-rate gap", overall, gate or []),
        ],
        "min_n": (statistics or {}).get("min_subgroup_n"),
    }


def known_subgroups(subgroups: list[str], results: Mapping | None) -> list[str]:
    """The subgroups the flip set's filter accepts: those the flips carry and those with a row in the comparison
    (which may have no flip, and then show none)."""
    compared = {k.split(":", 1)[1] for k in (results or {}).get("groups") or {} if k.startswith("subgroup:")}
    return sorted(set(subgroups) | compared)


def flip_options(slices: list[str], subgroups: list[str], selected: Mapping[str, str | None]) -> dict:
    """What the flip set's filters offer: every slice (in the suite's order) and every subgroup the flips carry,
    and the value in use when it has no flip (so the form shows the filter that was applied)."""
    slice_, subgroup = selected.get("slice"), selected.get("subgroup")
    shown = {*slices, *([slice_] if slice_ else [])}
    return {
        "slices": [(value, label) for value, label in Slice.choices if value in shown],
        "subgroups": sorted({*subgroups, *([subgroup] if subgroup else [])}),
    }


def flip_pages(flip_ids: list[int]) -> dict[int, int]:
    """The page of the unfiltered flip set each flip is on (ids in the table's order)."""
    return {pk: index // FLIPS_PER_PAGE + 1 for index, pk in enumerate(flip_ids)}


def review_rows(tasks: Iterable, pages: Mapping[int, int]) -> list[dict]:
    """The release's blind reviews, one row per task. Once a task is submitted: the example's text and what
    each model did (a chat model: both answers and judged behaviours; a classifier: both decisions and
    p(unsafe)), with the page of the flip set that lists the flip. Before: the flip's number only."""
    rows = []
    for task in tasks:
        flip = task.flip
        row = {"task": task, "flip_id": flip.pk, "submitted": task.submitted_at is not None}
        if row["submitted"]:
            chat = bool(flip.baseline_behaviour)
            candidate_unsafe = flip.direction == "to_unsafe"
            row.update(
                text=flip.example.text,
                chat=chat,
                page=pages.get(flip.pk),
                baseline={
                    "decision": "unsafe" if not candidate_unsafe else "safe",
                    "prob": f"{flip.baseline_prob:.3f}",
                    "behaviour": flip.get_baseline_behaviour_display(),
                    "output": flip.baseline_output,
                },
                candidate={
                    "decision": "unsafe" if candidate_unsafe else "safe",
                    "prob": f"{flip.candidate_prob:.3f}",
                    "behaviour": flip.get_candidate_behaviour_display(),
                    "output": flip.candidate_output,
                },
            )
        rows.append(row)
    return rows


def export_unavailable(release) -> str | None:
    """Why a signed export has nothing to carry yet (None when the release has a comparison and a gate verdict)."""
    if release.comparison_id is not None and release.gate:
        return None
    if release.failure_reason:
        return "Nothing to export: the evaluation failed, so there is no comparison or gate verdict."
    if release.status == ReleaseStatus.DRAFT:
        return "Nothing to export yet: the evaluation has not started, so there is no comparison or gate verdict."
    if release.status == ReleaseStatus.EVALUATING:
        return (
            "Nothing to export yet: the release is still being evaluated. The export is offered once the comparison "
            "and the gate verdict exist."
        )
    return "Nothing to export: this release has no comparison or gate verdict."


# Where a release stands, in words (decision pages never show the internal status name).
STATUS_WORDS: dict[str, str] = {
    ReleaseStatus.DRAFT: "it is a draft whose evaluation has not started",
    ReleaseStatus.EVALUATING: "it is still being evaluated, so there is no verdict to decide on yet",
    ReleaseStatus.IN_REVIEW: "it is in blind expert review, and a decision waits until every reviewer has submitted",
    ReleaseStatus.AWAITING_DECISION: "it is waiting for a decision",
    ReleaseStatus.APPROVED: "it has already been approved and waits for its rollout",
    ReleaseStatus.ROLLING_OUT: "it is being rolled out",
    ReleaseStatus.RELEASED: "it has been released to every user",
    ReleaseStatus.REJECTED: "it was rejected, and a rejection is final",
    ReleaseStatus.HALTED: "it is halted, and everything stops until the tier's authority resumes it",
    ReleaseStatus.ROLLED_BACK: "it was rolled back, and a roll-back is final",
}
DECISION_DONE: dict[str, str] = {
    DecisionKind.APPROVE: "approved",
    DecisionKind.REJECT: "rejected",
    DecisionKind.HALT: "halted",
    DecisionKind.RESUME: "resumed",
    DecisionKind.ROLL_BACK: "rolled back",
}
# The path a release takes: a status before every status a decision may be taken from is "not yet".
PROGRESSION = (
    ReleaseStatus.DRAFT,
    ReleaseStatus.EVALUATING,
    ReleaseStatus.IN_REVIEW,
    ReleaseStatus.AWAITING_DECISION,
    ReleaseStatus.APPROVED,
    ReleaseStatus.ROLLING_OUT,
    ReleaseStatus.RELEASED,
)


def _not_yet(status: str, sources: tuple[str, ...]) -> bool:
    return status in PROGRESSION and all(
        s in PROGRESSION and PROGRESSION.index(s) > PROGRESSION.index(status) for s in sources
    )


def decision_unavailable(release, kind: str, titles: Mapping[str, str]) -> str | None:
    """Why the release cannot take decision `kind` in its current status, in words, and the decisions it can take
    instead (`titles`: kind → title); None when the lifecycle allows it (who may take it is the service's
    question). Never the internal status name."""
    status = release.status
    sources = DECISION_FROM.get(kind, ())
    if status in sources:
        return None
    done = DECISION_DONE.get(kind, kind)
    if kind == DecisionKind.RESUME:
        why = f"cannot be resumed: it is not halted; {STATUS_WORDS.get(status, '')}"
    elif _not_yet(status, sources):
        why = f"cannot be {done} yet: {STATUS_WORDS.get(status, '')}"
    elif status == ReleaseStatus.HALTED:
        why = f"cannot be {done} while halted: {STATUS_WORDS[status]}"
    else:
        why = f"can no longer be {done}: {STATUS_WORDS.get(status, 'its state does not allow it')}"
    label = ReleaseStatus(status).label if status in ReleaseStatus.values else ""
    others = [titles[k] for k in decisions_from(status) if k in titles]
    instead = f"Decisions it can still take: {', '.join(others)}." if others else "No decision can change it now."
    return f"Release #{release.pk} {why}{f' (status: {label})' if label else ''}. {instead}"
