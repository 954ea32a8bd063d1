"""Every error code the compression app raises or records (the `code` of the error model and a run's
`failure_code`), defined once: `CompressionErrorCode`, the registry the services use and the OpenAPI schema
lists (accounts.api.schema reads `<app>/error_codes.py`).

The engine cannot import app modules, so the codes it raises are `EngineErrorCode` in
`compression/engine/errors.py` (`EngineError` refuses any other). This registry extends them: its first
members carry the engine's values (a StrEnum with members cannot be subclassed, so they are repeated by
name, and tests/compression/test_error_codes.py keeps them equal), then the codes only the app uses.
A member is its string, so responses, ledger payloads and stored failure codes carry the same plain values
as before.
"""

from enum import StrEnum

from compression.engine.errors import EngineErrorCode

__all__ = ["CompressionErrorCode", "EngineErrorCode"]


class CompressionErrorCode(StrEnum):
    # The engine's codes (EngineErrorCode), raised by the engine or by a service for the same reason.
    MODEL_NOT_FOUND = EngineErrorCode.MODEL_NOT_FOUND.value  # 400 / run failure: no model where one was named
    UNSUPPORTED_ARCHITECTURE = EngineErrorCode.UNSUPPORTED_ARCHITECTURE.value  # 400: not a sequence classifier
    CORRUPT_ARTIFACT = EngineErrorCode.CORRUPT_ARTIFACT.value  # 400 / run failure: files do not match the digest
    INVALID_PARAMETER = EngineErrorCode.INVALID_PARAMETER.value  # 400: a method parameter of the wrong type or range
    UNKNOWN_METHOD = EngineErrorCode.UNKNOWN_METHOD.value  # 400: no such compression method
    INVALID_INPUT = EngineErrorCode.INVALID_INPUT.value  # run failure: malformed data handed to the engine
    EMPTY_INPUT = EngineErrorCode.EMPTY_INPUT.value  # run failure: a data field the method needs is empty
    METHOD_UNAVAILABLE = EngineErrorCode.METHOD_UNAVAILABLE.value  # 400: a method this environment cannot run
    CANCELLED = EngineErrorCode.CANCELLED.value  # run failure: the job was asked to stop
    STORAGE_ERROR = EngineErrorCode.STORAGE_ERROR.value  # run failure: the shared storage renamed an upload
    UNSUPPORTED_PLATFORM = EngineErrorCode.UNSUPPORTED_PLATFORM.value  # run failure: not the profile's CPU/engine
    NO_CHAT_TEMPLATE = EngineErrorCode.NO_CHAT_TEMPLATE.value  # 400: a chat model folder without a chat template
    # The app's own codes.
    EMPTY_SUITE = "empty_suite"  # 400: the data suite has no examples in a field the method needs
    RUN_FINISHED = "run_finished"  # 409: cancelling a run that already finished
    TIME_LIMIT = "time_limit"  # run failure: the worker's soft time limit was reached
    INTERNAL_ERROR = "internal_error"  # run failure: an unexpected exception (logged with its traceback)
    NOT_SIGNED = "not_signed"  # 404: no SafeShrink model-signing signature (an artifact it did not produce)
    INVALID_GENERATION = "invalid_generation"  # 400: a chat model's generation setting is malformed or over its limit
    # Model uploads (compression/services/uploads.py).
    UPLOAD_PATH_REFUSED = "upload_path_refused"  # 400: a manifest path with `..`, absolute, a link, or unsafe
    UPLOAD_FORMAT_REFUSED = "upload_format_refused"  # 400: a file type or artifact format the settings do not allow
    UPLOAD_TOO_LARGE = "upload_too_large"  # 400: declared files over the limit; 413: a chunk over the chunk limit
    TOO_MANY_UPLOADS = "too_many_uploads"  # 409: the engineer already holds MODEL_UPLOAD_MAX_OPEN open uploads
    UPLOAD_CLOSED = "upload_closed"  # 409: the upload is finished, aborted, expired or being finished
    UPLOAD_BUSY = "upload_busy"  # 409: another chunk of the same file is being received right now
    UPLOAD_INCOMPLETE = "upload_incomplete"  # 409: finishing before every byte of every file was received
    CHUNK_OFFSET = "chunk_offset"  # 409: a chunk not at the offset where its file's received bytes end
    CHUNK_DIGEST_MISMATCH = "chunk_digest_mismatch"  # 400: a chunk whose bytes do not hash to its sha256
    MANIFEST_MISMATCH = "manifest_mismatch"  # 400: the manifest does not match the declared files or received bytes
    UPLOAD_EXPIRED = "upload_expired"  # an abandoned upload removed by the sweep (its failure_code)
    # Worker pools (compression/services/workers.py).
    NO_WORKER_FOR_DEVICE = "no_worker_for_device"  # 400: no live worker serves the device's queue (or no queue runs it)
