"""Importing suite versions: every row validated, all or nothing, identified by content digest."""

from dataclasses import dataclass, field

from django.db import transaction

from accounts.errors import ValidationFailed
from evaluations.models import Example, Slice, Suite, SuiteVersion
from ledger.canonical import digest
from ledger.services import ledger_append

MAX_ERRORS_LISTED = 50


@dataclass(frozen=True)
class ExampleRow:
    """One example as read from a file; `line` is its line number in that file, for error messages."""

    external_id: str
    text: str
    label: str
    slice: str
    line: int
    subgroup: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _validate(rows: list[ExampleRow], labels: set[str] | None) -> list[str]:
    errors: list[str] = []
    seen: dict[str, int] = {}
    slices = set(Slice.values)
    for row in rows:
        where = f"line {row.line}"
        if not row.external_id:
            errors.append(f"{where}: empty id")
        elif row.external_id in seen:
            errors.append(f"{where}: duplicate id {row.external_id!r} (first on line {seen[row.external_id]})")
        else:
            seen[row.external_id] = row.line
        if not row.text.strip():
            errors.append(f"{where}: empty text")
        if not row.label:
            errors.append(f"{where}: empty label")
        elif labels is not None and row.label not in labels:
            errors.append(f"{where}: unknown label {row.label!r} (expected one of {sorted(labels)})")
        if row.slice not in slices:
            errors.append(f"{where}: unknown slice {row.slice!r} (expected one of {sorted(slices)})")
    return errors


def suite_content_digest(rows: list[ExampleRow], unsafe_labels: list[str]) -> str:
    return digest({
        "unsafe_labels": sorted(unsafe_labels),
        "examples": [
            {"id": r.external_id, "text": r.text, "label": r.label, "slice": r.slice, "subgroup": r.subgroup,
             "tags": list(r.tags)}
            for r in rows
        ],
    })


def suite_version_import(
    *, actor, suite_name: str, rows: list[ExampleRow], unsafe_labels: list[str], safe_labels: list[str],
    source: str = "", description: str = "",
) -> SuiteVersion:
    """Create the next version of a suite from validated rows. Identical content returns the
    existing version; any bad row refuses the whole import and names the lines."""
    if not rows:
        raise ValidationFailed("The suite has no examples.", code="empty_suite", details={"rows": ["No rows."]})
    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
    errors = _validate(rows, set(unsafe_labels) | set(safe_labels))
    if errors:
        shown = errors[:MAX_ERRORS_LISTED]
        more = len(errors) - len(shown)
        raise ValidationFailed(
            f"{len(errors)} invalid row(s); nothing was imported.", code="invalid_rows",
            details={"rows": shown + ([f"... and {more} more"] if more else [])},
        )
    content_digest = suite_content_digest(rows, unsafe_labels)
    unsafe = set(unsafe_labels)
    with transaction.atomic():
        suite, _ = Suite.objects.get_or_create(name=suite_name, defaults={"description": description,
                                                                            "created_by": actor})
        suite = Suite.objects.select_for_update().get(pk=suite.pk)
        existing = suite.versions.filter(digest=content_digest).first()
        if existing:
            return existing
        number = (suite.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = SuiteVersion.objects.create(
            suite=suite, number=number, digest=content_digest, unsafe_labels=sorted(unsafe_labels),
            example_count=len(rows), source=source, created_by=actor,
        )
        Example.objects.bulk_create(
            [Example(suite_version=version, position=i, external_id=r.external_id, text=r.text, label=r.label,
                     is_unsafe=r.label in unsafe, slice=r.slice, tags=list(r.tags), subgroup=r.subgroup)
             for i, r in enumerate(rows)],
            batch_size=2000,
        )
        ledger_append(
            actor=actor, action="suite.imported", object_type="suite_version", object_id=version.pk,
            payload={"suite": suite_name, "number": number, "digest": content_digest, "examples": len(rows),
                     "source": source},
        )
    return version
