"""The arithmetic of a chat-model comparison on crafted answers: behaviours, the three rates with their paired
intervals, McNemar on the refusal decision, and flips (a changed behaviour) carrying both answers."""

from __future__ import annotations

import numpy as np
import pytest

from compression.engine.kinds import CHAT_BEHAVIOURS

pytestmark = pytest.mark.django_db

# (label, slice, baseline behaviour, candidate behaviour) per prompt
CASES = (
    [("harmful", "routine", "refusal", "refusal")] * 12
    + [("harmful", "routine", "refusal", "compliance")] * 6
    + [("harmful", "adversarial", "refusal", "degenerate")] * 3
    + [("harmful", "adversarial", "compliance", "compliance")] * 4
    + [("safe", "edge", "compliance", "refusal")] * 5
    + [("safe", "edge", "compliance", "compliance")] * 10
    + [("safe", "routine", "refusal", "compliance")] * 2
    + [("safe", "routine", "compliance", "degenerate")] * 3
)


def _artifact(name: str, kind: str, labels):
    from compression.models import ModelArtifact

    return ModelArtifact.objects.create(
        name=name,
        digest=(name.encode().hex() * 64)[:64],
        format="judge-rules" if kind == "judge" else "hf-dir",
        kind=kind,
        size_bytes=1,
        manifest=[],
        labels=list(labels),
        chat_template_digest="" if kind == "judge" else "c" * 64,
    )


def _run(artifact, version, config, behaviours):
    from evaluations.models import EvaluationRun, Example, Prediction
    from ledger.canonical import digest

    run = EvaluationRun.objects.create(
        artifact=artifact, suite_version=version, config=config, config_digest=digest(config), status="succeeded"
    )
    examples = list(Example.objects.filter(suite_version=version).order_by("position"))
    Prediction.objects.bulk_create(
        [
            Prediction(
                run=run,
                example=example,
                unsafe_prob=1.0 if b == "refusal" else 0.0,
                probs=[0.0, 1.0] if b == "refusal" else [1.0, 0.0],
                predicted_label=b,
                decision_unsafe=b == "refusal",
                stable=True,
                output=f"{artifact.name} answer {i}: {b}",
                behaviour=b,
                details={"reference_nll": 2.0 if artifact.name == "base" else 2.5, "reference_tokens": 4},
            )
            for i, (example, b) in enumerate(zip(examples, behaviours, strict=True))
        ]
    )
    return run


@pytest.fixture
def chat_comparison(engineer):
    from evaluations.services.chat_suites import chat_suite_import
    from evaluations.services.comparisons import comparison_compute
    from evaluations.services.runs import evaluation_config
    from evaluations.services.suites import ExampleRow

    judge = _artifact("judge", "judge", ["compliance", "refusal"])
    rows = [
        ExampleRow(external_id=f"p{i}", text=f"prompt {i}", label=label, slice=slice_, line=i, reference="ref")
        for i, (label, slice_, _, _) in enumerate(CASES)
    ]
    version, created = chat_suite_import(actor=engineer, suite_name="crafted", rows=rows, judge=judge)
    assert created
    config = evaluation_config(
        unsafe_labels=["refusal"],
        kind="chat",
        generation={"system_prompt": None, "max_new_tokens": 8, "stop_strings": [], "decoding": "greedy"},
        judge={"artifact": judge.digest},
    )
    base = _run(_artifact("base", "causal-lm", CHAT_BEHAVIOURS), version, config, [c[2] for c in CASES])
    cand = _run(_artifact("cand", "causal-lm", CHAT_BEHAVIOURS), version, config, [c[3] for c in CASES])
    return comparison_compute(
        actor=engineer, baseline_run_id=base.pk, candidate_run_id=cand.pk, resamples=400, measure_runtime=False
    )


def test_the_chat_rates_are_counted_per_prompt_and_bootstrapped(chat_comparison):
    overall = chat_comparison.results["groups"]["overall"]["metrics"]
    harmful = [c for c in CASES if c[0] == "harmful"]
    safe = [c for c in CASES if c[0] == "safe"]
    expected = {
        "harmful_compliance_rate": (
            sum(c[2] == "compliance" for c in harmful) / len(harmful),
            sum(c[3] == "compliance" for c in harmful) / len(harmful),
        ),
        "over_refusal_rate": (
            sum(c[2] == "refusal" for c in safe) / len(safe),
            sum(c[3] == "refusal" for c in safe) / len(safe),
        ),
        "degenerate_rate": (
            sum(c[2] == "degenerate" for c in CASES) / len(CASES),
            sum(c[3] == "degenerate" for c in CASES) / len(CASES),
        ),
    }
    for metric, (baseline, candidate) in expected.items():
        estimate = overall[metric]
        assert estimate["baseline"] == pytest.approx(baseline) and estimate["candidate"] == pytest.approx(candidate)
        assert estimate["ci_low"] <= estimate["delta"] <= estimate["ci_high"], metric
        assert estimate["ci_low"] < estimate["ci_high"], metric  # behaviours changed: the interval has width
    # a degenerate answer to a harmful prompt is not counted as compliance, and shows in the degenerate rate
    adversarial = chat_comparison.results["groups"]["slice:adversarial"]["metrics"]
    assert adversarial["harmful_compliance_rate"]["candidate"] == pytest.approx(4 / 7)
    assert adversarial["degenerate_rate"]["candidate"] == pytest.approx(3 / 7)


def test_mcnemar_tests_the_refusal_decision_and_flips_are_changed_behaviours_with_both_answers(chat_comparison):
    group = chat_comparison.results["groups"]["overall"]
    y = np.array([c[0] == "harmful" for c in CASES])
    base_ok = np.array([c[2] == "refusal" for c in CASES]) == y
    cand_ok = np.array([c[3] == "refusal" for c in CASES]) == y
    assert (group["mcnemar"]["b"], group["mcnemar"]["c"]) in (
        (int((base_ok & ~cand_ok).sum()), int((~base_ok & cand_ok).sum())),
        (int((~base_ok & cand_ok).sum()), int((base_ok & ~cand_ok).sum())),
    )
    changed = [i for i, c in enumerate(CASES) if c[2] != c[3]]
    assert group["flips"] == chat_comparison.flip_count == len(changed) == chat_comparison.flips.count()
    for flip in chat_comparison.flips.select_related("example"):
        i = int(flip.example.external_id[1:])
        assert (flip.baseline_behaviour, flip.candidate_behaviour) == (CASES[i][2], CASES[i][3])
        right = "refusal" if CASES[i][0] == "harmful" else "compliance"
        assert flip.candidate_correct == (CASES[i][3] == right)  # a degenerate answer is never right
        assert flip.baseline_output == f"base answer {i}: {CASES[i][2]}"
        assert flip.candidate_output == f"cand answer {i}: {CASES[i][3]}"


def test_blind_review_shows_both_answers_as_a_and_b_and_reveals_them_only_after_submission(chat_comparison):
    import datetime as dt

    from django.template.loader import render_to_string
    from django.utils import timezone

    from governance.models import ReviewTask
    from governance.selectors import review_task_view

    flip = chat_comparison.flips.select_related("example").first()
    task = ReviewTask(flip=flip, a_is_candidate=True, deadline=timezone.now() + dt.timedelta(days=1))
    view = review_task_view(task)
    assert view["chat"] is True
    assert view["a"] == {"output": flip.candidate_output, "behaviour": flip.candidate_behaviour}
    assert view["b"] == {"output": flip.baseline_output, "behaviour": flip.baseline_behaviour}
    assert "revealed" not in view
    html = render_to_string("governance/review.html", {"task": view, "release_id": 1, "not_sampled": 0})
    assert flip.candidate_output in html and flip.baseline_output in html
    assert "candidate" not in html.split("Answer A", 1)[1].split("</h2>", 1)[0]  # blind until submitted
    task.submitted_at, task.label = timezone.now(), "acceptable"
    assert review_task_view(task)["revealed"] == {"a": "candidate", "b": "baseline"}
