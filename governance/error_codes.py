"""Every error code governance raises (the `code` of the error model), defined once.

A `StrEnum`: a member is its string, so responses, ledger refusals and digests carry the same plain values as
before. accounts.api.schema lists every app's registry in the OpenAPI error model."""

from enum import StrEnum


class GovernanceErrorCode(StrEnum):
    STALE_VERSION = "stale_version"  # 409: the release changed since the caller loaded it (expected_version)
    INVALID_TRANSITION = "invalid_transition"  # 409: the release's (or escalation's, review's) state forbids this
    RUN_NOT_SUCCEEDED = "run_not_succeeded"  # 400: only a succeeded compression run can be released
    GATE_RED = "gate_red"  # 409: a red gate blocks approval until its escalation is resolved
    ALREADY_APPROVED = "already_approved"  # 409: this officer's approval is already counted
    CANDIDATE_CHANGED = "candidate_changed"  # 409: the candidate's files no longer hash to the evaluated digest
    TOO_EARLY = "too_early"  # 409: the next rollout stage has not started yet
    OUTSIDE_AUTHORITY = "outside_authority"  # 403: no authority for the release's risk tier at this level
    SEPARATION_OF_DUTIES = "separation_of_duties"  # 403: whoever requested or ran the experiment cannot decide
    ALREADY_SUBMITTED = "already_submitted"  # 409: the review task was already submitted
    EXTERNAL_RUN_NOT_FINISHED = "external_run_not_finished"  # 400: only a finished external run can be released
    EXTERNAL_RUN_NO_OUTPUT = "external_run_no_output"  # 400: the external run names no output artifact to evaluate
    RELEASE_EXISTS = "release_exists"  # 409: a release already proposes this run's candidate on this suite version
    TRAINING_DATA_OVERLAP = "training_data_overlap"  # 400: the policy forbids evaluating on the run's training data
