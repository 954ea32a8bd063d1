"""The reference teacher, built (or found in the cache) from the configured data and cache folders."""

from collections.abc import Callable
from pathlib import Path

from django.conf import settings


def reference_teacher(
    *, data_dir: Path | None = None, cache_dir: Path | None = None, progress: Callable[[str, float], None] | None = None
):
    """Build the MiniLM teacher once; later calls with the same inputs return the cached one.
    Returns the engine's TeacherReport (model_dir, accuracy, macro_f1, cached, ...)."""
    from compression.engine.teacher import build_reference_teacher  # torch: commands and workers only

    data_dir = data_dir or Path(settings.SAFESHRINK["DATA_DIR"])
    return build_reference_teacher(
        data_csv=data_dir / "hatexplain" / "hatexplain_merged.csv",
        cache_dir=cache_dir or Path(settings.SAFESHRINK["MODEL_CACHE"]),
        progress=progress,
    )
