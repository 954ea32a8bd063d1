"""Publishing taxonomies and threshold policies, and judging evidence against a policy."""

from django.db import transaction

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from evaluations.engine import catalog as metric_catalog
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.services.profiles import required_profile_problems
from governance.gate import RuleSpec, RuleVerdict, judge
from governance.models import (
    FailureMode,
    FlipBasis,
    JudgedBound,
    RiskTaxonomy,
    RuleKind,
    ThresholdPolicy,
    ThresholdRule,
)
from ledger.canonical import digest
from ledger.services import ledger_append

# Metrics a rule may judge (from the metric catalogue): every comparison metric, the flip rate, and
# runtime ratios (candidate / baseline, absolute rules only).
METRICS = metric_catalog.names(rules=metric_catalog.RuleUse.ANY)
RUNTIME_METRICS = metric_catalog.names(rules=metric_catalog.RuleUse.ABSOLUTE_ONLY)


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
            actor=actor,
            action="taxonomy.published",
            object_type="taxonomy",
            object_id=taxonomy.pk,
            payload={"name": name, "version": taxonomy.version, "failure_modes_digest": digest(failure_modes)},
        )
    return taxonomy


def _validate_rule(index: int, rule: dict) -> None:
    where = f"rules[{index}]"
    if rule.get("metric") not in METRICS + RUNTIME_METRICS:
        raise ValidationFailed(
            f"{where}: unknown metric.", details={f"{where}.metric": [f"One of {list(METRICS + RUNTIME_METRICS)}."]}
        )
    if rule["metric"] in RUNTIME_METRICS and rule.get("kind") != "absolute":
        raise ValidationFailed(
            f"{where}: runtime ratios are judged as absolute values.",
            details={f"{where}.kind": ["Must be 'absolute' for a runtime ratio."]},
        )
    if rule.get("kind") not in RuleKind.values:
        raise ValidationFailed(f"{where}: unknown kind.", details={f"{where}.kind": [f"One of {RuleKind.values}."]})
    if rule.get("bound") not in JudgedBound.values:
        raise ValidationFailed(
            f"{where}: unknown bound.", details={f"{where}.bound": [f"One of {JudgedBound.values}."]}
        )
    green, red = rule["green_limit"], rule["red_limit"]
    if rule.get("higher_is_better") and green < red or not rule.get("higher_is_better") and green > red:
        raise ValidationFailed(
            f"{where}: the green limit must be on the better side of the red limit.",
            details={f"{where}.green_limit": ["Must be on the better side of red_limit."]},
        )


def threshold_policy_publish(
    *,
    actor,
    name: str,
    rules: list[dict],
    taxonomy: RiskTaxonomy | None = None,
    description: str = "",
    flip_basis: str = FlipBasis.STABLE,
    required_profile: dict | None = None,
    reviewers_see_expected_label: bool = False,
    forbid_training_data_overlap: bool = False,
) -> ThresholdPolicy:
    """Publish the next version of a policy: its rules, which flips its gate counts (``flip_basis``), the
    deployment-profile fields every evaluation under it must use (``required_profile``) and whether blind
    reviewers of its releases see the expected label (``reviewers_see_expected_label``; off unless given: like
    every field, it is stated for each version, not inherited from the previous one). With
    ``forbid_training_data_overlap`` a release evaluated on its run's training or calibration data is refused
    rather than warned about."""
    _require_policy_author(actor)
    if not rules:
        raise ValidationFailed("A policy needs at least one rule.", details={"rules": ["May not be empty."]})
    if flip_basis not in FlipBasis.values:
        raise ValidationFailed("Unknown flip basis.", details={"flip_basis": [f"One of {FlipBasis.values}."]})
    if not isinstance(reviewers_see_expected_label, bool):
        raise ValidationFailed(
            "reviewers_see_expected_label must be true or false.",
            details={"reviewers_see_expected_label": ["Must be a boolean."]},
        )
    if not isinstance(forbid_training_data_overlap, bool):
        raise ValidationFailed(
            "forbid_training_data_overlap must be true or false.",
            details={"forbid_training_data_overlap": ["Must be a boolean."]},
        )
    required_profile = {} if required_profile is None else required_profile
    problems = required_profile_problems(required_profile)
    if problems:
        raise ValidationFailed(
            "The required deployment profile is invalid.",
            code=EvaluationsErrorCode.INVALID_PROFILE,
            details={f"required_{key}" if key.startswith("profile") else key: v for key, v in problems.items()},
        )
    for index, rule in enumerate(rules):
        _validate_rule(index, rule)
    with transaction.atomic():
        latest = ThresholdPolicy.objects.select_for_update().filter(name=name).order_by("-version").first()
        policy = ThresholdPolicy.objects.create(
            name=name,
            version=(latest.version + 1) if latest else 1,
            taxonomy=taxonomy,
            description=description,
            flip_basis=flip_basis,
            required_profile=required_profile,
            reviewers_see_expected_label=reviewers_see_expected_label,
            forbid_training_data_overlap=forbid_training_data_overlap,
            created_by=actor,
        )
        ThresholdRule.objects.bulk_create([ThresholdRule(policy=policy, **rule) for rule in rules])
        ledger_append(
            actor=actor,
            action="policy.published",
            object_type="policy",
            object_id=policy.pk,
            payload={
                "name": name,
                "version": policy.version,
                "rules_digest": digest(rules),
                "flip_basis": flip_basis,
                "required_profile": required_profile,
                "reviewers_see_expected_label": reviewers_see_expected_label,
                "forbid_training_data_overlap": forbid_training_data_overlap,
            },
        )
    return policy


def rule_spec(rule: ThresholdRule) -> RuleSpec:
    """A ThresholdRule row as the gate's frozen spec."""
    return RuleSpec(
        code=rule.code,
        title=rule.title,
        metric=rule.metric,
        group=rule.group,
        kind=rule.kind,
        bound=rule.bound,
        green_limit=rule.green_limit,
        red_limit=rule.red_limit,
        higher_is_better=rule.higher_is_better,
        runtime=rule.metric in RUNTIME_METRICS,
        flip_basis=rule.policy.flip_basis,
    )


def policy_judge(policy: ThresholdPolicy, results: dict) -> tuple[str, list[RuleVerdict]]:
    """Judge the evidence against the policy's rules (governance.gate.judge): the gate zone and each verdict."""
    result = judge([rule_spec(rule) for rule in policy.rules.all()], results)
    return result.zone, list(result.verdicts)
