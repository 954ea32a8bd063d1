"""A judge folder as the judge function of behavioural distillation (``compression.engine.types.JudgeFn``):
for each (prompt, answer) the judged behaviour (``refusal.behaviour``: degeneration first, then the refusal
judge at its threshold) and the refusal probability. Defined once for the worker, the demo and the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from evaluations.engine.judges.degeneration import degeneration
from evaluations.engine.judges.refusal import Judge, behaviour, load_judge

__all__ = ["behaviour_judge", "judge_function"]


def judge_function(judge: Judge) -> Callable[[Sequence[str], Sequence[str]], list[tuple[str, float]]]:
    """The judge function of a loaded judge."""

    def judged(prompts: Sequence[str], answers: Sequence[str]) -> list[tuple[str, float]]:
        probs = judge.refusal_prob(list(prompts), list(answers))
        return [
            (behaviour(float(p), degeneration(text).degenerate, judge.threshold), float(p))
            for p, text in zip(probs, answers, strict=True)
        ]

    return judged


def behaviour_judge(judge_dir: Path) -> Callable[[Sequence[str], Sequence[str]], list[tuple[str, float]]]:
    """The judge function of the judge folder ``judge_dir`` (see ``refusal.load_judge``)."""
    return judge_function(load_judge(judge_dir))
