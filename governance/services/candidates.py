"""How a release comes to be, from either kind of run: `release_record_created` (the row and its `release.created`
event, used by `releases.release_create` for SafeShrink's own runs) and, here, releases whose candidate was made
outside SafeShrink: an engineer's external run (tracking.ExternalRun).

Everything such a run says about itself (method, parameters, metrics, provenance) is **reported**, never verified.
So a release from an external run takes only the run's output artifact from it: the baseline is the experiment's
base artifact, exactly as for SafeShrink's own runs, SafeShrink evaluates both itself (the same
`release_start_evaluation` path), and the gate judges only SafeShrink's comparison. The run's reported metrics never
reach the gate; the release, the dossier and the bundle show them labelled as reported.

Why the baseline is always the experiment's base artifact, and not whatever the run names as its input: every
release of an experiment is judged against the same reference model, whose digest the decision evidence, the
bundle and the page already carry (`release_evidence`). The run's reported inputs are shown beside it; if the base
artifact is not among them the ledger event says so (`baseline_among_inputs`)."""

from django.db import transaction

from accounts.errors import Conflict, PermissionDenied, ValidationFailed
from accounts.models import Role
from evaluations.models import SuiteVersion
from evaluations.services.chat_config import chat_models_check
from governance.error_codes import GovernanceErrorCode
from governance.models import Release, ThresholdPolicy
from governance.selectors import candidate_warnings
from ledger.services import ledger_append, ledger_record_refusal
from tracking.models import ExternalRun, ExternalRunStatus
from tracking.selectors import external_runs_visible_to

from .state import OBJECT_TYPE


def release_create_from_external_run(*, actor, external_run_id: int, suite_version_id: int, policy_id: int) -> Release:
    """A draft release whose candidate is a finished external run's output artifact. Who before what: only an
    engineer (or admin) who owns the run's experiment; a run they cannot see is unknown (400 naming
    `external_run`, its existence does not leak); then the run must be finished with an output artifact (400 with
    its own code); then the suite version and policy must exist. A refusal stores nothing."""
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers propose releases.")
    run = (
        external_runs_visible_to(actor)
        .select_related("experiment__base_artifact", "output_artifact")
        .filter(pk=external_run_id)
        .first()
    )
    if run is None:
        raise ValidationFailed(
            "Unknown external run.", details={"external_run": [f"No external run {external_run_id}."]}
        )
    if actor.role == Role.ENGINEER and run.experiment.owner_id != actor.pk:
        raise PermissionDenied("Only the experiment's owner may propose its release.")
    if run.status != ExternalRunStatus.FINISHED:
        raise ValidationFailed(
            f"External run {run.pk} is {run.status}; only a finished run's output can be released.",
            code=GovernanceErrorCode.EXTERNAL_RUN_NOT_FINISHED,
            details={"external_run": [f"Status is {run.status}; finish the run first."]},
        )
    artifact = run.output_artifact
    if artifact is None:
        raise ValidationFailed(
            f"External run {run.pk} names no output artifact: there is no candidate to evaluate.",
            code=GovernanceErrorCode.EXTERNAL_RUN_NO_OUTPUT,
            details={"external_run": ["The run has no output artifact; upload it and name it when finishing."]},
        )
    suite_version, policy = suite_and_policy(suite_version_id, policy_id)
    baseline = run.experiment.base_artifact
    return release_record_created(
        actor=actor,
        candidate_source={"external_run": run},
        experiment=run.experiment,
        candidate=artifact,
        suite_version=suite_version,
        policy=policy,
        payload={
            "source": ExternalRun.SOURCE,
            "verification": ExternalRun.VERIFICATION,
            "external_run": run.pk,
            "run_uuid": run.run_uuid,
            "contents_digest": run.contents_digest,
            "baseline": baseline.digest,
            "baseline_among_inputs": run.input_artifacts.filter(pk=baseline.pk).exists(),
        },
    )


def suite_and_policy(suite_version_id: int, policy_id: int) -> tuple[SuiteVersion, ThresholdPolicy]:
    """The suite version and policy a new release names; 400 naming the field when either is unknown."""
    suite_version = SuiteVersion.objects.filter(pk=suite_version_id).first()
    if suite_version is None:
        raise ValidationFailed(
            "Unknown suite version.", details={"suite_version": [f"No suite version {suite_version_id}."]}
        )
    policy = ThresholdPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        raise ValidationFailed("Unknown threshold policy.", details={"policy": [f"No policy {policy_id}."]})
    return suite_version, policy


def release_record_created(
    *, actor, candidate_source: dict, experiment, candidate, suite_version, policy, payload: dict
) -> Release:
    """The draft release and its `release.created` event, in one transaction: the one way a release comes to be,
    whichever run (`candidate_source`: {"compression_run": run} or {"external_run": run}) made its candidate.

    Refused, storing nothing:
    - 400 when the models do not fit the suite (a chat model on a classifier suite, no chat template...);
    - 400 `training_data_overlap` naming `suite_version` when the suite shares examples with the suite version the
      compression run trained or calibrated on and the policy forbids it (`forbid_training_data_overlap`); when
      the policy allows it the release is made, and the warnings (`selectors.candidate_warnings`) are recorded
      in the event's `warnings` (present only when there are some) and shown with the release;
    - 409 `release_exists` naming the earlier release (message and `details.release`) when a release of the same
      run on the same suite version exists, whatever its status or policy, and recorded as `access.denied` on
      that release. There is no override: a rejected or rolled-back release stays the answer for that candidate
      on that evidence (proposing it again, under a laxer policy or to another officer, would be asking until
      someone says yes); a release whose evaluation failed goes back to draft and is evaluated again, a halted
      one is resumed. New evidence means a new suite version, a new candidate a new run.

    Concurrent proposals of the same run are serialised by a lock on the run's row, taken before the check (every
    release is made here); SQLite serialises write transactions anyway. A lock, not a unique constraint: releases
    proposed twice before this rule existed stay as they are (they cannot be deleted) and `migrate` must not fail
    on them."""
    chat_models_check(
        suite_version=suite_version, models={"baseline": experiment.base_artifact, "candidate": candidate}
    )
    warnings = candidate_warnings(compression_run=candidate_source.get("compression_run"), suite_version=suite_version)
    if warnings and policy.forbid_training_data_overlap:
        raise ValidationFailed(
            f"Policy {policy} forbids evaluating a candidate on the data its run trained or calibrated on. "
            + " ".join(w["message"] for w in warnings),
            code=GovernanceErrorCode.TRAINING_DATA_OVERLAP,
            details={"suite_version": [w["message"] for w in warnings]},
        )
    ((source_field, run),) = candidate_source.items()
    existing = None
    with transaction.atomic():
        type(run).objects.select_for_update().filter(pk=run.pk).values_list("pk", flat=True).first()
        existing = Release.objects.filter(**{source_field: run, "suite_version": suite_version}).order_by("pk").first()
        if existing is None:
            release = Release.objects.create(
                experiment=experiment,
                candidate=candidate,
                candidate_digest=candidate.digest,
                suite_version=suite_version,
                policy=policy,
                created_by=actor,
                **candidate_source,
            )
            ledger_append(
                actor=actor,
                action="release.created",
                object_type=OBJECT_TYPE,
                object_id=release.pk,
                payload={
                    "candidate": release.candidate_digest,
                    "suite_version": suite_version.digest,
                    "policy": f"{policy.name} v{policy.version}",
                    **payload,
                    **({"warnings": warnings} if warnings else {}),
                },
            )
    if existing is not None:
        refusal = _already_proposed(existing, source_field, run, suite_version)
        ledger_record_refusal(
            actor=actor, object_type=OBJECT_TYPE, object_id=existing.pk, code=refusal.code, message=refusal.message
        )
        raise refusal
    return release


def _already_proposed(existing: Release, source_field: str, run, suite_version) -> Conflict:
    what = "compression run" if source_field == "compression_run" else "external run"
    return Conflict(
        f"Release #{existing.pk} ({existing.get_status_display().lower()}) already proposes the candidate of "
        f"{what} {run.pk} on suite version {suite_version.pk}: a run's candidate is proposed once per suite version.",
        code=GovernanceErrorCode.RELEASE_EXISTS,
        details={"suite_version": [f"Already proposed by release {existing.pk}."], "release": [existing.pk]},
    )
