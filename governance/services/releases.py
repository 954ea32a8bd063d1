"""The release lifecycle. Every transition locks the release row, checks the expected state and
version, and writes its ledger event in the same transaction."""

from celery import chain
from django.db import transaction

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.models import CompressionRun, RiskTier, RunStatus
from evaluations.models import SuiteVersion
from evaluations.services.comparisons import comparison_compute
from evaluations.services.runs import evaluation_config, evaluation_run_request
from governance.models import (
    Decision, DecisionKind, Release, ReleaseStatus, TERMINAL_RELEASE_STATUSES, ThresholdPolicy, Zone,
)
from ledger.canonical import digest
from ledger.services import ledger_append, ledger_record_refusal

from .policies import policy_judge, verdicts_as_json

OBJECT_TYPE = "release"
# Four-eyes: how many distinct officers must approve, by the experiment's risk tier.
APPROVALS_REQUIRED = {RiskTier.LOW: 1, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


def _locked(release_id: int, expected_version: int | None) -> Release:
    release = Release.objects.select_for_update().filter(pk=release_id).first()
    if release is None:
        raise NotFound(f"No release {release_id}.")
    if expected_version is not None and release.version != expected_version:
        raise Conflict(
            f"Release {release.pk} changed since you loaded it (version {expected_version}, now {release.version}).",
            code="stale_version", details={"expected_version": [f"Current version is {release.version}."]},
        )
    return release


def _transition(release: Release, *, actor, to: str, action: str, payload: dict, fields: tuple[str, ...] = ()) -> None:
    previous = release.status
    release.status = to
    release.version += 1
    release.save(update_fields=["status", "version", "updated_at", *fields])
    ledger_append(
        actor=actor, action=action, object_type=OBJECT_TYPE, object_id=release.pk,
        payload={"from": previous, "to": to, "version": release.version, **payload},
    )


def release_create(*, actor, compression_run_id: int, suite_version_id: int, policy_id: int) -> Release:
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers propose releases.")
    run = CompressionRun.objects.select_related("experiment", "output_artifact").filter(pk=compression_run_id).first()
    if run is None:
        raise ValidationFailed("Unknown compression run.", details={"compression_run": [f"No run {compression_run_id}."]})
    if run.status != RunStatus.SUCCEEDED:
        raise ValidationFailed(f"Run {run.pk} is {run.status}; only a succeeded run can be released.",
                               code="run_not_succeeded", details={"compression_run": [f"Status is {run.status}."]})
    if actor.role == Role.ENGINEER and run.experiment.owner_id != actor.pk:
        raise PermissionDenied("Only the experiment's owner may propose its release.")
    suite_version = SuiteVersion.objects.filter(pk=suite_version_id).first()
    if suite_version is None:
        raise ValidationFailed("Unknown suite version.", details={"suite_version": [f"No suite version {suite_version_id}."]})
    policy = ThresholdPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        raise ValidationFailed("Unknown threshold policy.", details={"policy": [f"No policy {policy_id}."]})
    with transaction.atomic():
        release = Release.objects.create(
            experiment=run.experiment, compression_run=run, candidate=run.output_artifact,
            candidate_digest=run.output_artifact.digest, suite_version=suite_version, policy=policy, created_by=actor,
        )
        ledger_append(
            actor=actor, action="release.created", object_type=OBJECT_TYPE, object_id=release.pk,
            payload={"candidate": release.candidate_digest, "suite_version": suite_version.digest,
                     "policy": f"{policy.name} v{policy.version}", "compression_run": run.pk},
        )
    return release


def release_start_evaluation(*, actor, release_id: int, expected_version: int | None = None) -> Release:
    """draft → evaluating: pin the policy, request both evaluations, and enqueue them after commit."""
    with transaction.atomic():
        release = _locked(release_id, expected_version)
        if release.status != ReleaseStatus.DRAFT:
            raise Conflict(f"Release {release.pk} is {release.status}, not draft.", code="invalid_transition")
        if actor.role == Role.ENGINEER and release.experiment.owner_id != actor.pk:
            raise PermissionDenied("Only the experiment's owner may start its evaluation.")
        config = evaluation_config(unsafe_labels=release.experiment.unsafe_labels)
        baseline = evaluation_run_request(actor=actor, artifact=release.experiment.base_artifact,
                                          suite_version=release.suite_version, config=config)
        candidate = evaluation_run_request(actor=actor, artifact=release.candidate,
                                           suite_version=release.suite_version, config=config)
        release.baseline_evaluation, release.candidate_evaluation = baseline, candidate
        release.failure_reason = ""
        _transition(
            release, actor=actor, to=ReleaseStatus.EVALUATING, action="release.evaluation_started",
            payload={"policy_pinned": release.policy_id, "baseline_evaluation": baseline.pk,
                     "candidate_evaluation": candidate.pk},
            fields=("baseline_evaluation", "candidate_evaluation", "failure_reason"),
        )
        transaction.on_commit(lambda: _enqueue_evaluation(release.pk, baseline.pk, candidate.pk))
    return release


def _enqueue_evaluation(release_id: int, baseline_id: int, candidate_id: int) -> None:
    from evaluations.tasks import execute_evaluation_run
    from governance.tasks import complete_release_evaluation

    # Immutable signatures: each link gets its ids, not the previous result. Chains need no result backend.
    chain(
        execute_evaluation_run.si(baseline_id),
        execute_evaluation_run.si(candidate_id),
        complete_release_evaluation.si(release_id),
    ).delay()


def release_complete_evaluation(*, release_id: int) -> Release:
    """evaluating → awaiting decision (or back to draft if an evaluation failed). Idempotent."""
    release = Release.objects.select_related("baseline_evaluation", "candidate_evaluation").get(pk=release_id)
    if release.status != ReleaseStatus.EVALUATING:
        return release
    runs = (release.baseline_evaluation, release.candidate_evaluation)
    failed = [r for r in runs if r.status != RunStatus.SUCCEEDED]
    comparison = None
    if not failed:
        comparison = comparison_compute(actor=None, baseline_run_id=runs[0].pk, candidate_run_id=runs[1].pk)
    with transaction.atomic():
        release = _locked(release_id, None)
        if release.status != ReleaseStatus.EVALUATING:
            return release
        if failed:
            release.failure_reason = "; ".join(
                f"evaluation {r.pk} {r.status}: {r.failure_reason or 'not finished'}" for r in failed
            )
            _transition(release, actor=None, to=ReleaseStatus.DRAFT, action="release.failed",
                        payload={"reason": release.failure_reason}, fields=("failure_reason",))
            return release
        zone, verdicts = policy_judge(release.policy, comparison.results)
        release.comparison, release.gate_zone, release.gate = comparison, zone, verdicts_as_json(verdicts)
        _transition(
            release, actor=None, to=ReleaseStatus.AWAITING_DECISION, action="release.gated",
            payload={"zone": zone, "gate_digest": digest(release.gate), "comparison": comparison.pk,
                     "flips": comparison.flip_count},
            fields=("comparison", "gate_zone", "gate"),
        )
    return release


def release_evidence(release: Release) -> dict:
    """Digests of what a decision-maker saw."""
    return {
        "candidate": release.candidate_digest,
        "baseline": release.experiment.base_artifact.digest,
        "suite_version": release.suite_version.digest,
        "policy": f"{release.policy.name} v{release.policy.version}",
        "comparison_results": digest(release.comparison.results) if release.comparison else None,
        "gate": digest(release.gate) if release.gate else None,
    }


def _check_decision(release: Release, actor, kind: str) -> None:
    if kind == DecisionKind.HALT:
        if actor.role not in (Role.OFFICER, Role.ADMIN):
            raise PermissionDenied("Only officers may halt a release.")
        if release.status in (*TERMINAL_RELEASE_STATUSES, ReleaseStatus.HALTED):
            raise Conflict(f"Release {release.pk} is {release.status}; it cannot be halted.", code="invalid_transition")
        return
    if actor.role != Role.OFFICER:
        raise PermissionDenied("Only governance officers approve or reject releases.")
    if release.status != ReleaseStatus.AWAITING_DECISION:
        raise Conflict(f"Release {release.pk} is {release.status}, not awaiting a decision.", code="invalid_transition")
    if actor.pk in (release.experiment.owner_id, release.compression_run.requested_by_id, release.created_by_id):
        raise PermissionDenied("Separation of duties: you requested or ran this experiment, so you cannot decide on it.",
                               code="separation_of_duties")
    if release.candidate.digest != release.candidate_digest:
        raise Conflict("The candidate artifact changed since evaluation.", code="candidate_changed")
    if kind == DecisionKind.APPROVE:
        if release.gate_zone == Zone.RED:
            raise Conflict("The gate is red: the release cannot be approved until the red zone is resolved.",
                           code="gate_red")
        if release.decisions.filter(kind=DecisionKind.APPROVE, actor=actor).exists():
            raise Conflict("You have already approved this release.", code="already_approved")


def release_decide(
    *, actor, release_id: int, kind: str, rationale: str, expected_version: int | None = None
) -> Release:
    """Approve, reject or halt. A refusal changes nothing but is itself recorded in the ledger."""
    if kind not in DecisionKind.values:
        raise ValidationFailed("Unknown decision.", details={"kind": [f"One of {DecisionKind.values}."]})
    if not rationale or not rationale.strip():
        raise ValidationFailed("A decision needs a rationale.", details={"rationale": ["May not be blank."]})
    try:
        with transaction.atomic():
            release = _locked(release_id, expected_version)
            _check_decision(release, actor, kind)
            _record_decision(release, actor, kind, rationale.strip())
    except (PermissionDenied, Conflict) as exc:
        ledger_record_refusal(actor=actor, object_type=OBJECT_TYPE, object_id=release_id, code=exc.code,
                              message=exc.message)
        raise
    return release


def _record_decision(release: Release, actor, kind: str, rationale: str) -> None:
    evidence = release_evidence(release)
    decision = Decision.objects.create(
        release=release, actor=actor, actor_role=actor.role, kind=kind, rationale=rationale, evidence=evidence,
        candidate_digest=release.candidate_digest, release_version=release.version,
    )
    payload = {"decision": decision.pk, "rationale": rationale, "evidence": evidence}
    if kind == DecisionKind.HALT:
        release.status_before_halt = release.status
        _transition(release, actor=actor, to=ReleaseStatus.HALTED, action="release.halted", payload=payload,
                    fields=("status_before_halt",))
    elif kind == DecisionKind.REJECT:
        _transition(release, actor=actor, to=ReleaseStatus.REJECTED, action="release.rejected", payload=payload)
    else:
        approvals = release.decisions.filter(kind=DecisionKind.APPROVE).count()
        required = APPROVALS_REQUIRED[release.experiment.risk_tier]
        payload.update({"approvals": approvals, "required": required})
        if approvals >= required:
            _transition(release, actor=actor, to=ReleaseStatus.APPROVED, action="release.approved", payload=payload)
        else:
            release.version += 1
            release.save(update_fields=["version", "updated_at"])
            ledger_append(actor=actor, action="release.approved", object_type=OBJECT_TYPE, object_id=release.pk,
                          payload={**payload, "from": release.status, "to": release.status,
                                   "version": release.version})
