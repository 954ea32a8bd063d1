import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exports.services.exports import export_verify


class Command(BaseCommand):
    help = (
        "Verify a signed export offline: a dossier PDF (PAdES signature against the configured trust roots) or "
        "an evidence bundle (DSSE envelope against the system key). Prints signer, signing time, integrity and "
        "trust; exits 1 when the file is not valid."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="dossier.pdf or bundle.dsse.json")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, file: Path, json: bool, **options) -> None:
        if not file.is_file():
            raise CommandError(f"No file at {file}.")
        report = export_verify(file.read_bytes())
        if json:
            self.stdout.write(_json(report.as_dict()))
        else:
            for label, value in (
                ("file", file),
                ("kind", report.kind),
                ("signer", report.signer),
                ("signing time", report.signing_time),
                ("intact", report.intact),
                ("trusted", report.trusted),
                ("bundle digest", report.bundle_digest),
                ("result", report.summary),
            ):
                if value is not None:
                    self.stdout.write(f"{label:>14}: {value}")
            for problem in report.problems:
                self.stdout.write(f"{'problem':>14}: {problem}")
        if not report.valid:
            raise CommandError(f"INVALID: {file}")


def _json(value) -> str:
    return json.dumps(value, indent=2, default=str)
