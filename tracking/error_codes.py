"""Every error code the tracking app raises (the `code` of the error model), defined once.

A `StrEnum`: a member is its string, so responses and ledger payloads carry plain values. Bad input that needs no
code of its own (a missing field, a metric that is not a finite number, a step out of range) is the shared
`invalid` (accounts.error_codes) with `details` naming the field and item, e.g. `metrics[3].value`.
accounts.api.schema lists this registry in the OpenAPI error model."""

from enum import StrEnum


class TrackingErrorCode(StrEnum):
    UNKNOWN_METHOD = "unknown_method"  # 400: `known_method` is not a compression method SafeShrink knows
    PARAM_CHANGED = "param_changed"  # 400: a param already logged on the run with another value (MLflow refuses it)
    RUN_FINISHED = "run_finished"  # 409: the run has ended; its record is closed to logging and finishing again
    INVALID_ENVELOPE = "invalid_envelope"  # 400: not a DSSE envelope carrying an in-toto Statement
    INVALID_KEY = "invalid_key"  # 400: not an Ed25519 public key (PEM or base64 of the 32 raw bytes)
    KEY_REGISTERED = "key_registered"  # 409: this public key is registered by another user
    EXPERIMENT_EXISTS = "experiment_exists"  # 400: the engineer already has an experiment of that name (MLflow)
    MODEL_EXISTS = "registered_model_exists"  # 400: the engineer already has a registered model of that name
    ARTIFACT_PATH = "invalid_artifact_path"  # 400: an artifact path with `..`, absolute, or through a link
    ARTIFACT_MISMATCH = "artifact_mismatch"  # 409: a run's logged files no longer match the digests recorded at upload
    ENDPOINT_NOT_FOUND = "endpoint_not_found"  # 404: an MLflow route SafeShrink does not serve
