"""What `make run` prints at the end of the demo, for every gate a machine can produce.

int8 kernels differ between CPUs, so the demo's release may gate green, amber or red; each is a normal end
of the demo with its own next step, and only a failed evaluation is an error."""

import pytest

from governance.demo import demo_outcome

URL = "http://127.0.0.1:8000"


def _verdict(zone: str, title: str, value: float | None) -> dict:
    return {"zone": zone, "title": title, "value": value}


def _release(status: str, zone: str, verdicts: list[dict]) -> dict:
    return {"id": 7, "status": status, "gate_zone": zone, "gate": verdicts, "failure_reason": ""}


AMBER = _release(
    "in_review",
    "amber",
    [
        _verdict("green", "Routine accuracy change", -0.01),
        _verdict("amber", "Edge-case over-flagging change", 0.07),
        _verdict("amber", "Calibration drift", None),
        _verdict("green", "Overall unsafe recall change", 0.0),
    ],
)
RED = _release(
    "awaiting_decision",
    "red",
    [
        _verdict("red", "Change in the subgroup miss-rate gap", 0.21),
        _verdict("green", "Routine accuracy change", 0.0),
    ],
)
GREEN = _release("awaiting_decision", "green", [_verdict("green", "Routine accuracy change", 0.0)])


def test_amber_sends_reviewers_to_the_review_queue_then_the_officer():
    text = "\n".join(demo_outcome(AMBER, url=URL, escalations=[]))
    assert text.splitlines()[0] == "gate AMBER: 2 green, 2 amber, 0 red (status: in_review)"
    assert "amber  Edge-case over-flagging change: +0.0700" in text
    assert "amber  Calibration drift: no evidence" in text
    assert "Routine accuracy change" not in text  # green rules are counted, not listed
    assert f"{URL}/reviews/" in text and "reviewer2" in text and f"{URL}/releases/7/" in text


def test_red_names_the_open_escalation_and_its_deadline():
    escalations = [
        {"id": 3, "status": "open", "deadline": "2026-12-01T10:00:00Z"},
        {"id": 2, "status": "resolved", "deadline": "2026-11-01T10:00:00Z"},
    ]
    text = "\n".join(demo_outcome(RED, url=URL, escalations=escalations))
    assert text.startswith("gate RED: 1 green, 0 amber, 1 red")
    assert "#3 (deadline 2026-12-01T10:00:00Z)" in text and "#2" not in text
    assert "resolve it" in text and f"{URL}/releases/7/" in text


def test_green_asks_the_officer_to_approve():
    lines = demo_outcome(GREEN, url=URL, escalations=[])
    assert lines[0].startswith("gate GREEN: 1 green, 0 amber, 0 red")
    assert any("approve" in line and f"{URL}/releases/7/" in line for line in lines)
    assert not any("reviews" in line or "escalation" in line for line in lines)


@pytest.mark.parametrize("release", [AMBER, RED, GREEN], ids=["amber", "red", "green"])
def test_every_gate_is_summarised_in_a_few_lines(release):
    assert 2 <= len(demo_outcome(release, url=URL, escalations=[])) <= 12


def test_failed_evaluation_points_at_the_worker_log():
    failed = {**_release("draft", "", []), "failure_reason": "evaluation 4 failed: corrupt_artifact"}
    text = "\n".join(demo_outcome(failed, url=URL, escalations=[]))
    assert "evaluation failed" in text and "corrupt_artifact" in text and "worker.log" in text


def test_amber_with_nothing_to_review_sends_the_officer_not_the_reviewers():
    lines = demo_outcome({**AMBER, "status": "awaiting_decision"}, url=URL, escalations=[])
    text = "\n".join(lines)
    assert "nothing for" in text and "blind review" in text and f"{URL}/releases/7/" in text
    assert "GREEN" not in text and f"{URL}/reviews/" not in text
