"""Publishing taxonomies and threshold policies, and judging evidence against a policy."""

from dataclasses import asdict, dataclass

from django.db import transaction

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from governance.models import (
    FailureMode, JudgedBound, RiskTaxonomy, RuleKind, ThresholdPolicy, ThresholdRule, Zone,
)
from ledger.canonical import digest
from ledger.services import ledger_append

# Metrics a rule may judge: every comparison metric, the flip rate, and runtime ratios (candidate /
# baseline, absolute rules only).
METRICS = (
    "accuracy", "unsafe_recall", "fnr", "benign_fpr", "binary_macro_f1", "macro_f1", "brier", "nll",
    "mean_confidence", "ece", "perturbation_accuracy", "consistency", "fnr_gap", "fpr_gap", "flip_rate",
)
RUNTIME_METRICS = ("throughput_ratio", "example_latency_p95_ratio", "size_ratio", "peak_memory_ratio")


def _require_policy_author(actor) -> None:
    if actor is not None and actor.role not in (Role.OFFICER, Role.ADMIN):
        raise PermissionDenied("Only officers publish taxonomies and policies.")


def taxonomy_publish(*, actor, name: str, description: str = "", failure_modes: list[dict]) -> RiskTaxonomy:
    """Publish the next version of a taxonomy (earlier versions stay as they were)."""
    _require_policy_author(actor)
    with transaction.atomic():
        latest = RiskTaxonomy.objects.select_for_update().filter(name=name).order_by("-version").first()
        taxonomy = RiskTaxonomy.objects.create(
            name=name, version=(latest.version + 1) if latest else 1, description=description, created_by=actor
        )
        FailureMode.objects.bulk_create([FailureMode(taxonomy=taxonomy, **mode) for mode in failure_modes])
        ledger_append(
            actor=actor, action="taxonomy.published", object_type="taxonomy", object_id=taxonomy.pk,
            payload={"name": name, "version": taxonomy.version, "failure_modes_digest": digest(failure_modes)},
        )
    return taxonomy


def _validate_rule(index: int, rule: dict) -> None:
    where = f"rules[{index}]"
    if rule.get("metric") not in METRICS + RUNTIME_METRICS:
        raise ValidationFailed(f"{where}: unknown metric.",
                               details={f"{where}.metric": [f"One of {list(METRICS + RUNTIME_METRICS)}."]})
    if rule["metric"] in RUNTIME_METRICS and rule.get("kind") != "absolute":
        raise ValidationFailed(f"{where}: runtime ratios are judged as absolute values.",
                               details={f"{where}.kind": ["Must be 'absolute' for a runtime ratio."]})
    if rule.get("kind") not in RuleKind.values:
        raise ValidationFailed(f"{where}: unknown kind.", details={f"{where}.kind": [f"One of {RuleKind.values}."]})
    if rule.get("bound") not in JudgedBound.values:
        raise ValidationFailed(f"{where}: unknown bound.", details={f"{where}.bound": [f"One of {JudgedBound.values}."]})
    green, red = rule.get("green_limit"), rule.get("red_limit")
    if rule.get("higher_is_better") and green < red or not rule.get("higher_is_better") and green > red:
        raise ValidationFailed(f"{where}: the green limit must be on the better side of the red limit.",
                               details={f"{where}.green_limit": ["Must be on the better side of red_limit."]})


def threshold_policy_publish(
    *, actor, name: str, rules: list[dict], taxonomy: RiskTaxonomy | None = None, description: str = ""
) -> ThresholdPolicy:
    _require_policy_author(actor)
    if not rules:
        raise ValidationFailed("A policy needs at least one rule.", details={"rules": ["May not be empty."]})
    for index, rule in enumerate(rules):
        _validate_rule(index, rule)
    with transaction.atomic():
        latest = ThresholdPolicy.objects.select_for_update().filter(name=name).order_by("-version").first()
        policy = ThresholdPolicy.objects.create(
            name=name, version=(latest.version + 1) if latest else 1, taxonomy=taxonomy, description=description,
            created_by=actor,
        )
        ThresholdRule.objects.bulk_create([ThresholdRule(policy=policy, **rule) for rule in rules])
        ledger_append(
            actor=actor, action="policy.published", object_type="policy", object_id=policy.pk,
            payload={"name": name, "version": policy.version, "rules_digest": digest(rules)},
        )
    return policy


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    title: str
    metric: str
    group: str
    kind: str
    bound: str
    value: float | None
    green_limit: float
    red_limit: float
    higher_is_better: bool
    zone: str
    reason: str


def _judged_value(rule: ThresholdRule, group: dict) -> float | None:
    if rule.metric in RUNTIME_METRICS:
        return group.get(rule.metric)
    if rule.metric == "flip_rate":
        return group["flips"] / group["n"] if group["n"] else None
    metric = group["metrics"].get(rule.metric) or {}
    if rule.kind == RuleKind.ABSOLUTE:
        return metric.get("candidate")
    return metric.get("delta" if rule.bound == JudgedBound.POINT else rule.bound)


def zone_of(value: float, *, green_limit: float, red_limit: float, higher_is_better: bool) -> str:
    if higher_is_better:
        return Zone.GREEN if value >= green_limit else Zone.RED if value < red_limit else Zone.AMBER
    return Zone.GREEN if value <= green_limit else Zone.RED if value > red_limit else Zone.AMBER


def policy_judge(policy: ThresholdPolicy, results: dict) -> tuple[str, list[RuleVerdict]]:
    """Each rule's zone, and the gate: red if any rule is red, amber if any is amber, else green.
    A rule without evidence (no such slice, undefined metric) is amber: someone must look."""
    verdicts = []
    for rule in policy.rules.all():
        group = results.get("runtime") if rule.metric in RUNTIME_METRICS else results["groups"].get(rule.group)
        value = _judged_value(rule, group) if group else None
        if value is None:
            zone, reason = Zone.AMBER, f"no evidence for {rule.metric} on {rule.group}"
        else:
            zone = zone_of(value, green_limit=rule.green_limit, red_limit=rule.red_limit,
                           higher_is_better=rule.higher_is_better)
            reason = ""
        verdicts.append(RuleVerdict(
            rule=rule.code, title=rule.title, metric=rule.metric, group=rule.group, kind=rule.kind,
            bound=rule.bound, value=value, green_limit=rule.green_limit, red_limit=rule.red_limit,
            higher_is_better=rule.higher_is_better, zone=zone, reason=reason,
        ))
    zones = {v.zone for v in verdicts}
    gate = Zone.RED if Zone.RED in zones else Zone.AMBER if Zone.AMBER in zones else Zone.GREEN
    return gate, verdicts


def verdicts_as_json(verdicts: list[RuleVerdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
