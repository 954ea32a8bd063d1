"""What a ``behavioural_distill`` run shows about how it made its candidate: the chart, one row per finished
round, its teachers, judge and prompt sets, and where the run stands, in words. The run page, the release page
and the dossier all read it from here (exports may import governance, never the other way round).

Pure: plain values in (the run's method, status, ``rounds`` and ``data_source``, or the same fields of an
evidence bundle), display-ready values out; a missing or malformed field shows as "—", never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compression.models import RunStatus
from compression.services.behaviour import BEHAVIOURAL_DISTILL

from .rounds_chart import _count, _number, ordered_rounds, percent, rounds_chart

__all__ = ["DIGEST_SHOWN", "distill_section", "distill_sources", "distill_state", "round_rows"]

DIGEST_SHOWN = 12  # hex characters of a digest shown in a table (the full value is in its title)
SET_LABELS = (("stress_set", "Stress set (training prompts)"), ("heldback_split", "Held-back split (tests only)"))
SECONDS = ("sampling", "training", "evaluating")


def _d(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> str:
    count = _count(value)
    return "—" if count is None else str(count)


def _digest(value: Any) -> dict[str, str]:
    text = value if isinstance(value, str) and value else ""
    return {"full": text or "—", "short": text[:DIGEST_SHOWN] if text else "—"}


def _loss(loss: Any) -> str:
    loss = _d(loss)
    first, last, mean = (_number(loss.get(k)) for k in ("first", "last", "mean"))
    if first is None or last is None:
        return "not trained (no accepted answers)"
    return f"{first:.3f} → {last:.3f}" + ("" if mean is None else f" (mean {mean:.3f})")


def _seconds(record: Mapping) -> str:
    seconds = _d(record.get("seconds"))
    parts = [f"{name} {value:.0f} s" for name in SECONDS if (value := _number(seconds.get(name))) is not None]
    per_step = _number(record.get("seconds_per_step"))
    if per_step is not None:
        parts.append(f"{per_step:.2f} s/step")
    return " · ".join(parts) or "—"


def _slices(by_slice: Any) -> list[dict[str, str]]:
    return [
        {"name": str(name), **{k: _int(_d(counts).get(k)) for k in ("prompts", "accepted", "rejected", "dropped")}}
        for name, counts in sorted(_d(by_slice).items(), key=lambda kv: str(kv[0]))
    ]


def round_rows(rounds: Any) -> list[dict[str, Any]]:
    """One display row per finished round, in round order."""
    rows = []
    for position, record in enumerate(ordered_rounds(rounds)):
        heldout = _d(record.get("heldout"))
        number = _count(record.get("round"))
        rows.append(
            {
                "round": str(number if number is not None else position + 1),
                "stress_prompts": _int(record.get("stress_prompts")),
                "added_failures": _int(record.get("added_failures")),
                "training_examples": _int(record.get("training_examples")),
                "accepted": _int(record.get("accepted")),
                "rejected": _int(record.get("rejected")),
                "dropped": _int(record.get("dropped_prompts")),
                "harmful_compliance": percent(heldout.get("harmful_compliance_rate")),
                "over_refusal": percent(heldout.get("over_refusal_rate")),
                "degenerate": percent(heldout.get("degenerate_rate")),
                "heldout": f"{_int(heldout.get('prompts'))} prompts ({_int(heldout.get('harmful'))} harmful, "
                f"{_int(heldout.get('safe'))} safe); {_int(heldout.get('failures'))} failed",
                "loss": _loss(record.get("loss")),
                "seconds": _seconds(record),
                "slices": _slices(record.get("by_slice")),
                "digest": _digest(record.get("data_digest")),
            }
        )
    return rows


def _artifact(record: Any, role: str = "") -> dict[str, Any]:
    record = _d(record)
    return {
        "name": str(record.get("name") or "—"),
        "role": role or str(record.get("role") or "—"),
        "artifact": _count(record.get("artifact")),
        "digest": _digest(record.get("digest")),
    }


def _prompt_set(record: Any, label: str) -> dict[str, Any]:
    record = _d(record)
    slices = " · ".join(f"{name} {_int(n)}" for name, n in sorted(_d(record.get("by_slice")).items()))
    return {
        "label": label,
        "suite": str(record.get("suite") or "—"),
        "suite_version": _count(record.get("suite_version")),
        "examples": _int(record.get("examples")),
        "slices": slices or "—",
        "digest": _digest(record.get("digest")),
    }


def distill_sources(data_source: Any) -> dict[str, Any]:
    """The run's teachers (the base first), its judge, its stress set and held-back split, each with its
    digest, and the digest over the judge and both sets (``data_digest``)."""
    source = _d(data_source)
    teachers = source.get("teachers")
    return {
        "teachers": [_artifact(t) for t in (teachers if isinstance(teachers, list) else [])],
        "judge": _artifact(source.get("judge"), "refusal judge"),
        "sets": [_prompt_set(source.get(key), label) for key, label in SET_LABELS],
        "data_digest": _digest(source.get("data_digest")),
    }


def distill_state(status: Any, rounds: Any) -> str:
    """Where the run stands, in words: how many rounds finished and whether they made an artifact."""
    records = ordered_rounds(rounds)
    numbers = [n for r in records if (n := _count(r.get("round"))) is not None]
    last = max(numbers) if numbers else len(records)
    n = len(records)
    finished = f"{n} finished round{'s' if n != 1 else ''}"
    if status == RunStatus.SUCCEEDED:
        return f"Succeeded after {finished}; the last round's student is the candidate."
    if status in (RunStatus.CANCELLED, RunStatus.FAILED):
        verb = "Cancelled" if status == RunStatus.CANCELLED else "Failed"
        if not records:
            return f"{verb} before a round finished: there are no rounds to show; no artifact was produced."
        return f"{verb} after round {last}: its finished rounds are kept; no artifact was produced."
    if status == RunStatus.RUNNING:
        if not records:
            return "Running: no round has finished yet."
        return f"Running: {finished} so far; each round appears here when it finishes."
    return "Queued: no round has started yet."


def distill_section(*, method: Any, status: Any, rounds: Any, data_source: Any) -> dict[str, Any] | None:
    """Everything a page or the dossier shows about a behavioural_distill run's rounds; None for other methods.
    ``chart`` is SVG markup, or the sentence rounds_chart.EMPTY when no round finished (``drawn`` says which)."""
    if method != BEHAVIOURAL_DISTILL:
        return None
    rows = round_rows(rounds)
    return {
        "state": distill_state(status, rounds),
        "drawn": bool(rows),
        "chart": rounds_chart(rounds),
        "rows": rows,
        "sources": distill_sources(data_source),
    }
