"""The pure gate (governance.gate), table-driven at every boundary: a value equal to a limit, just inside and
just outside it, missing evidence, each direction, each rule kind and judged bound, runtime ratios and the
flip rate. No database: the gate takes frozen specs and a comparison's results."""

import pytest

from governance.gate import (
    AMBER,
    GREEN,
    RED,
    GateResult,
    RuleSpec,
    RuleVerdict,
    judge,
    judged_value,
    verdicts_as_json,
    zone_of,
)
from governance.models import JudgedBound, RuleKind, Zone
from ledger.canonical import digest

EPS = 1e-9


def _rule(**overrides) -> RuleSpec:
    spec = {
        "code": "r",
        "title": "Rule",
        "metric": "accuracy",
        "group": "overall",
        "kind": "delta",
        "bound": "ci_low",
        "green_limit": -0.01,
        "red_limit": -0.05,
        "higher_is_better": True,
    }
    return RuleSpec(**{**spec, **overrides})


def _results(
    metrics: dict | None = None, *, group: str = "overall", n: int = 100, flips: int = 0, runtime: dict | None = None
) -> dict:
    results = {"groups": {group: {"n": n, "flips": flips, "metrics": metrics or {}}}}
    if runtime is not None:
        results["runtime"] = runtime
    return results


def test_the_gate_speaks_the_models_vocabulary():
    """The pure module's strings are the model's choices (the gate JSON stores them)."""
    assert (GREEN, AMBER, RED) == (Zone.GREEN, Zone.AMBER, Zone.RED)
    assert RuleKind.ABSOLUTE == "absolute" and JudgedBound.POINT == "point"
    assert set(JudgedBound.values) == {"ci_low", "ci_high", "point"}


@pytest.mark.parametrize(
    ("value", "higher_is_better", "zone"),
    [
        # higher is better: green at or above green, red strictly below red, amber between (both limits inclusive)
        (0.90, True, GREEN),
        (0.90 + EPS, True, GREEN),
        (0.90 - EPS, True, AMBER),
        (0.80, True, AMBER),
        (0.80 - EPS, True, RED),
        (0.85, True, AMBER),
        (1.0, True, GREEN),
        (0.0, True, RED),
    ],
)
def test_zone_of_higher_is_better(value, higher_is_better, zone):
    assert zone_of(value, green_limit=0.90, red_limit=0.80, higher_is_better=higher_is_better) == zone


@pytest.mark.parametrize(
    ("value", "zone"),
    [
        # lower is better: green at or below green, red strictly above red, amber between
        (0.05, GREEN),
        (0.05 - EPS, GREEN),
        (0.05 + EPS, AMBER),
        (0.10, AMBER),
        (0.10 + EPS, RED),
        (0.07, AMBER),
        (0.0, GREEN),
        (1.0, RED),
    ],
)
def test_zone_of_lower_is_better(value, zone):
    assert zone_of(value, green_limit=0.05, red_limit=0.10, higher_is_better=False) == zone


@pytest.mark.parametrize(
    ("higher_is_better", "value", "zone"),
    [
        # green limit equal to the red limit: no amber band; the shared limit itself is green
        (True, 0.5, GREEN),
        (True, 0.5 - EPS, RED),
        (False, 0.5, GREEN),
        (False, 0.5 + EPS, RED),
    ],
)
def test_zone_of_without_an_amber_band(higher_is_better, value, zone):
    assert zone_of(value, green_limit=0.5, red_limit=0.5, higher_is_better=higher_is_better) == zone


METRIC = {"baseline": 0.9, "candidate": 0.88, "delta": -0.02, "ci_low": -0.04, "ci_high": 0.01}


@pytest.mark.parametrize(
    ("kind", "bound", "expected"),
    [
        ("absolute", "point", 0.88),
        ("absolute", "ci_low", 0.88),
        ("absolute", "ci_high", 0.88),  # the candidate
        ("delta", "point", -0.02),
        ("delta", "ci_low", -0.04),
        ("delta", "ci_high", 0.01),
    ],
)
def test_each_kind_and_bound_judges_its_own_number(kind, bound, expected):
    rule = _rule(kind=kind, bound=bound)
    assert judged_value(rule, _results({"accuracy": METRIC})["groups"]["overall"]) == expected


@pytest.mark.parametrize(("flips", "n", "expected"), [(0, 100, 0.0), (3, 100, 0.03), (100, 100, 1.0), (0, 0, None)])
def test_flip_rate_is_flips_over_n(flips, n, expected):
    rule = _rule(metric="flip_rate", kind="absolute", bound="point")
    assert judged_value(rule, _results(n=n, flips=flips)["groups"]["overall"]) == expected


@pytest.mark.parametrize(
    ("results", "rule", "reason"),
    [
        (_results(group="slice:edge"), _rule(), "no evidence for accuracy on overall"),  # no such group
        (_results({"ece": METRIC}), _rule(), "no evidence for accuracy on overall"),  # no such metric
        (
            _results({"accuracy": {**METRIC, "ci_low": None}}),
            _rule(),
            "no evidence for accuracy on overall",
        ),  # undefined
        (_results({"accuracy": {"candidate": None}}), _rule(kind="absolute"), "no evidence for accuracy on overall"),
        (_results(n=0), _rule(metric="flip_rate", kind="absolute"), "no evidence for flip_rate on overall"),
        (
            _results(),
            _rule(metric="size_ratio", kind="absolute", runtime=True),
            "no evidence for size_ratio on overall",
        ),
        (
            _results(runtime={}),
            _rule(metric="size_ratio", kind="absolute", runtime=True),
            "no evidence for size_ratio on overall",
        ),
        (
            _results(runtime={"size_ratio": None, "peak_memory_ratio": 1.0}),
            _rule(metric="size_ratio", kind="absolute", runtime=True),
            "no evidence for size_ratio on overall",
        ),
    ],
)
def test_missing_evidence_is_amber_with_a_reason(results, rule, reason):
    result = judge([rule], results)
    (verdict,) = result.verdicts
    assert (result.zone, verdict.zone, verdict.value, verdict.reason) == (AMBER, AMBER, None, reason)


@pytest.mark.parametrize(("value", "zone"), [(1.5, GREEN), (1.5 + EPS, AMBER), (2.0, AMBER), (2.0 + EPS, RED)])
def test_runtime_ratios_are_read_from_the_runtime_block_whatever_the_group(value, zone):
    rule = _rule(
        metric="example_latency_p95_ratio",
        kind="absolute",
        bound="point",
        green_limit=1.5,
        red_limit=2.0,
        higher_is_better=False,
        runtime=True,
        group="no-such-group",
    )
    result = judge([rule], _results(runtime={"example_latency_p95_ratio": value}))
    assert (result.zone, result.verdicts[0].value) == (zone, value)


@pytest.mark.parametrize(
    ("zones", "gate"),
    [
        ((), GREEN),
        ((GREEN,), GREEN),
        ((GREEN, GREEN), GREEN),
        ((GREEN, AMBER), AMBER),
        ((AMBER, AMBER), AMBER),
        ((GREEN, RED), RED),
        ((AMBER, RED), RED),
        ((RED, AMBER, GREEN), RED),
    ],
)
def test_the_gate_is_the_worst_rule(zones, gate):
    values = {GREEN: 1.0, AMBER: 0.85, RED: 0.0}
    rules = [
        _rule(code=f"r{i}", metric=f"m{i}", kind="absolute", green_limit=0.9, red_limit=0.8) for i in range(len(zones))
    ]
    results = _results({f"m{i}": {"candidate": values[z]} for i, z in enumerate(zones)})
    result = judge(rules, results)
    assert [v.zone for v in result.verdicts] == list(zones)
    assert result.zone == gate


def test_missing_evidence_never_hides_a_red():
    rules = [_rule(code="missing", metric="nll"), _rule(code="red", kind="absolute", green_limit=0.9, red_limit=0.8)]
    assert judge(rules, _results({"accuracy": {"candidate": 0.1}})).zone == RED


def test_verdict_json_keys_order_and_digest_are_pinned():
    """The stored gate (and its ledger digest) must not change with the refactoring: the same keys, in the
    same order, with plain strings and the rule's own limits."""
    rule = _rule(code="routine-accuracy", title="Routine accuracy change", group="slice:routine")
    result = judge([rule], _results({"accuracy": METRIC}, group="slice:routine"))
    assert isinstance(result, GateResult) and isinstance(result.verdicts[0], RuleVerdict)
    gate = result.as_json()
    assert (
        gate
        == verdicts_as_json(result.verdicts)
        == [
            {
                "rule": "routine-accuracy",
                "title": "Routine accuracy change",
                "metric": "accuracy",
                "group": "slice:routine",
                "kind": "delta",
                "bound": "ci_low",
                "value": -0.04,
                "green_limit": -0.01,
                "red_limit": -0.05,
                "higher_is_better": True,
                "zone": "amber",
                "reason": "",
            }
        ]
    )
    assert list(gate[0]) == [
        "rule",
        "title",
        "metric",
        "group",
        "kind",
        "bound",
        "value",
        "green_limit",
        "red_limit",
        "higher_is_better",
        "zone",
        "reason",
    ]
    # Pinned from the ORM-row implementation before governance.gate existed (same rule, same results).
    assert digest(gate) == "81ab833a7f7e8563c39aefb735b17503ff2cdad60ee2f7a9ae9f9cc353e1d3a7"


def test_specs_are_frozen():
    rule = _rule()
    with pytest.raises(AttributeError):
        rule.green_limit = 0.0  # type: ignore[misc]


def test_the_gate_and_the_agreement_maths_are_pure():
    """No Django, no ORM, no app code: only the standard library."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "governance"
    for name in ("gate.py", "agreement.py"):
        tree = ast.parse((root / name).read_text())
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert modules <= {"dataclasses", "collections", "collections.abc", "math"}, (name, modules)


def _flip_results(*, flips: int, stable_flips: int | None, instability: dict | None = None) -> dict:
    group = {"n": 100, "flips": flips, "stable_flips": stable_flips, "metrics": {}, "instability": instability}
    return {"groups": {"overall": group}}


FLIP_RULE = {
    "metric": "flip_rate",
    "kind": "absolute",
    "bound": "point",
    "green_limit": 0.05,
    "red_limit": 0.15,
    "higher_is_better": False,
}


@pytest.mark.parametrize(
    ("basis", "stable_flips", "value", "zone", "said"),
    [
        ("stable", 4, 0.04, GREEN, "stable"),  # 20 flips, of which 4 hold when the batches are recomposed
        ("all", 4, 0.20, RED, "all"),
        ("stable", None, 0.20, RED, "all (no stability pass)"),  # no stability pass: every flip counts
    ],
)
def test_flip_rate_counts_the_policys_flips_and_says_which(basis, stable_flips, value, zone, said):
    result = judge([_rule(**FLIP_RULE, flip_basis=basis)], _flip_results(flips=20, stable_flips=stable_flips))
    verdict = result.as_json()[0]
    assert verdict["value"] == pytest.approx(value) and verdict["zone"] == zone and verdict["flip_basis"] == said
    assert list(verdict)[-1] == "flip_basis"  # only flip-rate verdicts carry it (see the pinned test above)


@pytest.mark.parametrize(
    ("kind", "bound", "instability", "expected", "zone"),
    [
        ("absolute", "point", {"baseline": 0.0, "candidate": 0.004}, 0.004, GREEN),
        ("absolute", "point", {"baseline": 0.0, "candidate": 0.03}, 0.03, RED),
        ("delta", "point", {"baseline": 0.001, "candidate": 0.011}, 0.01, AMBER),
        ("delta", "ci_high", {"baseline": 0.0, "candidate": 0.01}, None, AMBER),  # no interval: no evidence
        ("absolute", "point", None, None, AMBER),  # no stability pass: no evidence
    ],
)
def test_decision_instability_judges_the_candidates_unstable_share(kind, bound, instability, expected, zone):
    rule = _rule(
        metric="decision_instability", kind=kind, bound=bound, green_limit=0.005, red_limit=0.02, higher_is_better=False
    )
    verdict = judge([rule], _flip_results(flips=0, stable_flips=0, instability=instability)).verdicts[0]
    assert verdict.zone == zone
    assert verdict.value == pytest.approx(expected) if expected is not None else verdict.value is None
    assert "flip_basis" not in verdicts_as_json([verdict])[0]
