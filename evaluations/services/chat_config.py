"""Request-time checks and configuration of chat-model evaluations (web process: no torch).

A chat suite evaluates chat models only, a classifier suite classifiers only; a chat model needs a chat
template, and the candidate the baseline's (identical inputs); the generation settings (system prompt, max
new tokens, stop strings, greedy decoding) are checked field by field. Each refusal is a 400 naming the field,
before anything is stored or run. ``chat_evaluation_overrides`` gives what a chat evaluation's configuration
adds (so what its digest covers): ``kind``, ``generation`` (with the chat template's digest) and ``judge``.
"""

from __future__ import annotations

from accounts.errors import ValidationFailed
from compression.engine.generation import generation_settings, generation_settings_problems
from compression.error_codes import CompressionErrorCode
from compression.models import ModelArtifact, ModelKind
from evaluations.engine.judges.degeneration import DETECTOR_VERSION
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import SuiteKind, SuiteVersion

from .chat_runs import CHAT_KIND


def chat_models_check(*, suite_version: SuiteVersion, models: dict[str, ModelArtifact]) -> None:
    """400 when a model's kind does not fit the suite's, or a chat model has no chat template, or the
    candidate's template differs from the baseline's. ``models``: field name -> artifact, baseline first."""
    chat_suite = suite_version.kind == SuiteKind.CHAT
    for field, artifact in models.items():
        if (artifact.kind == ModelKind.CHAT) != chat_suite:
            raise ValidationFailed(
                f"{suite_version} is a {suite_version.get_kind_display().lower()} suite; artifact {artifact.pk} is a "
                f"{artifact.get_kind_display().lower()}.",
                code=EvaluationsErrorCode.MODEL_KIND_MISMATCH,
                details={
                    "suite_version": [
                        f"A {suite_version.kind} suite evaluates "
                        f"{'chat models' if chat_suite else 'classifiers'}; {field} is a {artifact.kind}."
                    ]
                },
            )
        if chat_suite and not artifact.chat_template_digest:
            raise ValidationFailed(
                f"Artifact {artifact.pk} has no chat template, so its prompts cannot be rendered.",
                code=CompressionErrorCode.NO_CHAT_TEMPLATE,
                details={
                    field: ["The model folder has no chat template (tokenizer_config.json or chat_template.jinja)."]
                },
            )
    digests = {artifact.chat_template_digest for artifact in models.values()}
    if chat_suite and len(digests) > 1:
        raise ValidationFailed(
            "The models' chat templates differ: their prompts would not be identical.",
            code=CompressionErrorCode.NO_CHAT_TEMPLATE,
            details={list(models)[-1]: ["Its chat template differs from the baseline's."]},
        )


def checked_generation(requested: dict | None) -> dict:
    """The generation settings, checked (a 400 naming ``generation.<field>``), with the defaults filled in."""
    problems = generation_settings_problems(requested or {})
    if problems:
        raise ValidationFailed(
            "Invalid generation settings.", code=CompressionErrorCode.INVALID_GENERATION, details=problems
        )
    return generation_settings(requested)


def chat_evaluation_overrides(
    *, suite_version: SuiteVersion, baseline: ModelArtifact, candidate: ModelArtifact, generation: dict | None
) -> dict:
    """{} for a classifier suite; for a chat suite the configuration's kind, generation settings (with the
    baseline's chat template digest) and judge (its digest and name). Checks the models first."""
    chat_models_check(suite_version=suite_version, models={"baseline": baseline, "candidate": candidate})
    if suite_version.kind != SuiteKind.CHAT:
        return {}
    judge = suite_version.judge
    assert judge is not None  # a chat suite version always has its judge
    return {
        "kind": CHAT_KIND,
        "generation": {**checked_generation(generation), "chat_template_digest": baseline.chat_template_digest},
        # the judge artifact, and the version of the degeneration detector (its rules and word list)
        "judge": {
            "artifact": judge.digest,
            "name": judge.name,
            "labels": list(judge.labels),
            "degeneration": DETECTOR_VERSION,
        },
    }
