"""The metric catalogue: every metric SafeShrink computes, judges or reports, defined once.

Every other metric list is derived from ``CATALOG``: the metrics the paired bootstrap draws and how
(``evaluations.engine.bootstrap``), the metrics a threshold rule may judge
(``governance.services.policies``), the runtime ratios of a comparison
(``evaluations.services.comparisons``), and the titles and directions the dossier and its charts
print (``exports.dossier.format``, ``exports.charts.forest``). Adding a metric means adding one ``MetricSpec`` here
(and its formula where ``scope`` says it is computed); ``tests/evaluations/test_engine_catalog.py``
fails when the engine computes a metric the catalogue lacks, or the reverse.

Pure Python (no numpy, no Django): the web process, the engines and the governance rules import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CATALOG",
    "Bootstrap",
    "Direction",
    "MetricSpec",
    "Needs",
    "RuleUse",
    "Scope",
    "by_name",
    "names",
]


class Direction(StrEnum):
    """Which way is better. NONE: neither (e.g. mean confidence, which calibration judges instead)."""

    HIGHER = "higher"
    LOWER = "lower"
    NONE = "none"


class Bootstrap(StrEnum):
    """How the paired bootstrap draws the metric (the value is the sampler recorded per estimate)."""

    COUNTS = "multinomial-cells"  # a function of cell counts: drawn exactly
    CONTINUOUS = "multinomial-cells+gaussian"  # needs sums of per-example values: cells + Gaussian
    NONE = "none"  # not bootstrapped


class Scope(StrEnum):
    """Where the value is computed."""

    GROUP = "group"  # per group of one model: evaluations.engine.metrics.group_metrics
    COMPARISON = "comparison"  # per group of a comparison of two models (evaluations.services.comparisons)
    RUNTIME = "runtime"  # candidate / baseline runtime figure of a comparison (runtime_ratios)


class Needs(StrEnum):
    """The inputs a group metric needs beyond labels, decisions and probabilities."""

    NOTHING = ""
    CLASSES = "classes"  # true_class and both models' predicted classes
    PERTURBATIONS = "perturbations"  # source_index
    SUBGROUPS = "subgroups"  # subgroup
    BEHAVIOUR = "behaviour"  # chat models: both models' judged behaviour (complied, degenerate)
    REFERENCES = "references"  # chat models: per-example reference NLL and token counts


class RuleUse(StrEnum):
    """Whether a threshold rule may judge the metric."""

    ANY = "any"  # absolute and delta rules
    ABSOLUTE_ONLY = "absolute"  # absolute rules only (runtime ratios have no interval)
    NEVER = "never"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``name`` is its key everywhere (results JSON, rules, bundles).

    ``title`` is the dossier's table title (runtime ratios keep their lower-case names, as the dossier
    has always printed them); ``chart_title`` the forest-plot panel title (None: the
    name); ``unit`` what the value measures; ``runtime_key`` (runtime ratios only) the runtime figure
    the ratio divides.
    """

    name: str
    title: str
    unit: str
    direction: Direction
    bootstrap: Bootstrap = Bootstrap.NONE
    scope: Scope = Scope.GROUP
    needs: Needs = Needs.NOTHING
    rules: RuleUse = RuleUse.ANY
    chart_title: str | None = None
    runtime_key: str | None = None

    @property
    def bootstrapped(self) -> bool:
        return self.bootstrap is not Bootstrap.NONE

    @property
    def higher_is_better(self) -> bool | None:
        """True, False, or None when neither direction is better."""
        return None if self.direction is Direction.NONE else self.direction is Direction.HIGHER


_H, _L, _N = Direction.HIGHER, Direction.LOWER, Direction.NONE
_COUNTS, _CONT = Bootstrap.COUNTS, Bootstrap.CONTINUOUS

# Order matters: it is the order of rules' choices, of the bootstrap's default metrics (those that
# need nothing first, then the others) and of every list derived from it.
CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy", "Accuracy", "proportion", _H, _COUNTS, chart_title="accuracy"),
    MetricSpec("unsafe_recall", "Unsafe recall", "proportion", _H, _COUNTS, chart_title="unsafe recall"),
    MetricSpec("fnr", "False-negative rate", "proportion", _L, _COUNTS),
    MetricSpec("benign_fpr", "Benign FPR", "proportion", _L, _COUNTS, chart_title="benign false-positive rate"),
    MetricSpec("binary_macro_f1", "Binary macro-F1", "proportion", _H, _COUNTS),
    MetricSpec("macro_f1", "Macro-F1", "proportion", _H, _COUNTS, needs=Needs.CLASSES),
    MetricSpec("brier", "Brier score", "squared probability", _L, _CONT),
    MetricSpec("nll", "Negative log-likelihood", "nats per example", _L, _CONT),
    MetricSpec("mean_confidence", "Mean confidence", "probability", _N, _CONT),
    MetricSpec("ece", "Expected calibration error (ECE)", "probability", _L, _CONT),
    MetricSpec("perturbation_accuracy", "Perturbation accuracy", "proportion", _H, _COUNTS, needs=Needs.PERTURBATIONS),
    MetricSpec("consistency", "Consistency", "proportion", _H, _COUNTS, needs=Needs.PERTURBATIONS),
    MetricSpec("fnr_gap", "Subgroup FNR gap", "difference of proportions", _L, _COUNTS, needs=Needs.SUBGROUPS),
    MetricSpec("fpr_gap", "Subgroup FPR gap", "difference of proportions", _L, _COUNTS, needs=Needs.SUBGROUPS),
    # Chat models (evaluations.engine.metrics.behaviour): the decision is "refused", y "harmful prompt".
    MetricSpec(
        "harmful_compliance_rate",
        "Harmful compliance rate",
        "proportion",
        _L,
        _COUNTS,
        needs=Needs.BEHAVIOUR,
        chart_title="harmful prompts answered",
    ),
    MetricSpec(
        "over_refusal_rate",
        "Over-refusal rate",
        "proportion",
        _L,
        _COUNTS,
        needs=Needs.BEHAVIOUR,
        chart_title="safe prompts refused",
    ),
    MetricSpec(
        "degenerate_rate",
        "Degenerate-output rate",
        "proportion",
        _L,
        _COUNTS,
        needs=Needs.BEHAVIOUR,
        chart_title="degenerate answers",
    ),
    # Reported per group; rules judge the candidate / baseline ratio (perplexity_ratio) instead.
    MetricSpec(
        "perplexity",
        "Perplexity (held-out harmless text)",
        "perplexity",
        _L,
        needs=Needs.REFERENCES,
        rules=RuleUse.NEVER,
    ),
    MetricSpec("flip_rate", "Flip rate", "proportion", _L, scope=Scope.COMPARISON, chart_title="flip rate"),
    MetricSpec(
        "decision_instability",
        "Decision instability",
        "proportion",
        _L,
        scope=Scope.COMPARISON,
        chart_title="decision instability",
    ),
    MetricSpec(
        "throughput_ratio",
        "throughput ratio",
        "ratio",
        _H,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="examples_per_second",
    ),
    MetricSpec(
        "tokens_per_second_ratio",
        "generation tokens/s ratio",
        "ratio",
        _H,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="tokens_per_second",  # chat models only: generated tokens per second
    ),
    MetricSpec(
        "example_latency_p95_ratio",
        "example latency p95 ratio",
        "ratio",
        _L,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="example_latency_p95_s",
    ),
    MetricSpec(
        "perplexity_ratio",
        "perplexity ratio",
        "ratio",
        _L,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="perplexity",  # the run's overall perplexity, kept beside its runtime figures
    ),
    MetricSpec(
        "size_ratio",
        "size ratio",
        "ratio",
        _L,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="size_bytes",
    ),
    MetricSpec(
        "peak_memory_ratio",
        "peak memory ratio",
        "ratio",
        _L,
        scope=Scope.RUNTIME,
        rules=RuleUse.ABSOLUTE_ONLY,
        runtime_key="peak_rss_bytes",
    ),
)

_BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOG}
if len(_BY_NAME) != len(CATALOG):  # pragma: no cover - a duplicate name is a programming error
    raise ValueError("duplicate metric name in CATALOG")


def by_name(name: str) -> MetricSpec | None:
    """The spec of ``name``, or None when the catalogue has no such metric."""
    return _BY_NAME.get(name)


def names(
    *,
    scope: Scope | None = None,
    bootstrapped: bool | None = None,
    bootstrap: Bootstrap | None = None,
    rules: RuleUse | None = None,
    direction: Direction | None = None,
) -> tuple[str, ...]:
    """Names of the metrics matching every given filter, in catalogue order."""
    return tuple(
        spec.name
        for spec in CATALOG
        if (scope is None or spec.scope is scope)
        and (bootstrapped is None or spec.bootstrapped is bootstrapped)
        and (bootstrap is None or spec.bootstrap is bootstrap)
        and (rules is None or spec.rules is rules)
        and (direction is None or spec.direction is direction)
    )
