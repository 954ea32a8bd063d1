import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exports.services.exports import export_verify


class Command(BaseCommand):
    help = (
        "Verify a signed export offline: a dossier PDF (PAdES signature against the configured trust roots) or "
        "an evidence bundle (DSSE envelope against the system key). Prints signer, signing time, integrity and "
        "trust; with --predictions, also that predictions.csv.gz is the file the bundle records (sha256 and size); "
        "exits 1 when the file is not valid."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="dossier.pdf or bundle.dsse.json")
        parser.add_argument(
            "--predictions", type=Path, help="predictions.csv.gz, checked against the bundle's record of it."
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, file: Path, json: bool, predictions: Path | None = None, **options) -> None:
        for path in (file, predictions):
            if path is not None and not path.is_file():
                raise CommandError(f"No file at {path}.")
        report = export_verify(file.read_bytes(), predictions.read_bytes() if predictions else None)
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
                ("predictions", None if predictions is None else _predictions_line(predictions, report)),
                ("result", report.summary),
            ):
                if value is not None:
                    self.stdout.write(f"{label:>14}: {value}")
            for problem in report.problems:
                self.stdout.write(f"{'problem':>14}: {problem}")
        if not report.valid:
            raise CommandError(f"INVALID: {file}")


def _predictions_line(path: Path, report) -> str:
    if report.predictions_match is None:
        return f"{path}: not checked (it is checked against a bundle)"
    return f"{path}: {'the' if report.predictions_match else 'NOT the'} file the bundle records"


def _json(value) -> str:
    return json.dumps(value, indent=2, default=str)
