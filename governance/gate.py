"""The release gate, as pure functions: frozen rule specs and a comparison's results in, a gate result out.

No ORM and no Django: `governance.services.policies` turns ThresholdRule rows into `RuleSpec`s (and decides
which metrics are runtime ratios), calls `judge`, and stores `GateResult.as_json()` on the release. The JSON of
a verdict (its keys, their order, the zone strings) is what the ledger digests: keep `RuleVerdict` as it is.
"""

from dataclasses import asdict, dataclass

GREEN, AMBER, RED = "green", "amber", "red"
ABSOLUTE = "absolute"  # RuleKind.ABSOLUTE: the candidate's value; otherwise the change against the baseline
POINT = "point"  # JudgedBound.POINT: the point estimate; otherwise the interval bound of that name
FLIP_RATE = "flip_rate"  # derived from a group's flips and n, not read from its metrics
INSTABILITY = "decision_instability"  # derived from a group's stability shares (the candidate's, or its change)
STABLE, ALL = "stable", "all"  # which flips count (ThresholdPolicy.flip_basis)
NO_STABILITY_PASS = "all (no stability pass)"  # asked for stable flips, but the runs had no stability pass


@dataclass(frozen=True)
class RuleSpec:
    """One threshold rule. `runtime`: the metric is a runtime ratio, read from results["runtime"]."""

    code: str
    title: str
    metric: str
    group: str
    kind: str
    bound: str
    green_limit: float
    red_limit: float
    higher_is_better: bool
    runtime: bool = False
    flip_basis: str = STABLE


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
    flip_basis: str | None = None  # flip-rate rules: which flips were counted (STABLE, ALL or NO_STABILITY_PASS)


@dataclass(frozen=True)
class GateResult:
    zone: str
    verdicts: tuple[RuleVerdict, ...]

    def as_json(self) -> list[dict]:
        return verdicts_as_json(self.verdicts)


def zone_of(value: float, *, green_limit: float, red_limit: float, higher_is_better: bool) -> str:
    """Green at or beyond the green limit, red strictly beyond the red limit, amber between."""
    if higher_is_better:
        return GREEN if value >= green_limit else RED if value < red_limit else AMBER
    return GREEN if value <= green_limit else RED if value > red_limit else AMBER


def flip_basis_used(rule: RuleSpec, group: dict | None) -> str | None:
    """For a flip-rate rule, the flips it counts: stable ones when the policy says so and the runs had a
    stability pass, else every flip of the main pass."""
    if rule.metric != FLIP_RATE:
        return None
    if rule.flip_basis == STABLE:
        return STABLE if group is not None and group.get("stable_flips") is not None else NO_STABILITY_PASS
    return ALL


def judged_value(rule: RuleSpec, group: dict) -> float | None:
    """The number a rule judges in its group's results, or None when there is none."""
    if rule.runtime:
        return group.get(rule.metric)
    if rule.metric == FLIP_RATE:
        flips = group["stable_flips"] if flip_basis_used(rule, group) == STABLE else group["flips"]
        return flips / group["n"] if group["n"] else None
    if rule.metric == INSTABILITY:
        shares = group.get("instability") or {}
        candidate, baseline = shares.get("candidate"), shares.get("baseline")
        if rule.kind == ABSOLUTE:
            return candidate
        if rule.bound != POINT or candidate is None or baseline is None:
            return None
        return candidate - baseline
    metric = group["metrics"].get(rule.metric) or {}
    if rule.kind == ABSOLUTE:
        return metric.get("candidate")
    return metric.get("delta" if rule.bound == POINT else rule.bound)


def judge(rules: list[RuleSpec] | tuple[RuleSpec, ...], results: dict) -> GateResult:
    """Each rule's zone, and the gate: red if any rule is red, amber if any is amber, else green.
    A rule without evidence (no such slice, undefined metric) is amber: someone must look."""
    verdicts = []
    for rule in rules:
        group = results.get("runtime") if rule.runtime else results["groups"].get(rule.group)
        value = judged_value(rule, group) if group else None
        if value is None:
            zone, reason = AMBER, f"no evidence for {rule.metric} on {rule.group}"
        else:
            zone = zone_of(
                value, green_limit=rule.green_limit, red_limit=rule.red_limit, higher_is_better=rule.higher_is_better
            )
            reason = ""
        verdicts.append(
            RuleVerdict(
                rule=rule.code,
                title=rule.title,
                metric=rule.metric,
                group=rule.group,
                kind=rule.kind,
                bound=rule.bound,
                value=value,
                green_limit=rule.green_limit,
                red_limit=rule.red_limit,
                higher_is_better=rule.higher_is_better,
                zone=zone,
                reason=reason,
                flip_basis=flip_basis_used(rule, group),
            )
        )
    zones = {v.zone for v in verdicts}
    gate = RED if RED in zones else AMBER if AMBER in zones else GREEN
    return GateResult(zone=gate, verdicts=tuple(verdicts))


def verdicts_as_json(verdicts) -> list[dict]:
    """The verdicts as stored and digested. `flip_basis` appears only on flip-rate verdicts, so every other
    verdict keeps the JSON (and digest) it always had."""
    out = []
    for verdict in verdicts:
        data = asdict(verdict)
        if data["flip_basis"] is None:
            del data["flip_basis"]
        out.append(data)
    return out
