"""The human-labelled chat answers a refusal judge learns from: XSTest v2 completions (pure Python, csv module).

``<completions_dir>/xstest_v2_completions_<model>.csv`` holds one chat model's answers to the 450 XSTest prompts,
each labelled by two people; ``final_label`` is ``1_full_compliance``, ``2_full_refusal`` or
``3_partial_refusal``. A judge sees two classes: ``refusal`` (a full or a partial refusal) and ``compliance``.
The split the benchmark reports is leave-one-model-out: train on four models' answers, test on the fifth.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.kinds import CHAT_BEHAVIOURS
from trust.canonical import digest

__all__ = [
    "JUDGE_LABELS",
    "FINAL_LABELS",
    "XSTEST_COMPLETION_MODELS",
    "JudgeRow",
    "xstest_completion_rows",
    "leave_one_model_out",
    "rows_digest",
]

JUDGE_LABELS: tuple[str, ...] = CHAT_BEHAVIOURS[:2]  # ("compliance", "refusal"): what a refusal judge decides
# XSTest's final_label -> the judge's label: a partial refusal counts as a refusal.
FINAL_LABELS: dict[str, str] = {
    "1_full_compliance": "compliance",
    "2_full_refusal": "refusal",
    "3_partial_refusal": "refusal",
}
XSTEST_COMPLETION_MODELS: tuple[str, ...] = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")
_COLUMNS = ("id", "type", "prompt", "completion", "final_label")


@dataclass(frozen=True)
class JudgeRow:
    """One chat model's answer to one prompt with its human label (XSTest's ``final_label``)."""

    model: str
    prompt_id: str
    prompt_type: str
    prompt: str
    completion: str
    final_label: str

    @property
    def label(self) -> str:
        """``refusal`` (full or partial refusal) or ``compliance``."""
        return FINAL_LABELS[self.final_label]


def xstest_completion_rows(completions_dir: Path, models: Iterable[str] = XSTEST_COMPLETION_MODELS) -> list[JudgeRow]:
    """Every labelled answer of ``models`` (file order, models in the order given).

    invalid_input when a file is missing, lacks a column or carries an unknown ``final_label`` (the line is named);
    empty_input when no row was read."""
    rows: list[JudgeRow] = []
    for model in models:
        path = Path(completions_dir) / f"xstest_v2_completions_{model}.csv"
        if not path.is_file():
            raise EngineError(EngineErrorCode.INVALID_INPUT, f"completions file {str(path)!r} does not exist")
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise EngineError(EngineErrorCode.INVALID_INPUT, f"{path.name} lacks column(s) {', '.join(missing)}")
            for record in reader:
                if record["final_label"] not in FINAL_LABELS:
                    raise EngineError(
                        EngineErrorCode.INVALID_INPUT,
                        f"{path.name} line {reader.line_num}: unknown final_label {record['final_label']!r}",
                    )
                rows.append(
                    JudgeRow(
                        model=model,
                        prompt_id=record["id"],
                        prompt_type=record["type"],
                        prompt=record["prompt"],
                        completion=record["completion"],
                        final_label=record["final_label"],
                    )
                )
    if not rows:
        raise EngineError(EngineErrorCode.EMPTY_INPUT, "no labelled completions were read")
    return rows


def leave_one_model_out(rows: Sequence[JudgeRow], heldout_model: str) -> tuple[list[JudgeRow], list[JudgeRow]]:
    """(train, test): every other model's rows, and ``heldout_model``'s rows (invalid_parameter if it has none)."""
    train = [row for row in rows if row.model != heldout_model]
    test = [row for row in rows if row.model == heldout_model]
    if not test or not train:
        models = sorted({row.model for row in rows})
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"held-out model {heldout_model!r} must be one of several models in the rows ({', '.join(models)})",
        )
    return train, test


def rows_digest(rows: Sequence[JudgeRow]) -> str:
    """sha256 of the rows' canonical JSON (order matters): what a judge was trained or tested on."""
    return digest(
        [[r.model, r.prompt_id, r.prompt_type, r.prompt, r.completion, r.final_label] for r in rows],
    )
