import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.errors import DomainError
from accounts.models import User
from evaluations.datasets import SAFE_LABELS, SHARED_SETS, UNSAFE_LABELS, sample
from evaluations.services.suites import ExampleRow, suite_import_file, suite_version_import


class Command(BaseCommand):
    help = (
        "Import a suite version from a CSV or JSONL file with a column mapping, or one of the shared data sets "
        "(--shared NAME). Every row is validated; any problem is listed with its line number and nothing is "
        "imported. Identical content returns the existing version."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--suite", required=True, help="Suite name (a new version is added if it exists).")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--file", type=Path, help="CSV or JSONL file to import.")
        source.add_argument("--shared", choices=sorted(SHARED_SETS), help="One of the shared data sets.")
        parser.add_argument("--data-dir", type=Path, help="Folder of the shared data sets (default: settings).")
        parser.add_argument("--format", choices=["csv", "jsonl"], help="File format (default: from the extension).")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help="Column mapping, e.g. --map text=comment --map label=class (fields: text, label, "
            "id, slice, tags, subgroup, source_id).",
        )
        parser.add_argument("--unsafe-labels", default=",".join(UNSAFE_LABELS), help="Comma-separated unsafe labels.")
        parser.add_argument("--safe-labels", default=",".join(SAFE_LABELS), help="Comma-separated safe labels.")
        parser.add_argument("--default-slice", default="routine", choices=["routine", "edge", "adversarial"])
        parser.add_argument("--sample", type=int, help="With --shared: a seeded sample of this many rows.")
        parser.add_argument("--as-user", default="engineer", help="Username recorded as the importer.")

    def handle(self, *args, **o) -> None:
        from django.conf import settings

        started = time.perf_counter()
        actor = User.objects.filter(username=o["as_user"]).first()
        unsafe = [x for x in o["unsafe_labels"].split(",") if x]
        safe = [x for x in o["safe_labels"].split(",") if x]
        try:
            if o["shared"]:
                title, reader = SHARED_SETS[o["shared"]]
                data_dir = o["data_dir"] or Path(settings.SAFESHRINK["DATA_DIR"])
                rows = [ExampleRow(**r) for r in sample(reader(data_dir), o["sample"], seed=0)]
                version = suite_version_import(
                    actor=actor,
                    suite_name=o["suite"],
                    rows=rows,
                    unsafe_labels=unsafe,
                    safe_labels=safe,
                    source=f"{title}, from {data_dir}",
                )
            else:
                path: Path = o["file"]
                if not path.is_file():
                    raise CommandError(f"No file at {path}.")
                fmt = o["format"] or ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
                bad = [item for item in o["map"] if "=" not in item]
                if bad:
                    raise CommandError(f"--map takes FIELD=COLUMN, got {bad[0]!r}.")
                mapping = dict(item.split("=", 1) for item in o["map"])
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
                version = suite_import_file(
                    actor=actor,
                    suite_name=o["suite"],
                    data=data,
                    fmt=fmt,
                    mapping=mapping or None,
                    unsafe_labels=unsafe,
                    safe_labels=safe,
                    default_slice=o["default_slice"],
                    source=f"{path.name}",
                )
        except DomainError as exc:
            # A readable refusal and exit status 1 (CommandError), never a traceback: every line named.
            lines = [
                line for values in exc.details.values() for line in (values if isinstance(values, list) else [values])
            ]
            raise CommandError("\n".join([exc.message, *map(str, lines)])) from exc
        seconds = time.perf_counter() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{version}: {version.example_count} examples, digest {version.digest} ({seconds:.1f} s)"
            )
        )
