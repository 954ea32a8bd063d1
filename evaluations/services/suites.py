"""Importing suite versions: every row validated, all or nothing, identified by content digest.

`suite_version_import` stores a version in one transaction (examples by COPY on PostgreSQL);
`suite_import_file` parses a CSV or JSONL file in this process; `suite_derive_perturbed` derives the
next version with adversarial variants. Uploads imported on a worker live in `suite_imports`.
"""

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from accounts.errors import ValidationFailed
from evaluations.engine.tabular import MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_SUBGROUP_CHARS, MAX_TEXT_CHARS, ParsedRow
from evaluations.error_codes import EvaluationsErrorCode
from evaluations.models import Example, Slice, Suite, SuiteKind, SuiteVersion
from ledger.canonical import digest
from ledger.services import ledger_append

MAX_ERRORS_LISTED = 50
PROGRESS_EVERY = 20_000  # rows between progress updates of a SuiteImport
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text and jsonb cannot hold them


def storable_text(text: str) -> str:
    """A model's output as PostgreSQL can store it: a NUL character or an unpaired surrogate (which a model may
    generate) becomes U+FFFD. A suite's own text with one is refused instead (suite_version_import)."""
    return _UNSTORABLE.sub("\ufffd", text)


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
    reference: str = ""  # chat suites: a harmless reference answer (the perplexity text)


def _validate(rows: Sequence[ExampleRow], labels: set[str] | None) -> list[str]:
    errors: list[str] = []
    seen: dict[str, int] = {}
    slices = set(Slice.values)
    limits = (
        ("id", MAX_ID_CHARS),
        ("text", MAX_TEXT_CHARS),
        ("label", MAX_LABEL_CHARS),
        ("subgroup", MAX_SUBGROUP_CHARS),
        ("source_id", MAX_ID_CHARS),
        ("reference", MAX_TEXT_CHARS),
    )
    for row in rows:
        where = f"line {row.line}"
        refused = False
        for name, limit in () if isinstance(row, ParsedRow) else limits:  # the parser checked its rows already
            value = getattr(row, "external_id" if name == "id" else name)
            if len(value) > limit:
                errors.append(f"{where}: {name} has {len(value):,} characters, over the limit of {limit:,}")
                refused = True
            elif _UNSTORABLE.search(value):
                errors.append(
                    f"{where}: {name} contains a NUL character or an unpaired surrogate, which cannot be stored"
                )
                refused = True
        if (
            row.tags
            and not isinstance(row, ParsedRow)
            and (any(_UNSTORABLE.search(tag) for tag in row.tags) or sum(map(len, row.tags)) > MAX_TEXT_CHARS)
        ):
            errors.append(
                f"{where}: tags are over {MAX_TEXT_CHARS:,} characters or hold a character that cannot be stored"
            )
            refused = True
        if refused:
            continue
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


def _link_sources(version: SuiteVersion, rows: Sequence[ExampleRow]) -> None:
    """Point each perturbed example at the example it was derived from (same version)."""
    linked = [r for r in rows if r.source_id]
    if not linked:
        return
    ids = dict(Example.objects.filter(suite_version=version).values_list("external_id", "pk"))
    missing = sorted({r.source_id for r in linked} - set(ids))
    if missing:
        raise ValidationFailed(
            f"{len(missing)} source id(s) name no example in the suite.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"rows": [f"unknown source id {m!r}" for m in missing[:MAX_ERRORS_LISTED]]},
        )
    examples = list(Example.objects.filter(suite_version=version, external_id__in=[r.external_id for r in linked]))
    source_of = {r.external_id: ids[r.source_id] for r in linked}
    for example in examples:
        example.source_id = source_of[example.external_id]
    Example.objects.bulk_update(examples, ["source"], batch_size=2000)


def _examples_insert(
    version: SuiteVersion, rows: Sequence[ExampleRow], unsafe: set[str], progress: Callable[[int, int], None] | None
) -> None:
    """Store the examples of a new version (inside the caller's transaction). PostgreSQL: one COPY,
    with primary keys drawn from the sequence first when examples link to their sources; elsewhere
    bulk_create. `progress(rows_done, rows_total)` is called every PROGRESS_EVERY rows."""
    total = len(rows)
    if connection.vendor != "postgresql":
        for start in range(0, total, PROGRESS_EVERY):
            Example.objects.bulk_create(
                [
                    Example(
                        suite_version=version,
                        position=i,
                        external_id=r.external_id,
                        text=r.text,
                        label=r.label,
                        is_unsafe=r.label in unsafe,
                        slice=r.slice,
                        tags=list(r.tags),
                        subgroup=r.subgroup,
                        reference=getattr(r, "reference", ""),
                    )
                    for i, r in enumerate(rows[start : start + PROGRESS_EVERY], start=start)
                ],
                batch_size=5000,
            )
            if progress:
                progress(min(start + PROGRESS_EVERY, total), total)
        _link_sources(version, rows)
        return
    table = connection.ops.quote_name(Example._meta.db_table)
    columns = [
        "suite_version_id",
        "position",
        "external_id",
        "text",
        "label",
        "is_unsafe",
        "slice",
        "tags",
        "subgroup",
        "reference",
    ]
    linked = any(r.source_id for r in rows)
    with connection.cursor() as cursor:
        ids: list[int] = []
        if linked:
            missing = sorted({r.source_id for r in rows if r.source_id} - {r.external_id for r in rows})
            if missing:
                raise ValidationFailed(
                    f"{len(missing)} source id(s) name no example in the suite.",
                    code=EvaluationsErrorCode.INVALID_ROWS,
                    details={"rows": [f"unknown source id {m!r}" for m in missing[:MAX_ERRORS_LISTED]]},
                )
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [Example._meta.db_table, total],
            )
            ids = [pk for (pk,) in cursor.fetchall()]
            columns += ["id", "source_id"]
            pk_of = {r.external_id: pk for r, pk in zip(rows, ids, strict=True)}
        sql = f"COPY {table} ({', '.join(connection.ops.quote_name(c) for c in columns)}) FROM STDIN"
        tags_json: dict[tuple[str, ...], str] = {}  # most rows share a few tag lists: encode each once
        version_id = version.pk
        # The psycopg 3 cursor under Django's wrapper; its errors raised as Django's (DataError, ...).
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            write = copy.write_row
            for i, r in enumerate(rows):
                key = r.tags if type(r.tags) is tuple else tuple(r.tags)
                tags = tags_json.get(key)
                if tags is None:
                    tags = tags_json[key] = json.dumps(list(key))
                values: tuple[object, ...] = (
                    version_id,
                    i,
                    r.external_id,
                    r.text,
                    r.label,
                    r.label in unsafe,
                    r.slice,
                    tags,
                    r.subgroup,
                    getattr(r, "reference", ""),
                )
                if linked:
                    values += (ids[i], pk_of[r.source_id] if r.source_id else None)
                write(values)
                if progress and (i + 1) % PROGRESS_EVERY == 0:
                    progress(i + 1, total)
    if progress:
        progress(total, total)


def suite_content_digest(rows: Sequence[ExampleRow], unsafe_labels: list[str], *, judge: str = "") -> str:
    """The digest of the canonical JSON of every example (tags, a tuple, is written as a JSON list). A chat
    suite (``judge``: the judge artifact's digest) also covers its kind, its judge and the references."""
    if judge:
        return digest(
            {
                "kind": "chat",
                "judge": judge,
                "unsafe_labels": sorted(unsafe_labels),
                "examples": [
                    {
                        "id": r.external_id,
                        "prompt": r.text,
                        "label": r.label,
                        "slice": r.slice,
                        "subgroup": r.subgroup,
                        "tags": r.tags,
                        "reference": r.reference,
                        **({"source": r.source_id} if r.source_id else {}),
                    }
                    for r in rows
                ],
            }
        )
    return digest(
        {
            "unsafe_labels": sorted(unsafe_labels),
            "examples": [
                {
                    "id": r.external_id,
                    "text": r.text,
                    "label": r.label,
                    "slice": r.slice,
                    "subgroup": r.subgroup,
                    "tags": r.tags,
                    "source": r.source_id,
                }
                if r.source_id
                else {
                    "id": r.external_id,
                    "text": r.text,
                    "label": r.label,
                    "slice": r.slice,
                    "subgroup": r.subgroup,
                    "tags": r.tags,
                }
                for r in rows
            ],
        }
    )


def suite_version_import(
    *,
    actor,
    suite_name: str,
    rows: Sequence[ExampleRow],
    unsafe_labels: list[str],
    safe_labels: list[str],
    source: str = "",
    description: str = "",
    progress: Callable[[int, int], None] | None = None,
    on_stored: Callable[[SuiteVersion], None] | None = None,
    judge=None,
) -> SuiteVersion:
    """Create the next version of a suite from validated rows. Identical content returns the
    existing version; any bad row refuses the whole import and names the lines. `rows` may be
    ExampleRow or the parser's ParsedRow (same fields). `on_stored(version)` runs inside the
    transaction that stores the version (the async import marks its SuiteImport there). A ``judge``
    (ModelArtifact) makes it a chat suite: rows are prompts (see services.chat_suites)."""
    if not rows:
        raise ValidationFailed(
            "The suite has no examples.", code=EvaluationsErrorCode.EMPTY_SUITE, details={"rows": ["No rows."]}
        )
    if not unsafe_labels:
        raise ValidationFailed("Name at least one unsafe label.", details={"unsafe_labels": ["May not be empty."]})
    # The parser checked its rows (ids, texts, limits); its labels and slices are checked again here, cheaply,
    # in case it was given other labels. Other rows (shared sets, perturbed variants) are checked in full.
    labels = set(unsafe_labels) | set(safe_labels)
    prechecked = (
        all(isinstance(r, ParsedRow) for r in rows)
        and {r.label for r in rows} <= labels
        and {r.slice for r in rows} <= set(Slice.values)
    )
    errors = [] if prechecked else _validate(rows, labels)
    if errors:
        shown = errors[:MAX_ERRORS_LISTED]
        more = len(errors) - len(shown)
        raise ValidationFailed(
            f"{len(errors)} invalid row(s); nothing was imported.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"rows": shown + ([f"... and {more} more"] if more else [])},
        )
    content_digest = suite_content_digest(rows, unsafe_labels, judge=judge.digest if judge else "")
    unsafe = set(unsafe_labels)
    with transaction.atomic():
        suite, _ = Suite.objects.get_or_create(
            name=suite_name, defaults={"description": description, "created_by": actor}
        )
        suite = Suite.objects.select_for_update().get(pk=suite.pk)
        kind = SuiteKind.CHAT if judge else SuiteKind.CLASSIFIER
        if suite.versions.exclude(kind=kind).exists():
            raise ValidationFailed(
                f"Suite {suite_name!r} holds {'classifier' if judge else 'chat'} versions; a {kind} version needs "
                "another suite name.",
                code=EvaluationsErrorCode.MIXED_ROWS,
                details={"suite": [f"{suite_name!r} is not a {kind} suite."]},
            )
        existing = suite.versions.filter(digest=content_digest).first()
        if existing:
            if on_stored:
                on_stored(existing)
            return existing
        number = (suite.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = SuiteVersion.objects.create(
            suite=suite,
            number=number,
            digest=content_digest,
            unsafe_labels=sorted(unsafe_labels),
            example_count=len(rows),
            source=source,
            created_by=actor,
            kind=kind,
            judge=judge,
        )
        _examples_insert(version, rows, unsafe, progress)
        ledger_append(
            actor=actor,
            action="suite.imported",
            object_type="suite_version",
            object_id=version.pk,
            payload={
                "suite": suite_name,
                "number": number,
                "digest": content_digest,
                "examples": len(rows),
                "source": source,
                **({"kind": SuiteKind.CHAT.value, "judge": judge.digest} if judge else {}),
            },
        )
        if on_stored:
            on_stored(version)
    return version


def _parse(
    data: bytes, *, fmt: str, mapping: dict | None, unsafe_labels: list[str], safe_labels: list[str], default_slice: str
):
    from evaluations.engine.tabular import SuiteFileError, parse_suite_file

    try:
        return parse_suite_file(
            data,
            fmt=fmt,
            mapping=mapping,
            labels=set(unsafe_labels) | set(safe_labels),
            default_slice=default_slice,
            max_bytes=settings.SAFESHRINK["MAX_UPLOAD_BYTES"],
        )
    except SuiteFileError as exc:
        raise ValidationFailed(
            f"{len(exc.errors)} problem(s) in the file; nothing was imported.",
            code=EvaluationsErrorCode.INVALID_ROWS,
            details={"file": exc.errors},
        ) from exc


def suite_import_file(
    *,
    actor,
    suite_name: str,
    data: bytes,
    fmt: str,
    mapping: dict | None,
    unsafe_labels: list[str],
    safe_labels: list[str],
    default_slice: str = "routine",
    source: str = "",
) -> SuiteVersion:
    """Parse a CSV or JSONL file with a column mapping and import it as the next version, in this
    process (`import_suite`; the API queues a SuiteImport instead). Every problem is reported with its
    line number, and nothing is imported unless every row is valid."""
    parsed = _parse(
        data,
        fmt=fmt,
        mapping=mapping,
        unsafe_labels=unsafe_labels,
        safe_labels=safe_labels,
        default_slice=default_slice,
    )
    return suite_version_import(
        actor=actor,
        suite_name=suite_name,
        rows=parsed.rows,
        unsafe_labels=unsafe_labels,
        safe_labels=safe_labels,
        source=source or f"uploaded {fmt} file ({len(data):,} bytes)",
    )


def suite_derive_perturbed(
    *,
    actor,
    suite_version_id: int,
    kinds: list[str],
    seed: int = 0,
    per_example: int = 1,
    from_slices: tuple[str, ...] = ("routine",),
    limit: int | None = None,
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
    rows = [
        ExampleRow(
            external_id=e.external_id,
            text=e.text,
            label=e.label,
            slice=e.slice,
            line=e.position + 1,
            subgroup=e.subgroup,
            tags=tuple(e.tags),
            source_id=e.source.external_id if e.source else "",
        )
        for e in examples
    ]
    sources = [r for r in rows if r.slice in from_slices and not r.source_id][:limit]
    if not sources:
        raise ValidationFailed(
            "No examples to perturb in those slices.",
            code=EvaluationsErrorCode.EMPTY_SUITE,
            details={"from_slices": [f"No examples in {list(from_slices)}."]},
        )
    try:
        variants = perturb(sources, kinds, seed, per_example)
    except EngineError as exc:
        raise ValidationFailed(exc.message, code=exc.code, details={"kinds": [exc.message]}) from exc
    by_id = {r.external_id: r for r in sources}
    derived = [
        ExampleRow(
            external_id=v.variant_id,
            text=v.text,
            label=by_id[v.source_id].label,
            slice="adversarial",
            line=by_id[v.source_id].line,
            subgroup=by_id[v.source_id].subgroup,
            tags=(*by_id[v.source_id].tags, "perturbed", v.kind),
            source_id=v.source_id,
        )
        for v in variants
    ]
    recipe = variants.recipe
    return suite_version_import(
        actor=actor,
        suite_name=base.suite.name,
        rows=rows + derived,
        unsafe_labels=base.unsafe_labels,
        safe_labels=sorted({e.label for e in examples} - set(base.unsafe_labels)),
        source=f"{base.source}; + {len(derived)} perturbed variants of {len(sources)} {'/'.join(from_slices)} "
        f"examples (kinds {','.join(recipe.kinds)}, seed {recipe.seed}, per example {recipe.per_example}, "
        f"recipe v{recipe.version})",
    )
