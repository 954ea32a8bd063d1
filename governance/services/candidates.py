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

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from evaluations.models import SuiteVersion
from evaluations.services.chat_config import chat_models_check
from governance.error_codes import GovernanceErrorCode
from governance.models import Release, ThresholdPolicy
from ledger.services import ledger_append
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
    A 400 first when the models do not fit the suite (a chat model on a classifier suite, no chat template...)."""
    chat_models_check(
        suite_version=suite_version, models={"baseline": experiment.base_artifact, "candidate": candidate}
    )
    with transaction.atomic():
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
            },
        )
    return release
