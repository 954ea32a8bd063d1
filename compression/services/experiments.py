from django.db import transaction

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.engine.generation import generation_settings, generation_settings_problems
from compression.engine.kinds import CHAT_REFUSAL
from compression.error_codes import CompressionErrorCode
from compression.models import Experiment, ModelKind, RiskTier
from compression.selectors import artifacts_visible_to
from ledger.services import ledger_append


def experiment_create(
    *,
    actor,
    name: str,
    base_artifact_id: int,
    risk_tier: str = RiskTier.MEDIUM,
    unsafe_labels: list[str] | None = None,
    description: str = "",
    generation: dict | None = None,
) -> Experiment:
    """An experiment on a visible base artifact. A classifier's ``unsafe_labels`` are the classes whose
    probabilities sum to "unsafe"; a chat model's decision is always "refused" (``unsafe_labels`` may be
    omitted) and ``generation`` holds how it is served (system prompt, max new tokens, stop strings, decoding:
    compression.engine.generation), checked here and carried by every evaluation of the experiment."""
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers create experiments.")
    base = artifacts_visible_to(actor).filter(pk=base_artifact_id).first()  # another engineer's: "unknown"
    if base is None:
        raise ValidationFailed(
            "Unknown base artifact.", details={"base_artifact": [f"No artifact {base_artifact_id}."]}
        )
    chat = base.kind == ModelKind.CHAT
    if chat and not unsafe_labels:
        unsafe_labels = [CHAT_REFUSAL]
    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
    if generation is not None and not chat:
        raise ValidationFailed(
            "Generation settings are for chat models; the base model is a classifier.",
            code=CompressionErrorCode.INVALID_GENERATION,
            details={"generation": ["Only for a chat model (causal language model) base."]},
        )
    problems = generation_settings_problems(generation or {})
    if problems:
        raise ValidationFailed(
            "Invalid generation settings.", code=CompressionErrorCode.INVALID_GENERATION, details=problems
        )
    unknown = sorted(set(unsafe_labels) - set(base.labels))
    if unknown:
        raise ValidationFailed(
            f"Labels {unknown} are not classes of the base model {base.labels}.",
            details={"unsafe_labels": [f"Unknown label(s): {', '.join(unknown)}; the model has {base.labels}."]},
        )
    with transaction.atomic():
        experiment = Experiment.objects.create(
            name=name,
            description=description,
            owner=actor,
            risk_tier=risk_tier,
            base_artifact=base,
            unsafe_labels=list(unsafe_labels),
            generation=generation_settings(generation) if chat else {},
        )
        ledger_append(
            actor=actor,
            action="experiment.created",
            object_type="experiment",
            object_id=experiment.pk,
            payload={
                "name": name,
                "risk_tier": risk_tier,
                "base_artifact": base.digest,
                "unsafe_labels": list(unsafe_labels),
                **({"generation": experiment.generation} if chat else {}),
            },
        )
    return experiment
