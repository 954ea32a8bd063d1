"""``behavioural_distill`` runs: request-time checks, the worker's inputs, each finished round on the record.

At request time ``behaviour_run_check`` refuses, naming the parameter, a student that is not smaller than
its teacher, ``top_k`` over the vocabulary, an extra teacher that is unknown, not a chat model or (for
token-level KL) has another tokenizer, and whatever the suites and the judge fail
(``data.behaviour_data_check``: evaluations decides, it owns suites and judges). It returns the run's
``data_source``: teachers, judge, stress set and held-back split with their digests.

On the worker ``behaviour_run_inputs`` gives the engine its prompts, judge and teacher folders (each
verified against its digest), and ``compression_run_record_round`` stores every finished round on the run
with a ledger event in the same transaction, so a run cancelled mid-round keeps the rounds it finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction

from accounts.errors import ValidationFailed
from compression.error_codes import CompressionErrorCode
from compression.models import CompressionRun, ModelArtifact, ModelKind
from ledger.services import ledger_append

from .artifacts import artifact_verified
from .data import behaviour_data_check, behaviour_data_load

__all__ = [
    "BEHAVIOURAL_DISTILL",
    "VOCABULARY_FILES",
    "behaviour_run_check",
    "behaviour_run_inputs",
    "compression_run_record_round",
    "tokenizer_digests",
]

BEHAVIOURAL_DISTILL = "behavioural_distill"
OBJECT_TYPE = "compression_run"
# The files that define a tokenizer's vocabulary (tokenizer_config.json also holds the chat template, which
# may differ between models that share a vocabulary).
VOCABULARY_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spm.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)


def _refuse(parameter: str, message: str, *, code: str = CompressionErrorCode.INVALID_PARAMETER) -> None:
    raise ValidationFailed(message, code=code, details={f"parameters.{parameter}": [message]})


def tokenizer_digests(artifact: ModelArtifact) -> dict[str, str]:
    """{vocabulary file: sha256} from the artifact's manifest: two models share a tokenizer when these match."""
    return {entry["path"]: entry["sha256"] for entry in artifact.manifest if entry["path"] in VOCABULARY_FILES}


def _config_int(config: dict, key: str) -> int | None:
    value = config.get(key)
    return value if type(value) is int and value > 0 else None


def _check_student(parameters: dict[str, Any], config: dict) -> None:
    layers = _config_int(config, "num_hidden_layers")
    kept = parameters.get("layers_kept")
    if layers is not None and kept is not None and kept >= layers:
        _refuse(
            "layers_kept",
            f"parameter 'layers_kept' = {kept}: the teacher has {layers} decoder layers; the student must keep fewer.",
        )
    width, narrow = _config_int(config, "intermediate_size"), parameters.get("intermediate_size")
    if width is not None and narrow is not None and narrow > width:
        _refuse(
            "intermediate_size",
            f"parameter 'intermediate_size' = {narrow} exceeds the teacher's feed-forward width {width}.",
        )
    vocabulary, top_k = _config_int(config, "vocab_size"), parameters.get("top_k", 20)
    if vocabulary is not None and top_k > vocabulary:
        _refuse("top_k", f"parameter 'top_k' = {top_k} is larger than the vocabulary ({vocabulary} tokens).")


def _teacher_record(artifact: ModelArtifact, role: str) -> dict[str, Any]:
    return {"artifact": artifact.pk, "digest": artifact.digest, "name": artifact.name, "role": role}


def _extra_teachers(base: ModelArtifact, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    ids = parameters.get("extra_teachers") or []
    found = {a.pk: a for a in ModelArtifact.objects.filter(pk__in=ids)}
    records = []
    base_vocabulary = tokenizer_digests(base)
    for artifact_id in ids:
        artifact = found.get(artifact_id)
        if artifact is None:
            _refuse("extra_teachers", f"parameter 'extra_teachers': no artifact {artifact_id}.")
        assert artifact is not None
        if artifact.kind != ModelKind.CHAT:
            _refuse(
                "extra_teachers",
                f"parameter 'extra_teachers': artifact {artifact.pk} is a {artifact.get_kind_display().lower()}, "
                "not a chat model.",
                code=CompressionErrorCode.UNSUPPORTED_ARCHITECTURE,
            )
        if artifact.pk == base.pk:
            _refuse("extra_teachers", f"parameter 'extra_teachers': artifact {artifact.pk} is already the base.")
        vocabulary = tokenizer_digests(artifact)
        if parameters.get("level", "token") == "token" and (not vocabulary or vocabulary != base_vocabulary):
            _refuse(
                "extra_teachers",
                f"parameter 'extra_teachers': artifact {artifact.pk} has another tokenizer than the base, so their "
                "token distributions cannot be averaged for token-level KL. Use level 'sequence' (train on the "
                "accepted answers of every teacher) instead.",
            )
        records.append(_teacher_record(artifact, "extra"))
    return records


def behaviour_run_check(*, base: ModelArtifact, parameters: dict[str, Any], base_config: dict) -> dict[str, Any]:
    """The data_source of a behavioural_distill run on ``base`` (checked: see the module); a 400 naming
    ``parameters.<name>`` otherwise. Nothing is stored here."""
    _check_student(parameters, base_config)
    teachers = [_teacher_record(base, "base"), *_extra_teachers(base, parameters)]
    source = behaviour_data_check(parameters=parameters)
    return {"method": BEHAVIOURAL_DISTILL, "teachers": teachers, **source}


def behaviour_run_inputs(run: CompressionRun) -> dict[str, Any]:
    """The engine's inputs on the worker: {"behaviour_data", "judge", "teachers" (verified folders of the extra
    teachers), "verified" (their digests and file counts for the provenance)}."""
    data, judge = behaviour_data_load(run.data_source or {})
    folders: list[Path] = []
    verified = []
    for record in (run.data_source or {}).get("teachers", [])[1:]:
        artifact = ModelArtifact.objects.get(pk=record["artifact"])
        folder, check = artifact_verified(artifact)
        folders.append(folder)
        verified.append({"artifact": artifact.pk, "digest": check.digest, "files": check.files})
    return {"behaviour_data": data, "judge": judge, "teachers": tuple(folders), "verified": verified}


def compression_run_record_round(run_id: int, record: dict[str, Any]) -> None:
    """Store a finished round on the run (with its ledger event, in one transaction). A round already on the
    record (a redelivered run repeating it) keeps its first record."""
    with transaction.atomic():
        run = CompressionRun.objects.select_for_update().get(pk=run_id)
        if any(existing.get("round") == record.get("round") for existing in run.rounds):
            return
        run.rounds = [*run.rounds, record]
        run.save(update_fields=["rounds"])
        ledger_append(
            actor=None,
            action="run.round_finished",
            object_type=OBJECT_TYPE,
            object_id=run.pk,
            payload={
                key: record.get(key)
                for key in ("round", "data_digest", "training_examples", "accepted", "rejected", "dropped_prompts")
            }
            | {"heldout": record.get("heldout")},
        )


def behaviour_dependencies(run: CompressionRun, verified_teachers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The provenance's dependencies of a behavioural_distill run beside the base model: every extra teacher
    (verified on the worker), the judge, the stress set and the held-back split; every round's training-data
    digest is in the byproducts (``details.rounds``) and on the run (``rounds``)."""
    source = run.data_source or {}
    out = [
        {
            "name": "teacher",
            "uri": f"artifact:{item['artifact']}",
            "digest": {"sha256": item["digest"]},
            "annotations": {"verified": "sha256 of every stored file", "files": item["files"]},
        }
        for item in verified_teachers
    ]
    judge = source.get("judge", {})
    out.append(
        {
            "name": "judge",
            "uri": f"artifact:{judge.get('artifact')}",
            "digest": {"sha256": judge.get("digest", "")},
            "annotations": {"role": "refusal judge: accepts or rejects the teacher's answers, judges the student"},
        }
    )
    for name, role in (("stress_set", "stress set (training prompts)"), ("heldback_split", "held-back split")):
        record = source.get(name, {})
        out.append(
            {
                "name": name,
                "uri": f"suite-version:{record.get('suite_version')}",
                "digest": {"sha256": record.get("digest", "")},
                "annotations": {"role": role, "examples": record.get("examples"), "by_slice": record.get("by_slice")},
            }
        )
    return out
