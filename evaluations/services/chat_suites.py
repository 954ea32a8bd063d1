"""Chat suites: prompts for a chat model, each labelled harmful (should be refused) or safe (should be
answered), judged by one judge artifact that is part of the suite version (and of its digest).

The one way in is ``chat_suite_import`` (the API's `POST /api/chat-suites/` and the `import_chat_suite`
command); it checks the judge and every row before anything is stored, then stores the version through
``suites.suite_version_import`` (same versioning, digest, COPY and ledger event as classifier suites).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from accounts.errors import ValidationFailed
from compression.engine.kinds import CHAT_BEHAVIOURS
from compression.models import ModelArtifact, ModelKind
from evaluations.chat_prompts import CHAT_SAFE_LABELS, CHAT_UNSAFE_LABELS
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Slice, SuiteVersion

from .suites import MAX_ERRORS_LISTED, ExampleRow, suite_content_digest, suite_version_import

# What a judge must decide for a chat suite: at least whether an answer is a refusal or a compliance
# (degeneration is the detector's, not the judge's).
JUDGE_REQUIRED_LABELS = frozenset(CHAT_BEHAVIOURS[:2])
# A prompt row's fields; "expected" is the plain-words alternative to "label" (refuse -> harmful, answer -> safe).
PROMPT_FIELDS = frozenset({"id", "prompt", "label", "expected", "slice", "subgroup", "tags", "reference", "source_id"})
EXPECTED = {"refuse": "harmful", "answer": "safe"}
CLASSIFIER_FIELDS = frozenset({"text"})
MAX_ROWS = 50_000


def chat_judge(judge_id: Any) -> ModelArtifact:
    """The judge artifact ``judge_id`` names; a 400 naming ``judge`` when it is unknown, not a judge, or
    does not decide refusal vs compliance."""
    judge = ModelArtifact.objects.filter(pk=judge_id).first() if type(judge_id) is int else None
    if judge is None:
        raise ValidationFailed(
            "Unknown judge.", code=EvaluationsErrorCode.INVALID_JUDGE, details={"judge": [f"No artifact {judge_id!r}."]}
        )
    if judge.kind != ModelKind.JUDGE:
        raise ValidationFailed(
            f"Artifact {judge.pk} is a {judge.get_kind_display().lower()}, not a judge.",
            code=EvaluationsErrorCode.INVALID_JUDGE,
            details={"judge": [f"Artifact {judge.pk} has kind {judge.kind!r}; a judge (kind 'judge') is needed."]},
        )
    if not set(judge.labels) >= JUDGE_REQUIRED_LABELS:
        raise ValidationFailed(
            "The judge's labels do not match a chat suite.",
            code=EvaluationsErrorCode.JUDGE_LABELS_MISMATCH,
            details={
                "judge": [
                    f"Judge {judge.pk} decides {sorted(judge.labels)}; a chat suite needs "
                    f"{sorted(JUDGE_REQUIRED_LABELS)}."
                ]
            },
        )
    return judge


def _text(row: Mapping, key: str, where: str, errors: list[str], *, required: bool = False) -> str:
    value = row.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors.append(f"{where}: {key} must be a string")
        return ""
    if required and not value.strip():
        errors.append(f"{where}: empty {key}")
    return value


def prompt_rows(rows: Any) -> list[ExampleRow]:
    """Rows of a chat suite (JSON objects) as ExampleRows; a 400 naming every bad row, and ``mixed_rows``
    when any row is a classifier row (text and label, no prompt)."""
    if not isinstance(rows, list) or not rows:
        raise ValidationFailed(
            "The suite has no rows.", code=EvaluationsErrorCode.EMPTY_SUITE, details={"rows": ["A non-empty list."]}
        )
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(
            f"{len(rows):,} rows, over the limit of {MAX_ROWS:,}.", details={"rows": [f"At most {MAX_ROWS:,} rows."]}
        )
    mixed = [
        f"row {i}: a classifier row (text, label); a chat suite takes prompt rows (prompt, label or expected)"
        for i, row in enumerate(rows)
        if isinstance(row, Mapping) and "prompt" not in row and CLASSIFIER_FIELDS & set(row)
    ]
    if mixed:
        raise ValidationFailed(
            f"{len(mixed)} classifier row(s) in a chat suite; nothing was imported.",
            code=EvaluationsErrorCode.MIXED_ROWS,
            details={"rows": mixed[:MAX_ERRORS_LISTED]},
        )
    errors: list[str] = []
    out: list[ExampleRow] = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, Mapping):
            errors.append(f"{where}: not a JSON object")
            continue
        unknown = sorted(set(row) - PROMPT_FIELDS)
        if unknown:
            errors.append(f"{where}: unknown field(s) {unknown} (expected some of {sorted(PROMPT_FIELDS)})")
            continue
        label = _text(row, "label", where, errors)
        expected = _text(row, "expected", where, errors)
        if expected and expected not in EXPECTED:
            errors.append(f"{where}: expected must be one of {sorted(EXPECTED)}, got {expected!r}")
        elif expected and label and EXPECTED[expected] != label:
            errors.append(f"{where}: expected {expected!r} contradicts label {label!r}")
        label = label or EXPECTED.get(expected, "")
        if label not in (*CHAT_UNSAFE_LABELS, *CHAT_SAFE_LABELS):
            errors.append(f"{where}: label must be 'harmful' or 'safe' (or expected 'refuse' / 'answer')")
        tags = row.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            errors.append(f"{where}: tags must be a list of strings")
            tags = []
        out.append(
            ExampleRow(
                external_id=_text(row, "id", where, errors, required=True),
                text=_text(row, "prompt", where, errors, required=True),
                label=label,
                slice=_text(row, "slice", where, errors) or Slice.ROUTINE,
                line=i,
                subgroup=_text(row, "subgroup", where, errors),
                tags=tuple(tags),
                source_id=_text(row, "source_id", where, errors),
                reference=_text(row, "reference", where, errors),
            )
        )
    if errors:
        raise ValidationFailed(
            f"{len(errors)} invalid row(s); nothing was imported.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"rows": errors[:MAX_ERRORS_LISTED]},
        )
    return out


def chat_suite_import(
    *, actor, suite_name: str, rows: Sequence[ExampleRow], judge: ModelArtifact, source: str = "", description: str = ""
) -> tuple[SuiteVersion, bool]:
    """(version, created): the next version of the chat suite ``suite_name`` (identical content and judge: the
    existing one, created False). ``rows`` from ``prompt_rows`` (or built by a command from the shared data);
    ``judge`` from ``chat_judge``. Ids, lengths, slices and source links are checked by ``suite_version_import``
    (all or nothing)."""
    content = suite_content_digest(rows, CHAT_UNSAFE_LABELS, judge=judge.digest)
    existed = SuiteVersion.objects.filter(suite__name=suite_name, digest=content).exists()
    version = suite_version_import(
        actor=actor,
        suite_name=suite_name,
        rows=rows,
        unsafe_labels=CHAT_UNSAFE_LABELS,
        safe_labels=CHAT_SAFE_LABELS,
        source=source,
        description=description,
        judge=judge,
    )
    return version, not existed
