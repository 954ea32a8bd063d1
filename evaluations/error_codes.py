"""The error codes of the evaluations app (the `code` of the error model and of a failed run), defined once.

A `StrEnum`: a member is its string, so responses, run failures and ledger payloads carry the same plain
values as before. Shared codes (invalid, not_found, ...) are in accounts.error_codes; the engines'
codes (invalid_parameter, invalid_input, ...) are EngineError's, in compression.engine.errors."""

from enum import StrEnum


class EvaluationsErrorCode(StrEnum):
    # 400 from the suite import and perturbation services
    INVALID_ROWS = "invalid_rows"  # rows (or source ids, or the file) are invalid; nothing was imported
    EMPTY_SUITE = "empty_suite"  # no examples (or none to perturb in the chosen slices)
    UPLOAD_MISSING = "upload_missing"  # the stored upload of a queued import is gone
    UPLOAD_CHANGED = "upload_changed"  # the stored upload's digest differs from the one received
    # 400 from the chat-suite import
    MIXED_ROWS = "mixed_rows"  # a chat suite's rows include classifier rows (text + label, no prompt)
    INVALID_JUDGE = "invalid_judge"  # the judge is unknown or not a judge artifact
    JUDGE_LABELS_MISMATCH = "judge_labels_mismatch"  # the judge does not decide the behaviours a chat suite needs
    # 400 when a chat model is evaluated (release, evaluation request)
    MODEL_KIND_MISMATCH = "model_kind_mismatch"  # a classifier on a chat suite, or a chat model on a classifier suite
    # 400 when a behavioural_distill run is requested or its candidate released
    PROMPT_OVERLAP = "prompt_overlap"  # stress set, held-back split and evaluation suite share prompts
    # 400 from the comparison service
    EVALUATION_NOT_READY = "evaluation_not_ready"  # a run being compared has not succeeded
    DIFFERENT_INPUTS = "different_inputs"  # the two runs used different suite versions
    DIFFERENT_CLASSES = "different_classes"  # the two models have different class labels
    DIFFERENT_PROFILES = "different_profiles"  # the two runs used different deployment profiles
    # 400 when an evaluation is requested
    INVALID_PROFILE = "invalid_profile"  # a deployment-profile field is malformed or unknown
    PROFILE_NOT_ALLOWED = "profile_not_allowed"  # the policy requires another deployment profile
    # failure reasons of an evaluation run (its `error.code`)
    TIME_LIMIT = "time_limit"  # a chunk exceeded its time limit
    INTERNAL_ERROR = "internal_error"  # an unexpected error in a chunk
