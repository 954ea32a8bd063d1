"""Calibration and training data for compression runs comes from a registered suite version.

Suites live in the evaluations app, above this one, so the dependency is inverted: evaluations
registers a provider here when Django starts (EvaluationsConfig.ready)."""

from collections.abc import Callable

from accounts.errors import ValidationFailed

Provider = Callable[..., tuple[object, dict]]
_provider: Provider | None = None


def register_compression_data_provider(provider: Provider) -> None:
    global _provider
    _provider = provider


def compression_data(*, suite_version_id: int, labels: list[str], unsafe_labels: list[str]):
    """(CompressionData, source description {suite_version, digest, counts}) for a suite version."""
    if _provider is None:
        raise ValidationFailed("No suite provider is installed.", details={"data_suite_version": ["Unavailable."]})
    return _provider(suite_version_id=suite_version_id, labels=labels, unsafe_labels=unsafe_labels)
