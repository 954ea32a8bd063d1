"""Chat models (`python -m bench llm`): (a) the judges (bench/judge.py: the refusal judge's accuracy on a chat model
it was not trained on, beside string match; the degeneration detector's validation) and (b) the generation
throughput of SmolLM2 and its compressed copies (bench/generation.py). The figures land in bench/results.json
under `llm` (`llm.figures.judge.heldout_accuracy`; `llm.judge` repeats the judge's figures at the path issue 14
names)."""

from __future__ import annotations

from bench import generation, judge


def run() -> dict:
    judged = judge.run()
    targets = judged.pop("targets", {})
    return {"judge": judged, "generation": generation.run(), "targets": targets}
