"""The answer to "can this environment run the optional methods?", found at start-up, read on requests.

``int8_weight_only`` needs torchao working with this torch, which only importing torch can tell. The web
process never imports torch and no request may start a child interpreter, so the probe runs at start-up:
the ``compression.W001`` system check (``manage.py check``, ``migrate``, ``runserver`` and every other
command that runs checks) and a Celery worker starting (``compression.tasks``) probe and write the
answer to ``<ARTIFACT_ROOT>/capabilities.json`` together with the environment it holds for (Python, torch
and torchao versions). A request reads that file (a few hundred bytes, re-read only when it changed).
"""

import json
import logging
import os
from pathlib import Path

from django.conf import settings

from compression.engine import capabilities as engine_capabilities

logger = logging.getLogger(__name__)
FILE_NAME = "capabilities.json"
_seen: tuple[int, int] | None = None


def capabilities_path() -> Path:
    return Path(settings.SAFESHRINK["ARTIFACT_ROOT"]) / FILE_NAME


def capabilities_stored() -> dict[str, bool] | None:
    """The answers stored for this environment, or None (no file, unreadable, or another environment)."""
    try:
        stored = json.loads(capabilities_path().read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("environment") != engine_capabilities.environment():
        return None
    methods = stored.get("methods")
    return {str(k): bool(v) for k, v in methods.items()} if isinstance(methods, dict) else None


def capabilities_record() -> dict[str, bool]:
    """Probe (start-up only: may start a child interpreter), remember the answers in this process and
    store them for the others. A store that cannot be written is logged, not fatal."""
    answers = engine_capabilities.probe_all()
    engine_capabilities.record(answers)
    path = capabilities_path()
    body = json.dumps({"environment": engine_capabilities.environment(), "methods": answers}, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{FILE_NAME}.{os.getpid()}")
        partial.write_text(body, "utf-8")
        os.replace(partial, path)
    except OSError as exc:
        logger.warning("cannot store %s (%s); other processes will not see the probe's answer", path, exc)
    return answers


def capabilities_load() -> None:
    """Record in this process what start-up stored (cheap; request path). Never probes."""
    global _seen
    try:
        stat = capabilities_path().stat()
    except OSError:
        return
    if _seen == (stat.st_mtime_ns, stat.st_size):
        return
    stored = capabilities_stored()
    if stored is not None:
        engine_capabilities.record(stored)
    _seen = (stat.st_mtime_ns, stat.st_size)


def capabilities_ensure() -> dict[str, bool]:
    """Start-up: use what is stored for this environment, otherwise probe once and store it."""
    stored = capabilities_stored()
    if stored is not None and set(stored) == set(engine_capabilities.OPTIONAL_METHOD_PROBES):
        engine_capabilities.record(stored)
        return stored
    return capabilities_record()
