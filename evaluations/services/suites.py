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
    source_id: str = ""


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


def _link_sources(version: SuiteVersion, rows: list[ExampleRow]) -> None:
    """Point each perturbed example at the example it was derived from (same version)."""
    linked = [r for r in rows if r.source_id]
    if not linked:
        return
    ids = dict(Example.objects.filter(suite_version=version).values_list("external_id", "pk"))
    missing = sorted({r.source_id for r in linked} - set(ids))
    if missing:
        raise ValidationFailed(f"{len(missing)} source id(s) name no example in the suite.", code="invalid_rows",
                               details={"rows": [f"unknown source id {m!r}" for m in missing[:MAX_ERRORS_LISTED]]})
    examples = list(Example.objects.filter(suite_version=version, external_id__in=[r.external_id for r in linked]))
    source_of = {r.external_id: ids[r.source_id] for r in linked}
    for example in examples:
        example.source_id = source_of[example.external_id]
    Example.objects.bulk_update(examples, ["source"], batch_size=2000)


def suite_content_digest(rows: list[ExampleRow], unsafe_labels: list[str]) -> str:
    return digest({
        "unsafe_labels": sorted(unsafe_labels),
        "examples": [
            {"id": r.external_id, "text": r.text, "label": r.label, "slice": r.slice, "subgroup": r.subgroup,
             "tags": list(r.tags), **({"source": r.source_id} if r.source_id else {})}
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
        _link_sources(version, rows)
        ledger_append(
            actor=actor, action="suite.imported", object_type="suite_version", object_id=version.pk,
            payload={"suite": suite_name, "number": number, "digest": content_digest, "examples": len(rows),
                     "source": source},
        )
    return version


def suite_import_file(
    *, actor, suite_name: str, data: bytes, fmt: str, mapping: dict | None, unsafe_labels: list[str],
    safe_labels: list[str], default_slice: str = "routine", source: str = "",
) -> SuiteVersion:
    """Parse an uploaded CSV or JSONL file with a column mapping and import it as the next version.
    Every problem is reported with its line number, and nothing is imported unless every row is valid."""
    from django.conf import settings

    from evaluations.engine.tabular import SuiteFileError, parse_suite_file

    try:
        parsed = parse_suite_file(data, fmt=fmt, mapping=mapping, labels=set(unsafe_labels) | set(safe_labels),
                                  default_slice=default_slice, max_bytes=settings.SAFESHRINK["MAX_UPLOAD_BYTES"])
    except SuiteFileError as exc:
        raise ValidationFailed(f"{len(exc.errors)} problem(s) in the file; nothing was imported.",
                               code="invalid_rows", details={"file": exc.errors}) from exc
    rows = [ExampleRow(external_id=r.external_id, text=r.text, label=r.label, slice=r.slice, line=r.line,
                       subgroup=r.subgroup, tags=tuple(r.tags), source_id=r.source_id or "") for r in parsed.rows]
    return suite_version_import(actor=actor, suite_name=suite_name, rows=rows, unsafe_labels=unsafe_labels,
                                safe_labels=safe_labels, source=source or f"uploaded {fmt} file ({len(data):,} bytes)")


def suite_derive_perturbed(
    *, actor, suite_version_id: int, kinds: list[str], seed: int = 0, per_example: int = 1,
    from_slices: tuple[str, ...] = ("routine",), limit: int | None = None,
) -> SuiteVersion:
    """The next version of the same suite: every example, plus seeded adversarial variants
    (character swaps, leetspeak, spaces, homoglyphs, casing) of the chosen slices, each linked
    to its source. The recipe (kinds, seed, version) is recorded in the version's source."""
    from compression.engine.errors import EngineError
    from evaluations.engine.perturb import perturb

    base = SuiteVersion.objects.select_related("suite").filter(pk=suite_version_id).first()
    if base is None:
        raise ValidationFailed("Unknown suite version.", details={"suite_version": [f"No version {suite_version_id}."]})
    examples = list(base.examples.order_by("position").select_related("source"))
    rows = [ExampleRow(external_id=e.external_id, text=e.text, label=e.label, slice=e.slice, line=e.position + 1,
                       subgroup=e.subgroup, tags=tuple(e.tags), source_id=e.source.external_id if e.source else "")
            for e in examples]
    sources = [r for r in rows if r.slice in from_slices and not r.source_id][:limit]
    if not sources:
        raise ValidationFailed("No examples to perturb in those slices.", code="empty_suite",
                               details={"from_slices": [f"No examples in {list(from_slices)}."]})
    try:
        variants = perturb(sources, kinds, seed, per_example)
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"kinds": [exc.message]}) from exc
    by_id = {r.external_id: r for r in sources}
    derived = [ExampleRow(external_id=v.variant_id, text=v.text, label=by_id[v.source_id].label, slice="adversarial",
                          line=by_id[v.source_id].line, subgroup=by_id[v.source_id].subgroup,
                          tags=(*by_id[v.source_id].tags, "perturbed", v.kind), source_id=v.source_id)
               for v in variants]
    recipe = variants.recipe
    return suite_version_import(
        actor=actor, suite_name=base.suite.name, rows=rows + derived, unsafe_labels=base.unsafe_labels,
        safe_labels=sorted({e.label for e in examples} - set(base.unsafe_labels)),
        source=f"{base.source}; + {len(derived)} perturbed variants of {len(sources)} {'/'.join(from_slices)} "
               f"examples (kinds {','.join(recipe.kinds)}, seed {recipe.seed}, per example {recipe.per_example}, "
               f"recipe v{recipe.version})",
    )
