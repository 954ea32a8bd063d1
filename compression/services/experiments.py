from django.db import transaction

from accounts.errors import PermissionDenied, ValidationFailed
from accounts.models import Role
from compression.models import Experiment, RiskTier
from compression.selectors import artifacts_visible_to
from ledger.services import ledger_append


def experiment_create(
    *,
    actor,
    name: str,
    base_artifact_id: int,
    risk_tier: str = RiskTier.MEDIUM,
    unsafe_labels: list[str],
    description: str = "",
) -> Experiment:
    if actor.role not in (Role.ENGINEER, Role.ADMIN):
        raise PermissionDenied("Only engineers create experiments.")
    base = artifacts_visible_to(actor).filter(pk=base_artifact_id).first()  # another engineer's: "unknown"
    if base is None:
        raise ValidationFailed(
            "Unknown base artifact.", details={"base_artifact": [f"No artifact {base_artifact_id}."]}
        )
    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
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
            },
        )
    return experiment
