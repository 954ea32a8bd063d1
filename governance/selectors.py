"""Governance's plain reads: what a user may see, which decisions they are offered, the approval policy and
authority of a tier, a release's evidence digests, mitigations, the flips a blind review samples from, and
the blind view of a review task.
Services and views both read through here; nothing here writes."""

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Role
from compression.models import RiskTier
from evaluations.models import Example, Flip, SuiteVersion
from governance.lifecycle import decisions_from
from governance.models import (
    ApprovalPolicy,
    AuthorityGrant,
    DecisionKind,
    Escalation,
    EscalationStatus,
    MitigationTemplate,
    RegulatorGrant,
    Release,
    ReleaseStatus,
    ReviewTask,
    Zone,
)
from ledger.canonical import canonical_json, digest


def releases_visible_to(user) -> QuerySet[Release]:
    qs = Release.objects.select_related("experiment", "experiment__owner", "candidate", "policy", "suite_version")
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    if user.role == Role.ENGINEER:
        return qs.filter(experiment__owner=user)
    if user.role == Role.REGULATOR:
        return qs.filter(pk__in=active_grants(user).values("release"))
    return qs.none()


def active_grants(user, *, now: dt.datetime | None = None) -> QuerySet[RegulatorGrant]:
    now = now or timezone.now()
    return RegulatorGrant.objects.filter(
        Q(revoked_at__isnull=True) | Q(revoked_at__gt=now), regulator=user, valid_from__lte=now, valid_until__gt=now
    )


# A regulator is warned on every page when a grant ends within this long.
ACCESS_EXPIRY_WARNING = dt.timedelta(days=7)


@dataclass(frozen=True)
class RegulatorAccess:
    """One active grant as its regulator is told about it: which release, until when, and whether it ends
    within ACCESS_EXPIRY_WARNING."""

    release_id: int
    ends_at: dt.datetime  # valid_until, or a revocation already scheduled before it
    ending_soon: bool


def regulator_access(user, *, now: dt.datetime | None = None) -> list[RegulatorAccess]:
    """A regulator's active grants, soonest end first (empty for other roles)."""
    if getattr(user, "role", None) != Role.REGULATOR:
        return []
    now = now or timezone.now()
    out = []
    for grant in active_grants(user, now=now).order_by("valid_until", "pk"):
        ends = min(grant.valid_until, grant.revoked_at) if grant.revoked_at else grant.valid_until
        out.append(RegulatorAccess(grant.release_id, ends, ends - now <= ACCESS_EXPIRY_WARNING))
    return sorted(out, key=lambda a: (a.ends_at, a.release_id))


def escalations_visible_to(user) -> QuerySet[Escalation]:
    return (
        Escalation.objects.filter(release__in=releases_visible_to(user))
        .select_related("release")
        .order_by("status", "deadline")
    )


# Used when a tier has no ApprovalPolicy row; the same values are seeded by migration 0002.
DEFAULT_APPROVAL_POLICIES = {
    RiskTier.LOW: {
        "approvals_required": 1,
        "review_sample_size": 6,
        "reviewers_per_item": 1,
        "review_hours": 72,
        "escalation_hours": 48,
        "halt_on_overdue": False,
    },
    RiskTier.MEDIUM: {
        "approvals_required": 1,
        "review_sample_size": 10,
        "reviewers_per_item": 2,
        "review_hours": 72,
        "escalation_hours": 24,
        "halt_on_overdue": False,
    },
    RiskTier.HIGH: {
        "approvals_required": 2,
        "review_sample_size": 20,
        "reviewers_per_item": 2,
        "review_hours": 48,
        "escalation_hours": 12,
        "halt_on_overdue": True,
    },
}


def approval_policy_for(tier: str) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.filter(risk_tier=tier).first()
    defaults = DEFAULT_APPROVAL_POLICIES.get(tier, DEFAULT_APPROVAL_POLICIES["high"])
    return policy or ApprovalPolicy(risk_tier=tier, **defaults)


def authority_level(user, tier: str) -> int:
    """The user's authority level for a tier (0 = none). Admins are not authorities: they run the system."""
    if user.role != Role.OFFICER:
        return 0
    grant = AuthorityGrant.objects.filter(user=user, risk_tier=tier).first()
    return grant.level if grant else 0


@dataclass(frozen=True)
class AllowedDecisions:
    """What the release page offers a user. The services check the same (and more: authority for approve,
    reject and resume, separation of duties, the expected version) and refuse with a reason."""

    decisions: frozenset[str]  # DecisionKind values: the state machine allows them now and the role may ask
    rollout: bool  # start (approved) or advance (rolling out) the staged rollout
    authority: int  # the user's authority level for the release's tier (0 = none)
    resolvable_escalations: frozenset[int] = field(default_factory=frozenset)  # ids this user may resolve

    @property
    def can_decide(self) -> bool:
        return DecisionKind.APPROVE in self.decisions

    @property
    def can_halt(self) -> bool:
        return DecisionKind.HALT in self.decisions

    @property
    def can_resume(self) -> bool:
        return DecisionKind.RESUME in self.decisions

    @property
    def can_roll_back(self) -> bool:
        return DecisionKind.ROLL_BACK in self.decisions

    @property
    def any(self) -> bool:
        return bool(self.decisions)


def release_allowed_decisions(release: Release, user) -> AllowedDecisions:
    """The decisions the lifecycle table allows in the release's status, offered to officers only; the
    escalations the user holds enough authority to resolve (officers at the escalation's level or above)."""
    officer = user.role == Role.OFFICER
    authority = authority_level(user, release.experiment.risk_tier)
    unresolved = release.escalations.exclude(status=EscalationStatus.RESOLVED).values_list("pk", "level")
    return AllowedDecisions(
        decisions=frozenset(decisions_from(release.status)) if officer else frozenset(),
        rollout=release.status in (ReleaseStatus.APPROVED, ReleaseStatus.ROLLING_OUT),
        authority=authority,
        resolvable_escalations=frozenset(pk for pk, level in unresolved if officer and authority >= level),
    )


def release_evidence(release: Release) -> dict:
    """Digests of what a decision-maker saw."""
    return {
        "candidate": release.candidate_digest,
        "baseline": release.experiment.base_artifact.digest,
        "suite_version": release.suite_version.digest,
        "policy": f"{release.policy.name} v{release.policy.version}",
        "comparison_results": digest(release.comparison.results) if release.comparison else None,
        "gate": digest(release.gate) if release.gate else None,
        "review_outcome": digest(release.review_outcome) if release.review_outcome else None,
    }


def mitigations_for(release: Release) -> list[MitigationTemplate]:
    """Remediation templates linked to the failure modes of the rules that are not green."""
    codes = {v.get("rule") for v in release.gate or [] if v["zone"] != Zone.GREEN}
    modes = set(release.policy.rules.filter(code__in=codes).values_list("failure_mode_code", flat=True))
    return [m for m in MitigationTemplate.objects.order_by("code") if modes & set(m.failure_mode_codes)]


def review_pool(comparison) -> tuple[list[int], dict]:
    """The flips a blind review samples from (ids in order), and a record of that choice for the ledger.
    With a stability pass (Flip.stable set) only the stable flips: a flip that moved when the batches were
    recomposed says more about batching than about compression, and reviewers' time goes to flips that hold.
    Without one (older comparisons, Flip.stable null) every flip, as before."""
    rows = list(Flip.objects.filter(comparison=comparison).order_by("pk").values_list("pk", "stable"))
    if rows:
        has_pass = any(stable is not None for _, stable in rows)
    else:  # no flip to tell by: the results say whether the runs had a stability pass
        has_pass = unstable_flips_not_sampled(comparison) is not None
    if not has_pass:
        record = {"basis": "all", "flips": len(rows), "stable_flips": None, "unstable_left_out": None}
        return [pk for pk, _ in rows], record
    pool = [pk for pk, stable in rows if stable]
    record = {
        "basis": "stable",
        "flips": len(rows),
        "stable_flips": len(pool),
        "unstable_left_out": len(rows) - len(pool),
    }
    return pool, record


def unstable_flips_not_sampled(comparison) -> int | None:
    """How many of a comparison's flips moved when the batches were recomposed and so are left out of its
    blind review (review_pool samples stable flips only), from the comparison's results: no query. None when
    the comparison has no stability pass (every flip could be sampled) or no results yet."""
    stability = (comparison.results or {}).get("stability") if comparison is not None else None
    return (stability.get("flips") or {}).get("unstable") if stability else None


def review_task_view(task: ReviewTask) -> dict:
    """What the reviewer sees: the input and outputs A and B, with no hint of which model is which
    until the task is submitted. The example's expected label only where the release's policy shows it
    (ThresholdPolicy.reviewers_see_expected_label; off by default): `expected_label` is None otherwise, before
    and after submission, and `expected_label_shown` says which."""
    flip = task.flip
    # A task always belongs to a release; one built in memory without it (a preview) shows no label.
    shows_label = task.release.policy.reviewers_see_expected_label if task.release_id else False
    chat = bool(flip.baseline_behaviour)  # a chat model's flip: both answers, judged behaviour
    if chat:  # the reviewer reads both answers; the judged behaviour is shown beside each
        candidate = {"output": flip.candidate_output, "behaviour": flip.candidate_behaviour}
        baseline = {"output": flip.baseline_output, "behaviour": flip.baseline_behaviour}
    else:
        candidate = {
            "unsafe_probability": round(flip.candidate_prob, 4),
            "decision": "unsafe" if flip.candidate_prob >= 0.5 else "safe",
        }
        baseline = {
            "unsafe_probability": round(flip.baseline_prob, 4),
            "decision": "unsafe" if flip.baseline_prob >= 0.5 else "safe",
        }
    a, b = (candidate, baseline) if task.a_is_candidate else (baseline, candidate)
    view = {
        "id": task.pk,
        "chat": chat,
        "text": flip.example.text,
        "expected_label": flip.example.label if shows_label else None,
        "expected_label_shown": shows_label,
        "a": a,
        "b": b,
        "deadline": task.deadline,
        "submitted": task.submitted_at is not None,
        "label": task.label,
        "label_display": task.get_label_display(),
        "note": task.note,
    }
    if task.submitted_at:
        view["revealed"] = {
            "a": "candidate" if task.a_is_candidate else "baseline",
            "b": "baseline" if task.a_is_candidate else "candidate",
        }
    return view


# Spread between seeds: the same method and parameters run with several seeds, compared.
SPREAD_METRICS = ("accuracy", "unsafe_recall", "benign_fpr", "fnr_gap", "ece")


def seed_spread(*, experiment_id: int) -> list[dict]:
    """For each (method, parameters) evaluated with two or more seeds on the same suite version:
    per group and metric, the candidate-minus-baseline delta of every seed and their mean, min, max
    and standard deviation, plus the spread of the flip counts."""
    runs: dict[tuple, list[Release]] = defaultdict(list)
    for release in (
        # Seeds are SafeShrink's own runs' (an external run's seeds are only reported).
        Release.objects.filter(experiment_id=experiment_id, comparison__isnull=False, compression_run__isnull=False)
        .select_related("compression_run", "comparison")
        .order_by("pk")
    ):
        run = release.compression_run
        runs[(run.method, canonical_json(run.parameters), release.suite_version_id)].append(release)
    out = []
    for (method, parameters, suite_version), releases in runs.items():
        by_seed = {r.compression_run.seed: r for r in releases}
        if len(by_seed) < 2:
            continue
        groups: dict[str, dict[str, dict]] = defaultdict(dict)
        for key in by_seed[min(by_seed)].comparison.results["groups"]:
            for metric in SPREAD_METRICS:
                deltas = {
                    seed: ((r.comparison.results["groups"].get(key) or {}).get("metrics", {}).get(metric) or {}).get(
                        "delta"
                    )
                    for seed, r in by_seed.items()
                }
                values = [v for v in deltas.values() if v is not None]
                if len(values) >= 2:
                    groups[key][metric] = {
                        "deltas": deltas,
                        "mean": statistics.fmean(values),
                        "min": min(values),
                        "max": max(values),
                        "stdev": statistics.stdev(values),
                    }
        flips = [r.comparison.flip_count for r in by_seed.values()]
        out.append(
            {
                "method": method,
                "parameters": parameters,
                "suite_version": suite_version,
                "seeds": sorted(by_seed),
                "releases": [r.pk for r in by_seed.values()],
                "flips": {"values": flips, "min": min(flips), "max": max(flips)},
                "groups": groups,
            }
        )
    return out


# What a release's evidence should be read with: warnings on the API (ReleaseOutput.warnings), the release page and
# the release.created ledger event. Not errors: a policy may turn one into a refusal (forbid_training_data_overlap).
class ReleaseWarningCode(StrEnum):
    EVALUATED_ON_TRAINING_DATA = "evaluated_on_training_data"  # the suite shares examples with the run's data


def _shared_examples(suite_version: SuiteVersion, data_version_id: int) -> int:
    """How many of the evaluation suite version's examples the data suite version also holds: every one when they
    are the same version; otherwise those with the same text (exactly), the same root (an example and the
    variants derived from it, `Example.source`, either way) or, in another version of the same suite, the same id.
    Counted in the database (semi-joins), never loaded."""
    if suite_version.pk == data_version_id:
        return suite_version.example_count
    data = Example.objects.filter(suite_version_id=data_version_id)
    roots = data.annotate(root=Coalesce("source_id", "id")).values("root")
    shared = Q(text__in=data.values("text")) | Q(root__in=roots)
    if SuiteVersion.objects.filter(pk=data_version_id, suite_id=suite_version.suite_id).exists():
        shared |= Q(external_id__in=data.values("external_id"))
    evaluated = Example.objects.filter(suite_version=suite_version).annotate(root=Coalesce("source_id", "id"))
    return evaluated.filter(shared).count()


def candidate_warnings(*, compression_run, suite_version: SuiteVersion) -> list[dict]:
    """The warnings of a release of ``compression_run``'s candidate evaluated on ``suite_version`` (before or after
    it exists): `evaluated_on_training_data` when the suite version shares examples (see `_shared_examples`) with
    the suite version the run recorded as its calibration or training data (`data_source["suite_version"]`,
    whether or not its method read every slice of it: the whole version counts as seen). Nothing for an external
    run (its training data is reported, not known) nor for behavioural_distill (its prompt sets are refused
    outright when they overlap: `prompt_overlap`)."""
    data_version_id = ((compression_run.data_source or {}) if compression_run is not None else {}).get("suite_version")
    if data_version_id is None:
        return []
    shared = _shared_examples(suite_version, data_version_id)
    if not shared:
        return []
    overlap = (
        f"is suite version {data_version_id} itself"
        if suite_version.pk == data_version_id
        else f"shares {shared} of its {suite_version.example_count} examples with suite version {data_version_id}"
    )
    return [
        {
            "code": ReleaseWarningCode.EVALUATED_ON_TRAINING_DATA.value,
            "message": f"The evaluation suite version {suite_version.pk} {overlap}, which compression run "
            f"{compression_run.pk} trained or calibrated on: the evidence measures the candidate on data it has seen.",
            "suite_version": suite_version.pk,
            "data_suite_version": data_version_id,
            "shared_examples": shared,
        }
    ]


def release_warnings(release: Release) -> list[dict]:
    """The warnings a release's evidence should be read with (`candidate_warnings` of its run and suite version)."""
    return candidate_warnings(compression_run=release.compression_run, suite_version=release.suite_version)
