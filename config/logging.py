"""Logging helpers configured from settings.LOGGING (no Django imports: dictConfig builds them)."""

import logging

# Loggers that warn while torch, torchao and triton import, about kernels a CPU build cannot load (CUDA-only
# torchao extensions, no triton) and deprecated pytree registrations. They say nothing a user can act on.
IMPORT_NOISE_LOGGERS = ("torchao", "torchao.kernel.intmm", "torch.utils._pytree")


class ImportNoise(logging.Filter):
    """Downgrade the import-time warnings of IMPORT_NOISE_LOGGERS to DEBUG and let each through once, so they
    stay off the console and are still in a debug log (DJANGO_LOG_LEVEL=DEBUG). Errors pass unchanged."""

    _seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)
