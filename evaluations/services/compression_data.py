"""Turn a suite version into the engine's CompressionData (see compression.services.data)."""

from accounts.errors import ValidationFailed
from evaluations.models import SuiteVersion


def suite_compression_data(*, suite_version_id: int, labels: list[str], unsafe_labels: list[str]):
    """Routine examples train and calibrate; edge and adversarial ones are the stress set, except every
    second adversarial example, held back for the safety-distillation loop. An example's label is its
    model class when it names one, else the first unsafe (or first safe) class by its safety label."""
    from compression.engine.types import CompressionData

    version = SuiteVersion.objects.filter(pk=suite_version_id).first()
    if version is None:
        raise ValidationFailed(
            "Unknown suite version.", details={"data_suite_version": [f"No version {suite_version_id}."]}
        )
    index = {label: i for i, label in enumerate(labels)}
    unsafe_class = index[unsafe_labels[0]]
    safe_class = next(i for i, label in enumerate(labels) if label not in unsafe_labels)
    routine: list[tuple[str, int]] = []
    stress: list[tuple[str, int]] = []
    heldout: list[tuple[str, int]] = []
    adversarial_seen = 0
    for text, label, is_unsafe, slice_ in version.examples.order_by("position").values_list(
        "text", "label", "is_unsafe", "slice"
    ):
        row = (text, index.get(label, unsafe_class if is_unsafe else safe_class))
        if slice_ == "routine":
            routine.append(row)
        elif slice_ == "adversarial":
            (heldout if adversarial_seen % 2 else stress).append(row)
            adversarial_seen += 1
        else:
            stress.append(row)
    data = CompressionData(
        train=tuple(routine), calibration=tuple(routine), stress=tuple(stress), heldout_adversarial=tuple(heldout)
    )
    return data, {
        "suite_version": version.pk,
        "suite_digest": version.digest,
        "data_digest": data.digest(),
        "counts": data.counts(),
    }
