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


# behavioural_distill: prompts and the judge come from chat suite versions and a judge artifact (evaluations).
# ``check(parameters=...)`` -> the run's data_source (400 naming the parameter); ``load(data_source)`` ->
# (BehaviourData, judge function) on the worker.
_behaviour_check: Callable[..., dict] | None = None
_behaviour_load: Callable[[dict], tuple[object, Callable]] | None = None


def register_behaviour_data_provider(*, check: Callable[..., dict], load: Callable[[dict], tuple[object, Callable]]):
    global _behaviour_check, _behaviour_load
    _behaviour_check, _behaviour_load = check, load


def behaviour_data_check(*, parameters: dict) -> dict:
    """The data_source of a behavioural_distill run (see evaluations.services.behaviour_data)."""
    if _behaviour_check is None:
        raise ValidationFailed("No suite provider is installed.", details={"parameters.stress_set": ["Unavailable."]})
    return _behaviour_check(parameters=parameters)


def behaviour_data_load(data_source: dict) -> tuple[object, Callable]:
    """(BehaviourData, judge function) of a behavioural_distill run's data_source, on a worker."""
    if _behaviour_load is None:
        raise RuntimeError("no behaviour data provider is installed")
    return _behaviour_load(data_source)
