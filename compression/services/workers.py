"""Worker pools by hardware class: which queue runs a device, the workers' heartbeats, and the request-time
check that a device's queue has a live worker.

Queues: `cpu` (the default), `gpu` and `io` (settings: CELERY_TASK_* and SAFESHRINK["DEVICE_QUEUES"]). A worker
writes its heartbeat row when it is ready and then every WORKER_HEARTBEAT_SECONDS from a daemon thread of its
main process; nothing in that process initialises CUDA (its pool children are forked from it): the GPU facts
come from a child interpreter, probed once, on workers that serve the gpu queue only.
"""

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.utils import timezone

from accounts.errors import ValidationFailed
from compression.engine.cpu import cpu_instruction_sets, cpu_model
from compression.error_codes import CompressionErrorCode
from compression.models import WorkerHeartbeat

logger = logging.getLogger(__name__)
GPU_QUEUE = "gpu"
_GPU_PROBE = (
    "import json, torch\n"
    "ok = torch.cuda.is_available()\n"
    "p = torch.cuda.get_device_properties(0) if ok else None\n"
    "print(json.dumps({'available': ok, 'name': p.name if p else '', 'memory': p.total_memory if p else None}))\n"
)
_stop = threading.Event()


def device_queue(device: str, *, field: str = "profile.device") -> str:
    """The queue that runs `device` ("cuda:1" is kind "cuda"); a 400 naming `field` for a kind no queue runs."""
    queues = settings.SAFESHRINK["DEVICE_QUEUES"]
    kind = str(device).split(":", 1)[0]
    if kind not in queues:
        raise ValidationFailed(
            f"No worker pool runs device {device!r}.",
            code=CompressionErrorCode.NO_WORKER_FOR_DEVICE,
            details={field: [f"Choose a device of kind {', '.join(sorted(queues))}."]},
        )
    return queues[kind]


def workers_live():
    """The heartbeat rows of live workers: seen within WORKER_LIVE_SECONDS and not stopped."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.SAFESHRINK["WORKER_LIVE_SECONDS"])
    return WorkerHeartbeat.objects.filter(last_seen__gte=cutoff, stopped_at__isnull=True)


def queue_served(queue: str) -> bool:
    """Whether a live worker consumes `queue`."""
    return any(queue in (row.queues or []) for row in workers_live().only("queues"))


def worker_is_live(row: WorkerHeartbeat) -> bool:
    cutoff = timezone.now() - dt.timedelta(seconds=settings.SAFESHRINK["WORKER_LIVE_SECONDS"])
    return row.stopped_at is None and row.last_seen >= cutoff


def device_worker_check(*, device: str, field: str, queue_anyway: bool = False) -> str:
    """The queue for `device`, after checking that a live worker consumes it. CPU is never checked (the
    default pool: `make run` starts its worker alongside the web process, and a request may come first);
    any other device needs a live worker on its queue, unless the request said `queue_anyway` (the job then
    waits for such a worker). A 400 `no_worker_for_device` naming `field` otherwise."""
    queue = device_queue(device, field=field)
    if queue == settings.CELERY_TASK_DEFAULT_QUEUE or queue_anyway:
        return queue
    if not queue_served(queue):
        raise ValidationFailed(
            f"No live worker serves the {queue!r} queue that device {device!r} runs on.",
            code=CompressionErrorCode.NO_WORKER_FOR_DEVICE,
            details={
                field: [
                    f"No worker consuming {queue!r} reported within "
                    f"{settings.SAFESHRINK['WORKER_LIVE_SECONDS']:g} s; start one or send queue_anyway: true."
                ]
            },
        )
    return queue


def torch_build() -> tuple[str, str]:
    """torch's version and the CUDA version it was built with, read without importing torch ("" if none)."""
    try:
        dist = metadata.distribution("torch")
    except metadata.PackageNotFoundError:
        return "", ""
    try:
        text = Path(str(dist.locate_file("torch/version.py"))).read_text()
    except OSError:
        text = ""
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return dist.version, match.group(1) if match else ""


def _machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_probe() -> dict:
    """CUDA as torch sees it, from a child interpreter (so this process never initialises CUDA)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=180, check=True
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        logger.warning("GPU probe failed: %s", exc)
        return {"available": False, "name": "", "memory": None}


def worker_capabilities(queues: list[str]) -> dict:
    """What this worker offers: its device setting, device name and memory, CPU, torch and CUDA versions."""
    torch_version, cuda_version = torch_build()
    facts = {
        "device": settings.SAFESHRINK["DEVICE"],
        "device_name": cpu_model(),
        "memory_bytes": _machine_memory(),
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_instruction_sets(),
        "torch_version": torch_version,
        "cuda_version": cuda_version,
        "cuda_available": None,
    }
    if GPU_QUEUE in queues:
        gpu = _gpu_probe()
        facts["cuda_available"] = bool(gpu.get("available"))
        if gpu.get("available"):
            facts["device_name"], facts["memory_bytes"] = gpu.get("name") or "", gpu.get("memory")
        else:
            logger.warning("worker consumes the %r queue but torch sees no CUDA device", GPU_QUEUE)
    return facts


def worker_heartbeat_record(*, hostname: str, queues: list[str] | None = None, facts: dict | None = None) -> None:
    """Write this worker's row: the first call (queues and facts given) replaces it, later ones touch last_seen."""
    now = timezone.now()
    if facts is None:
        WorkerHeartbeat.objects.filter(hostname=hostname).update(last_seen=now, stopped_at=None)
        return
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            **facts,
            "queues": sorted(queues or []),
            "pid": os.getpid(),
            "started_at": now,
            "last_seen": now,
            "stopped_at": None,
        },
    )


def worker_heartbeat_start(*, hostname: str, queues: list[str]) -> threading.Thread:
    """Called when the worker is ready: a daemon thread writes its row, then beats until worker_heartbeat_stop."""
    _stop.clear()

    def beat() -> None:
        facts, period = None, settings.SAFESHRINK["WORKER_HEARTBEAT_SECONDS"]
        while True:
            try:
                if facts is None:
                    facts = worker_capabilities(queues)
                    worker_heartbeat_record(hostname=hostname, queues=queues, facts=facts)
                else:
                    worker_heartbeat_record(hostname=hostname)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the heartbeat
                logger.exception("worker heartbeat failed")
            finally:
                connections.close_all()  # this thread's connections only; reopened next beat
            if _stop.wait(period):
                return

    thread = threading.Thread(target=beat, name="safeshrink-heartbeat", daemon=True)
    thread.start()
    return thread


def worker_heartbeat_stop(*, hostname: str) -> None:
    """Called on a clean shutdown: stop beating and mark the row stopped (a killed worker just goes stale)."""
    _stop.set()
    try:
        WorkerHeartbeat.objects.filter(hostname=hostname).update(stopped_at=timezone.now())
    except Exception:  # noqa: BLE001 - shutting down: the row goes stale instead
        logger.exception("could not mark worker %s stopped", hostname)
