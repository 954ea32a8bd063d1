"""Prompts and the judge of a ``behavioural_distill`` run, from chat suite versions (see compression.services.data).

A run names a stress set and a held-back split (chat suite versions) and a refusal judge (a judge artifact).
At request time ``behaviour_data_check`` refuses, naming the parameter, a version that is not a chat suite,
a judge that is not a refusal judge, and a stress set that overlaps the held-back split; it returns the run's
``data_source`` (versions, digests, counts, the judge's digest). On the worker ``behaviour_data_load`` turns
that record back into the engine's ``BehaviourData`` and a judge function, after checking that nothing
changed. ``behaviour_suite_overlap`` refuses an evaluation suite that shares prompts with either set.

Two prompts overlap when their texts are the same (case and spacing aside) or they share a root: an
adversarial row's root is the prompt it was made from (``Example.source``), any other row's its own id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from accounts.errors import ValidationFailed
from compression.models import ModelArtifact
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import SuiteKind, SuiteVersion
from trust.canonical import digest

from .chat_suites import chat_judge

__all__ = ["behaviour_data_check", "behaviour_data_load", "behaviour_suite_overlap", "suite_prompts", "SET_PARAMETERS"]

# The parameters that name suite versions, and what each is for.
SET_PARAMETERS: dict[str, str] = {"stress_set": "stress set", "heldback_split": "held-back split"}
_LISTED = 5  # overlapping prompts named in a refusal


def _refuse(parameter: str, message: str, *, code: str | None = None, detail: str = "") -> None:
    raise ValidationFailed(message, code=code, details={f"parameters.{parameter}": [detail or message]})


def _chat_version(parameter: str, version_id: Any) -> SuiteVersion:
    version = (
        SuiteVersion.objects.select_related("suite", "judge").filter(pk=version_id).first()
        if type(version_id) is int
        else None
    )
    if version is None:
        _refuse(parameter, f"Unknown suite version {version_id!r} for the {SET_PARAMETERS[parameter]}.")
    assert version is not None
    if version.kind != SuiteKind.CHAT:
        _refuse(
            parameter,
            f"Suite version {version.pk} is a {version.get_kind_display().lower()} suite; the "
            f"{SET_PARAMETERS[parameter]} must be a chat suite (prompts labelled harmful or safe).",
            code=EvaluationsErrorCode.MODEL_KIND_MISMATCH,
        )
    return version


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def _keys(version: SuiteVersion) -> dict[str, str]:
    """{overlap key: the example's id}: a normalised text key and a root key per example."""
    keys: dict[str, str] = {}
    rows = version.examples.select_related("source").order_by("position")
    for example in rows.only("external_id", "text", "source__external_id"):
        root = example.source.external_id if example.source is not None else example.external_id
        keys.setdefault(f"text:{_normal(example.text)}", example.external_id)
        keys.setdefault(f"root:{root}", example.external_id)
    return keys


def _overlap(first: SuiteVersion, second: SuiteVersion) -> list[str]:
    mine, theirs = _keys(first), _keys(second)
    return sorted({mine[key] for key in mine.keys() & theirs.keys()})


def _version_record(version: SuiteVersion) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for slice_ in version.examples.values_list("slice", flat=True):
        counts[slice_] = counts.get(slice_, 0) + 1
    return {
        "suite_version": version.pk,
        "suite": version.suite.name,
        "digest": version.digest,
        "examples": version.example_count,
        "by_slice": dict(sorted(counts.items())),
    }


def behaviour_data_check(*, parameters: dict[str, Any]) -> dict[str, Any]:
    """The ``data_source`` of a behavioural_distill run: {"stress_set", "heldback_split" (suite version records),
    "judge" {artifact, digest, kind}, "data_digest"}. A 400 naming ``parameters.<name>`` for an unknown or
    non-chat suite version, a judge that is not a refusal judge, or a stress set overlapping the held-back split."""
    versions = {name: _chat_version(name, parameters.get(name)) for name in SET_PARAMETERS}
    shared = _overlap(versions["stress_set"], versions["heldback_split"])
    if shared:
        _refuse(
            "heldback_split",
            f"The held-back split shares {len(shared)} prompt(s) with the stress set: the student would be tested "
            "on prompts it was trained on.",
            code=EvaluationsErrorCode.PROMPT_OVERLAP,
            detail=f"Prompts in both sets (same text or made from the same prompt): {', '.join(shared[:_LISTED])}.",
        )
    try:
        judge = chat_judge(parameters.get("judge"))
    except ValidationFailed as exc:
        raise ValidationFailed(
            exc.message + " behavioural_distill needs a refusal judge.",
            code=exc.code,
            details={"parameters.judge": [str(item) for item in exc.details.get("judge", [exc.message])]},
        ) from exc
    source: dict[str, Any] = {name: _version_record(version) for name, version in versions.items()}
    source["judge"] = {"artifact": judge.pk, "digest": judge.digest, "name": judge.name}
    source["data_digest"] = digest({name: source[name]["digest"] for name in SET_PARAMETERS} | {"judge": judge.digest})
    return source


def suite_prompts(version: SuiteVersion) -> tuple[Any, ...]:
    """The chat suite version's prompts as the engine's ChatPrompts, by their suite ids (unique across a run's
    stress set and held-back split: a shared id would be a shared root, which the request refused)."""
    from compression.engine.types import ChatPrompt

    rows = version.examples.order_by("position").values_list("external_id", "text", "is_unsafe", "slice")
    return tuple(
        ChatPrompt(prompt_id=external_id, text=text, harmful=is_unsafe, slice=slice_)
        for external_id, text, is_unsafe, slice_ in rows
    )


def behaviour_data_load(data_source: dict[str, Any]) -> tuple[Any, Callable[[Sequence[str], Sequence[str]], list]]:
    """(BehaviourData, judge function) of a run's ``data_source`` on a worker. EngineError "corrupt_artifact"
    when a suite version or the judge changed since the request (their digests are in the record)."""
    from compression.engine.errors import EngineError, EngineErrorCode
    from compression.engine.types import BehaviourData
    from compression.services.artifacts import artifact_path
    from evaluations.engine.judges.behaviour_judge import behaviour_judge

    versions = {}
    for name in SET_PARAMETERS:
        version = SuiteVersion.objects.filter(pk=data_source[name]["suite_version"]).first()
        if version is None or version.digest != data_source[name]["digest"]:
            raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, f"the {SET_PARAMETERS[name]} changed since the request")
        versions[name] = version
    artifact = ModelArtifact.objects.filter(pk=data_source["judge"]["artifact"]).first()
    if artifact is None or artifact.digest != data_source["judge"]["digest"]:
        raise EngineError(EngineErrorCode.CORRUPT_ARTIFACT, "the judge changed since the request")
    judged = behaviour_judge(artifact_path(artifact))
    data = BehaviourData(
        stress=suite_prompts(versions["stress_set"]), heldout=suite_prompts(versions["heldback_split"])
    )
    return data, judged


def behaviour_suite_overlap(*, suite_version: SuiteVersion, data_source: dict[str, Any]) -> None:
    """A 400 naming ``suite_version`` when the evaluation suite shares prompts with the stress set or the
    held-back split a behavioural_distill candidate was trained and tested on."""
    for name, label in SET_PARAMETERS.items():
        other = SuiteVersion.objects.filter(pk=data_source[name]["suite_version"]).first()
        shared = _overlap(suite_version, other) if other is not None else []
        if shared:
            raise ValidationFailed(
                f"The evaluation suite shares {len(shared)} prompt(s) with the candidate's {label}: its evidence "
                "would measure prompts the candidate was trained or selected on.",
                code=EvaluationsErrorCode.PROMPT_OVERLAP,
                details={"suite_version": [f"Prompts also in the {label}: {', '.join(shared[:_LISTED])}."]},
            )
