"""Deployment profiles of evaluations: the defaults of this installation, a requested profile checked field by
field, a policy's required profile, and the prediction settings a run's stored configuration stands for."""

from typing import Any

from accounts.errors import ValidationFailed
from compression.engine.cpu import cpu_instruction_sets
from compression.services.provenance import torch_settings
from evaluations.engine.profile import (
    DeploymentProfile,
    default_quantized_engine,
    profile_from_dict,
    profile_problems,
    requirement_conflicts,
)
from evaluations.error_codes import EvaluationsErrorCode

DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH = 32, 64
# The stability pass (a second pass with the batches recomposed) runs by default with this seed.
DEFAULT_STABILITY_SEED = 0


def default_profile() -> DeploymentProfile:
    """This installation's profile: batch 32 in suite order, right padding, 64 tokens, the configured device
    and threads, and this machine's CPU instruction sets and torch's default int8 engine for it."""
    device, threads = torch_settings()
    return DeploymentProfile(
        batch_size=DEFAULT_BATCH_SIZE,
        max_length=DEFAULT_MAX_LENGTH,
        device=device,
        threads=threads,
        isa=tuple(cpu_instruction_sets()) if device == "cpu" else (),
        quantized_engine=default_quantized_engine() if device == "cpu" else None,
    )


def _prefixed(problems: dict[str, list[str]]) -> dict[str, list[str]]:
    return {f"profile.{key}" if key != "profile" else key: value for key, value in problems.items()}


def deployment_profile(requested: dict[str, Any] | None = None, *, required: dict[str, Any] | None = None):
    """The profile an evaluation runs under: the defaults, then the policy's required fields, then the
    requested ones. A malformed request, or one that breaks the policy's requirement, is refused (400,
    naming each field)."""
    requested = {} if requested is None else requested
    problems = profile_problems(requested)
    if problems:
        raise ValidationFailed(
            "The deployment profile is invalid.", code=EvaluationsErrorCode.INVALID_PROFILE, details=_prefixed(problems)
        )
    required = dict(required or {})
    base = profile_from_dict({k: v for k, v in required.items() if k != "isa"}, defaults=default_profile())
    profile = profile_from_dict(requested, defaults=base)
    conflicts = requirement_conflicts(required, profile)
    if conflicts:
        raise ValidationFailed(
            "The policy requires another deployment profile than the one asked for.",
            code=EvaluationsErrorCode.PROFILE_NOT_ALLOWED,
            details=_prefixed(conflicts),
        )
    return profile


def required_profile_problems(required: Any) -> dict[str, list[str]]:
    """A policy's required profile, checked like a requested one (per field, prefixed)."""
    return _prefixed(profile_problems(required))


def config_profile(config: dict) -> dict:
    """The profile a stored run configuration declares (configurations before profiles kept these keys
    at the top level and always batched in suite order)."""
    if "profile" in config:
        return config["profile"]
    return {
        "batch_size": config.get("batch_size", DEFAULT_BATCH_SIZE),
        "batching": "fixed",
        "padding_side": "right",
        "max_length": config.get("max_length", DEFAULT_MAX_LENGTH),
        "threads": config.get("threads"),
        "device": config.get("device", "cpu"),
        "isa": [],
        "quantized_engine": None,
    }


def prediction_settings(config: dict) -> dict:
    """Keyword arguments of evaluations.engine.predict.PredictionConfig for a stored run configuration."""
    return {
        **profile_settings(config),
        "unsafe_labels": tuple(config["unsafe_labels"]),
        "decision_threshold": config["decision_threshold"],
        "recompose_seed": config.get("stability_seed"),
    }


def profile_settings(config: dict) -> dict:
    """The PredictionConfig keyword arguments of the deployment profile alone (what runtime depends on)."""
    profile = config_profile(config)
    return {
        "batch_size": profile["batch_size"],
        "batching": profile["batching"],
        "padding_side": profile["padding_side"],
        "max_length": profile["max_length"],
        "device": profile["device"],
        "threads": profile["threads"],
        "quantized_engine": profile["quantized_engine"],
    }
