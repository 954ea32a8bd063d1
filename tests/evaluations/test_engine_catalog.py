"""The metric catalogue (evaluations.engine.catalog) cannot drift from what is computed: every metric the
engine computes has an entry, every entry is computed where its scope says, and every other metric list
(bootstrap, rules, runtime ratios, dossier, charts) is the catalogue's."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from evaluations.engine import catalog
from evaluations.engine.bootstrap import ALL_METRICS, BASE_METRICS, CONTINUOUS_METRICS, COUNT_METRICS, paired_bootstrap
from evaluations.engine.catalog import CATALOG, Bootstrap, Direction, RuleUse, Scope
from evaluations.engine.metrics import COUNT_KEYS, group_metrics
from tests.evaluations.test_engine_bootstrap import everything, synthetic


def _all_inputs(n: int = 300) -> tuple[dict, dict]:
    data = synthetic(n, seed=7)
    return data, everything(data)


def test_every_group_metric_the_engine_computes_is_catalogued_and_the_reverse() -> None:
    data, _ = _all_inputs()
    base = data["base"]
    computed = group_metrics(
        data["y"],
        base.decision,
        base.unsafe_prob,
        true_class=data["true_class"],
        predicted_class=base.predicted_class,
        source_index=data["source_index"],
        subgroup=data["subgroup"],
        min_subgroup_n=5,
        complied=base.complied,
        degenerate=base.degenerate,
        reference_nll=np.full(len(data["y"]), 2.0),
        reference_tokens=np.full(len(data["y"]), 4),
    )
    assert set(computed) - COUNT_KEYS == set(catalog.names(scope=Scope.GROUP))
    assert not COUNT_KEYS & {spec.name for spec in CATALOG}


def test_every_bootstrapped_metric_is_drawn_and_the_reverse() -> None:
    data, inputs = _all_inputs()
    result = paired_bootstrap(data["y"], data["base"], data["cand"], resamples=20, min_subgroup_n=5, **inputs)
    assert result.metrics == ALL_METRICS
    assert set(ALL_METRICS) == set(catalog.names(bootstrapped=True))
    assert set(BASE_METRICS) == {s.name for s in CATALOG if s.bootstrapped and s.needs is catalog.Needs.NOTHING}
    for estimate in result.estimates:
        assert estimate.sampler == catalog.by_name(estimate.metric).bootstrap.value, estimate.metric
    assert set(ALL_METRICS) == COUNT_METRICS | CONTINUOUS_METRICS and not COUNT_METRICS & CONTINUOUS_METRICS
    # Only per-group metrics of one model can be bootstrapped.
    assert all(spec.scope is Scope.GROUP for spec in CATALOG if spec.bootstrapped)


def test_runtime_ratios_are_the_catalogues() -> None:
    from evaluations.services.comparisons import RUNTIME_RATIOS, runtime_ratios

    figures = runtime_ratios({"examples_per_second": 2.0}, {"examples_per_second": 1.0})
    computed = set(figures) - {"baseline", "candidate"}
    assert computed == set(RUNTIME_RATIOS) == set(catalog.names(scope=Scope.RUNTIME))
    for spec in CATALOG:
        assert (spec.runtime_key is not None) == (spec.scope is Scope.RUNTIME), spec.name
        assert (spec.rules is RuleUse.ABSOLUTE_ONLY) == (spec.scope is Scope.RUNTIME), spec.name


def test_comparison_metrics_are_the_flip_rate_and_the_decision_instability() -> None:
    """A comparison-scope metric has its formula in governance (rules) and exports (dossier): flips / n, and
    the candidate's unstable share (or its change). A new one needs both; this test names the ones there are."""
    assert catalog.names(scope=Scope.COMPARISON) == ("flip_rate", "decision_instability")


def test_rules_may_judge_exactly_the_catalogued_metrics() -> None:
    from governance.services import policies

    assert catalog.names(rules=RuleUse.ANY) == policies.METRICS
    assert catalog.names(rules=RuleUse.ABSOLUTE_ONLY) == policies.RUNTIME_METRICS


def test_reports_take_titles_and_directions_from_the_catalogue() -> None:
    from exports.charts import forest
    from exports.dossier import format as report_format

    for spec in CATALOG:
        assert report_format.METRIC_NAMES[spec.name] == spec.title
        assert (spec.name in report_format.LOWER_IS_BETTER) == (spec.direction is Direction.LOWER)
        assert forest.HIGHER_IS_BETTER.get(spec.name) == spec.higher_is_better
        assert forest.METRIC_TITLES.get(spec.name, spec.name) == (spec.chart_title or spec.name)
    # The presentation orders name only catalogued metrics.
    catalogued = {spec.name for spec in CATALOG}
    assert set(report_format.COMPARED_METRICS + report_format.OTHER_METRIC_ORDER + forest.METRIC_ORDER) <= catalogued


def test_specs_are_frozen_and_names_unique() -> None:
    spec = CATALOG[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    assert len({s.name for s in CATALOG}) == len(CATALOG)
    assert catalog.by_name("no_such_metric") is None
    assert catalog.names(bootstrap=Bootstrap.NONE) == tuple(s.name for s in CATALOG if not s.bootstrapped)
    assert np.all([isinstance(s.title, str) and s.title and s.unit for s in CATALOG])


def test_metric_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import evaluations.engine.metrics, evaluations.engine.bootstrap, evaluations.engine.catalog, "
        "evaluations.engine.tabular, evaluations.engine.perturb; "
        "print('torch' in sys.modules, 'transformers' in sys.modules, 'django' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False False"
