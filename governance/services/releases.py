"""The release lifecycle's services. Every transition locks the release row, checks the expected state and
version, and writes its ledger event in the same transaction (governance.services.state, by the table in
governance.lifecycle). Refusals change nothing but are themselves recorded in the ledger."""

import datetime as dt

from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.engine.errors import EngineError
from compression.engine.manifest import manifest_digest
from compression.models import CompressionRun, RunStatus
from compression.services.artifacts import artifact_path
from compression.services.behaviour import BEHAVIOURAL_DISTILL
from compression.services.workers import device_worker_check
from evaluations.services.behaviour_data import behaviour_suite_overlap
from evaluations.services.chat_config import chat_evaluation_overrides
from evaluations.services.comparisons import comparison_compute
from evaluations.services.runs import (
    evaluation_config,
    evaluation_queue,
    evaluation_run_enqueue,
    evaluation_run_request,
)
from governance.error_codes import GovernanceErrorCode
from governance.gate import verdicts_as_json
from governance.lifecycle import DECISION_FROM
from governance.models import (
    Decision,
    DecisionKind,
    EscalationStatus,
    EscalationTrigger,
    Release,
    ReleaseStatus,
    RolloutStage,
    Zone,
)
from governance.selectors import approval_policy_for, release_evidence, review_pool
from ledger.canonical import digest
from ledger.services import ledger_append

from .authority import require_authority, require_independent, require_officer
from .candidates import release_record_created, suite_and_policy
from .escalations import escalation_open
from .notifications import notify
from .policies import policy_judge
from .reviews import review_tasks_create
from .state import OBJECT_TYPE, expect, guarded, locked, transition

# The default staged rollout (the release page's one button): percent of traffic, days after the start.
DEFAULT_ROLLOUT = ((5, 0), (25, 1), (100, 2))


def release_create(*, actor, compression_run_id: int, suite_version_id: int, policy_id: int) -> Release:
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers propose releases.")
    run = CompressionRun.objects.select_related("experiment", "output_artifact").filter(pk=compression_run_id).first()
    if run is None:
        raise ValidationFailed(
            "Unknown compression run.", details={"compression_run": [f"No run {compression_run_id}."]}
        )
    if run.status != RunStatus.SUCCEEDED:
        raise ValidationFailed(
            f"Run {run.pk} is {run.status}; only a succeeded run can be released.",
            code=GovernanceErrorCode.RUN_NOT_SUCCEEDED,
            details={"compression_run": [f"Status is {run.status}."]},
        )
    if actor.role == Role.ENGINEER and run.experiment.owner_id != actor.pk:
        raise PermissionDenied("Only the experiment's owner may propose its release.")
    suite_version, policy = suite_and_policy(suite_version_id, policy_id)
    if run.method == BEHAVIOURAL_DISTILL and run.data_source:
        behaviour_suite_overlap(suite_version=suite_version, data_source=run.data_source)
    artifact = run.output_artifact
    assert artifact is not None  # a succeeded run always has its output artifact
    return release_record_created(
        actor=actor,
        candidate_source={"compression_run": run},
        experiment=run.experiment,
        candidate=artifact,
        suite_version=suite_version,
        policy=policy,
        payload={"compression_run": run.pk},
    )


def release_start_evaluation(
    *,
    actor,
    release_id: int,
    expected_version: int | None = None,
    profile: dict | None = None,
    queue_anyway: bool = False,
) -> Release:
    """draft → evaluating: pin the policy, request both evaluations under one deployment profile (the
    requested ``profile`` over the policy's required one; a 400 when it breaks the requirement), and
    enqueue them after commit on the queue of the profile's device (a 400 `no_worker_for_device` when no live
    worker serves it, unless ``queue_anyway``). A refusal (not the owner, stale version, not a draft, profile,
    device) is recorded in the ledger."""
    return guarded(
        actor, release_id, lambda: _start_evaluation(actor, release_id, expected_version, profile, queue_anyway)
    )


def _start_evaluation(
    actor, release_id: int, expected_version: int | None, profile: dict | None, queue_anyway: bool = False
) -> Release:
    with transaction.atomic():
        release = locked(release_id, expected_version, authorize=lambda r: _owner_only(actor, r))
        expect(release, ReleaseStatus.DRAFT)
        chat = chat_evaluation_overrides(
            suite_version=release.suite_version,
            baseline=release.experiment.base_artifact,
            candidate=release.candidate,
            generation=release.experiment.generation,
        )
        config = evaluation_config(
            unsafe_labels=release.experiment.unsafe_labels,
            profile=profile,
            required_profile=release.policy.required_profile,
            **chat,
        )
        device_worker_check(device=config["profile"]["device"], field="profile.device", queue_anyway=queue_anyway)
        baseline = evaluation_run_request(
            actor=actor, artifact=release.experiment.base_artifact, suite_version=release.suite_version, config=config
        )
        candidate = evaluation_run_request(
            actor=actor, artifact=release.candidate, suite_version=release.suite_version, config=config
        )
        release.baseline_evaluation, release.candidate_evaluation = baseline, candidate
        release.failure_reason = ""
        transition(
            release,
            actor=actor,
            to=ReleaseStatus.EVALUATING,
            action="release.evaluation_started",
            payload={
                "policy_pinned": release.policy_id,
                "baseline_evaluation": baseline.pk,
                "candidate_evaluation": candidate.pk,
                "profile": config["profile"],
            },
            fields=("baseline_evaluation", "candidate_evaluation", "failure_reason"),
        )
        transaction.on_commit(lambda: _enqueue_evaluation(release.pk, baseline.pk, candidate.pk))
    return release


def _owner_only(actor, release: Release) -> None:
    if actor.role == Role.ENGINEER and release.experiment.owner_id != actor.pk:
        raise PermissionDenied("Only the experiment's owner may start its evaluation.")


def _enqueue_evaluation(release_id: int, baseline_id: int, candidate_id: int) -> None:
    from governance.tasks import complete_release_evaluation

    # Each evaluation fans out into chunks on any worker. The chunk that finishes a run announces it
    # (evaluations' RUN_FINISHED_TASK, implemented by governance.tasks.evaluation_finished), which
    # completes the releases waiting on it. One completion attempt now covers runs that were already
    # finished (an evaluation reused from an earlier release); beat's sweep covers a lost message.
    # Every task goes to the queue of the profile's device (the comparison times both models there too).
    evaluation_run_enqueue(baseline_id)
    evaluation_run_enqueue(candidate_id)
    complete_release_evaluation.apply_async((release_id,), queue=evaluation_queue(baseline_id))


class EvaluationsPending(Exception):
    """An evaluation has not finished yet (revalidations retry on it)."""


def release_complete_evaluation(*, release_id: int) -> Release:
    """evaluating → awaiting decision (green, red) or in review (amber); back to draft if an
    evaluation failed. A red gate opens an escalation. Idempotent: a release that is not evaluating,
    or whose evaluations are still running, is returned unchanged; two concurrent calls compare once
    (the comparison is unique per pair) and transition once (the release row is locked)."""
    release = Release.objects.select_related("baseline_evaluation", "candidate_evaluation").get(pk=release_id)
    if release.status != ReleaseStatus.EVALUATING:
        return release
    baseline_run, candidate_run = release.baseline_evaluation, release.candidate_evaluation
    assert baseline_run is not None and candidate_run is not None  # both are set on entering EVALUATING
    runs = (baseline_run, candidate_run)
    if not all(r.is_terminal for r in runs):
        return release
    failure = "; ".join(
        f"evaluation {r.pk} {r.status}: {r.failure_reason or 'not finished'}"
        for r in runs
        if r.status != RunStatus.SUCCEEDED
    )
    comparison = None
    if not failure:
        try:
            comparison = comparison_compute(actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk)
        except DomainError as exc:  # the runs cannot be compared: retrying would not help, so the release fails
            failure = f"comparison refused ({exc.code}): {exc.message}"
    with transaction.atomic():
        release = locked(release_id, None)
        if release.status != ReleaseStatus.EVALUATING:
            return release
        if failure:
            release.failure_reason = failure
            transition(
                release,
                actor=None,
                to=ReleaseStatus.DRAFT,
                action="release.failed",
                payload={"reason": release.failure_reason},
                fields=("failure_reason",),
            )
            return release
        # no failure means comparison_compute returned a done comparison, which always has results
        assert comparison is not None and comparison.results is not None
        zone, verdicts = policy_judge(release.policy, comparison.results)
        release.comparison, release.gate_zone, release.gate = comparison, zone, verdicts_as_json(verdicts)
        to = ReleaseStatus.IN_REVIEW if zone == Zone.AMBER else ReleaseStatus.AWAITING_DECISION
        payload = {"zone": zone, "gate_digest": digest(release.gate), "comparison": comparison.pk}
        payload["flips"] = comparison.flip_count
        if zone == Zone.AMBER:
            pool, sampled_from = review_pool(comparison)
            if not pool:  # amber, but no flip that holds when the batches change: nothing for blind review
                to = ReleaseStatus.AWAITING_DECISION
                left_out = sampled_from["unstable_left_out"]
                payload["review"] = "none: no flipped example" + (
                    f" that holds when the batches are recomposed ({left_out} unstable flips)" if left_out else ""
                )
        transition(
            release,
            actor=None,
            to=to,
            action="release.gated",
            payload=payload,
            fields=("comparison", "gate_zone", "gate"),
        )
        if zone == Zone.RED:
            red = [v.title for v in verdicts if v.zone == Zone.RED]
            escalation_open(release=release, trigger=EscalationTrigger.RED_ZONE, summary=f"Red zone: {', '.join(red)}.")
        elif to == ReleaseStatus.IN_REVIEW:
            review_tasks_create(release=release)
    return release


def _candidate_intact(release: Release) -> bool:
    """The files in the store still hash to the digest that was evaluated."""
    try:
        return manifest_digest(artifact_path(release.candidate)) == release.candidate_digest
    except EngineError:
        return False


def _record(release: Release, actor, kind: str, rationale: str) -> Decision:
    return Decision.objects.create(
        release=release,
        actor=actor,
        actor_role=actor.role,
        kind=kind,
        rationale=rationale,
        evidence=release_evidence(release),
        candidate_digest=release.candidate_digest,
        release_version=release.version,
        experiment_owner_id=release.experiment.owner_id,
        run_requester_id=release.run_requested_by_id,
    )


def _red_cleared(release: Release) -> bool:
    """A red gate is cleared once the tier's authority has resolved its escalation(s)."""
    red = release.escalations.filter(trigger=EscalationTrigger.RED_ZONE)
    return red.exists() and not red.exclude(status=EscalationStatus.RESOLVED).exists()


def _approve(release: Release, actor, rationale: str) -> None:
    expect(release, *DECISION_FROM[DecisionKind.APPROVE])
    require_officer(actor, "approve a release")
    require_independent(actor, release)
    require_authority(actor, release, "approve this release")
    if release.gate_zone == Zone.RED and not _red_cleared(release):
        raise Conflict(
            "The gate is red: approval is blocked until the tier's authority resolves the escalation.",
            code=GovernanceErrorCode.GATE_RED,
        )
    valid = release.decisions.filter(kind=DecisionKind.APPROVE, release_version__gte=release.approvals_since_version)
    if valid.filter(actor=actor).exists():
        raise Conflict("You have already approved this release.", code=GovernanceErrorCode.ALREADY_APPROVED)
    if not _candidate_intact(release):
        raise Conflict(
            "The candidate's files no longer match the evaluated digest.", code=GovernanceErrorCode.CANDIDATE_CHANGED
        )
    decision = _record(release, actor, DecisionKind.APPROVE, rationale)
    approvals = valid.count()
    required = approval_policy_for(release.experiment.risk_tier).approvals_required
    payload = {
        "decision": decision.pk,
        "rationale": rationale,
        "evidence": decision.evidence,
        "approvals": approvals,
        "required": required,
    }
    if approvals >= required:
        transition(release, actor=actor, to=ReleaseStatus.APPROVED, action="release.approved", payload=payload)
    else:
        release.version += 1
        release.save(update_fields=["version", "updated_at"])
        ledger_append(
            actor=actor,
            action="release.approved",
            object_type=OBJECT_TYPE,
            object_id=release.pk,
            payload={**payload, "from": release.status, "to": release.status, "version": release.version},
        )


def _reject(release: Release, actor, rationale: str) -> None:
    expect(release, *DECISION_FROM[DecisionKind.REJECT])
    require_officer(actor, "reject a release")
    require_independent(actor, release)
    require_authority(actor, release, "reject this release")
    decision = _record(release, actor, DecisionKind.REJECT, rationale)
    transition(
        release,
        actor=actor,
        to=ReleaseStatus.REJECTED,
        action="release.rejected",
        payload={"decision": decision.pk, "rationale": rationale, "evidence": decision.evidence},
    )


def _halt(release: Release, actor, rationale: str) -> None:
    require_officer(actor, "halt a release")
    if release.status not in DECISION_FROM[DecisionKind.HALT]:
        raise Conflict(
            f"Release {release.pk} is {release.status}; it cannot be halted.",
            code=GovernanceErrorCode.INVALID_TRANSITION,
        )
    decision = _record(release, actor, DecisionKind.HALT, rationale)
    release.status_before_halt = release.status
    transition(
        release,
        actor=actor,
        to=ReleaseStatus.HALTED,
        action="release.halted",
        payload={"decision": decision.pk, "rationale": rationale},
        fields=("status_before_halt",),
    )


def _resume(release: Release, actor, rationale: str) -> None:
    expect(release, *DECISION_FROM[DecisionKind.RESUME])
    require_authority(actor, release, "resume this release")
    decision = _record(release, actor, DecisionKind.RESUME, rationale)
    to = release.status_before_halt or ReleaseStatus.AWAITING_DECISION
    release.status_before_halt = ""
    transition(
        release,
        actor=actor,
        to=to,
        action="release.resumed",
        payload={"decision": decision.pk, "rationale": rationale},
        fields=("status_before_halt",),
    )


def _roll_back(release: Release, actor, rationale: str) -> None:
    expect(release, *DECISION_FROM[DecisionKind.ROLL_BACK])
    require_officer(actor, "roll back a release")
    decision = _record(release, actor, DecisionKind.ROLL_BACK, rationale)
    transition(
        release,
        actor=actor,
        to=ReleaseStatus.ROLLED_BACK,
        action="release.rolled_back",
        payload={"decision": decision.pk, "rationale": rationale},
    )


_DECISIONS = {
    DecisionKind.APPROVE: _approve,
    DecisionKind.REJECT: _reject,
    DecisionKind.HALT: _halt,
    DecisionKind.RESUME: _resume,
    DecisionKind.ROLL_BACK: _roll_back,
}


def _may_decide(actor, release: Release, kind: str) -> None:
    """The role and authority checks of each decision (repeated inside it), before version and state."""
    if kind in (DecisionKind.APPROVE, DecisionKind.REJECT):
        require_officer(actor, f"{kind} a release")
        require_independent(actor, release)
        require_authority(actor, release, f"{kind} this release")
    elif kind == DecisionKind.RESUME:
        require_authority(actor, release, "resume this release")
    else:
        require_officer(actor, "halt a release" if kind == DecisionKind.HALT else "roll back a release")


def release_decide(
    *, actor, release_id: int, kind: str, rationale: str, expected_version: int | None = None
) -> Release:
    """Approve, reject, halt, resume or roll back, with a rationale and the evidence digests."""
    if kind not in DecisionKind.values:
        raise ValidationFailed("Unknown decision.", details={"kind": [f"One of {DecisionKind.values}."]})
    if not rationale or not rationale.strip():
        raise ValidationFailed("A decision needs a rationale.", details={"rationale": ["May not be blank."]})

    def operation() -> Release:
        with transaction.atomic():
            release = locked(release_id, expected_version, authorize=lambda r: _may_decide(actor, r, kind))
            _DECISIONS[DecisionKind(kind)](release, actor, rationale.strip())
        _notify_decision(release, kind)
        return release

    return guarded(actor, release_id, operation)


def _notify_decision(release: Release, kind: str) -> None:
    notify(
        event=f"release.{kind}", payload={"release": release.pk, "status": release.status, "version": release.version}
    )


def _validate_stages(stages: list[dict]) -> list[tuple[int, dt.datetime]]:
    if not stages:
        raise ValidationFailed("A rollout needs at least one stage.", details={"stages": ["May not be empty."]})
    parsed, last_percent, last_time = [], 0, None
    for i, stage in enumerate(stages):
        percent, starts_at = stage.get("percent"), stage.get("starts_at")
        if not isinstance(percent, int) or not 1 <= percent <= 100 or percent <= last_percent:
            raise ValidationFailed(
                f"stages[{i}].percent must rise, between 1 and 100.",
                details={f"stages[{i}].percent": ["An integer above the previous stage, ≤ 100."]},
            )
        when = starts_at if isinstance(starts_at, dt.datetime) else _parse_time(starts_at, f"stages[{i}].starts_at")
        if last_time and when < last_time:
            raise ValidationFailed(
                f"stages[{i}].starts_at is before the previous stage.",
                details={f"stages[{i}].starts_at": ["Stages must be in time order."]},
            )
        parsed.append((percent, when))
        last_percent, last_time = percent, when
    if last_percent != 100:
        raise ValidationFailed("The last stage must reach 100%.", details={"stages": ["Last stage must be 100%."]})
    return parsed


def _parse_time(value, field: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed(
            f"{field} is not an ISO 8601 time.", details={field: ["ISO 8601, e.g. 2026-12-01T09:00Z."]}
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def default_rollout_stages(now: dt.datetime | None = None) -> list[dict]:
    """The default staged rollout from `now`: 5%, 25%, 100%, a day apart (DEFAULT_ROLLOUT)."""
    now = now or timezone.now()
    return [
        {"percent": percent, "starts_at": (now + dt.timedelta(days=days)).isoformat()}
        for percent, days in DEFAULT_ROLLOUT
    ]


def release_start_rollout(
    *, actor, release_id: int, stages: list[dict], expected_version: int | None = None
) -> Release:
    """approved → rolling out (stage 1). The candidate must still hash to the evaluated digest;
    if it does not, every approval is void and the release goes back to awaiting a decision."""
    parsed = _validate_stages(stages)

    def operation() -> Release:
        with transaction.atomic():
            release = locked(
                release_id, expected_version, authorize=lambda r: require_authority(actor, r, "start a rollout")
            )
            expect(release, ReleaseStatus.APPROVED)
            require_authority(actor, release, "start a rollout")
            intact = _candidate_intact(release)
            if intact:
                RolloutStage.objects.bulk_create(
                    [
                        RolloutStage(
                            release=release,
                            position=i + 1,
                            percent=p,
                            starts_at=t,
                            started_at=timezone.now() if i == 0 else None,
                        )
                        for i, (p, t) in enumerate(parsed)
                    ]
                )
                release.rollout_position = 1
                transition(
                    release,
                    actor=actor,
                    to=ReleaseStatus.ROLLING_OUT,
                    action="release.rollout_started",
                    payload={"stages": [{"percent": p, "starts_at": t.isoformat()} for p, t in parsed]},
                    fields=("rollout_position",),
                )
                return release
            voided = list(release.decisions.filter(kind=DecisionKind.APPROVE).values_list("pk", flat=True))
            release.approvals_since_version = release.version + 1
            transition(
                release,
                actor=actor,
                to=ReleaseStatus.AWAITING_DECISION,
                action="release.approvals_voided",
                payload={"reason": "candidate digest changed", "voided_decisions": voided},
                fields=("approvals_since_version",),
            )
        raise Conflict(
            "The candidate's files no longer match the evaluated digest: approvals are void.",
            code=GovernanceErrorCode.CANDIDATE_CHANGED,
        )

    return guarded(actor, release_id, operation)


def release_advance_rollout(*, actor, release_id: int, expected_version: int | None = None) -> Release:
    """Start the next stage; after the last (100%) stage the release is released."""

    def operation() -> Release:
        with transaction.atomic():
            release = locked(
                release_id, expected_version, authorize=lambda r: require_authority(actor, r, "advance a rollout")
            )
            expect(release, ReleaseStatus.ROLLING_OUT)
            require_authority(actor, release, "advance a rollout")
            stages = list(release.rollout_stages.order_by("position"))
            if release.rollout_position >= len(stages):
                transition(release, actor=actor, to=ReleaseStatus.RELEASED, action="release.released", payload={})
                return release
            stage = stages[release.rollout_position]
            if stage.starts_at > timezone.now():
                raise Conflict(
                    f"Stage {stage.position} starts at {stage.starts_at.isoformat()}.",
                    code=GovernanceErrorCode.TOO_EARLY,
                )
            stage.started_at = timezone.now()
            stage.save(update_fields=["started_at"])
            release.rollout_position = stage.position
            release.version += 1
            release.save(update_fields=["rollout_position", "version", "updated_at"])
            ledger_append(
                actor=actor,
                action="release.rollout_advanced",
                object_type=OBJECT_TYPE,
                object_id=release.pk,
                payload={"stage": stage.position, "percent": stage.percent, "version": release.version},
            )
        return release

    return guarded(actor, release_id, operation)
