"""Celery tasks: thin, take ids, call one service. Idempotency lives in the service."""

from celery import shared_task
from celery.signals import worker_init, worker_ready, worker_shutdown

from compression.services.runs import compression_run_execute, compression_runs_requeue_orphaned


@shared_task(name="compression.execute_run")
def execute_compression_run(run_id: int) -> None:
    compression_run_execute(run_id=run_id)


@shared_task(name="compression.requeue_orphaned_runs")
def requeue_orphaned_runs() -> list[int]:
    return compression_runs_requeue_orphaned()


@shared_task(name="compression.expire_uploads")
def expire_uploads() -> list[int]:
    """Beat's sweep of abandoned model uploads (SAFESHRINK["MODEL_UPLOAD_EXPIRY_SECONDS"])."""
    from compression.services.uploads import uploads_expire

    return uploads_expire()


@worker_init.connect
def record_method_capabilities(**kwargs) -> None:
    """At worker start-up, probe the optional methods (unless this environment's answer is stored already)
    and store the answer for the web processes."""
    from compression.capabilities import capabilities_ensure

    capabilities_ensure()


@worker_ready.connect
def start_worker_heartbeat(sender=None, **kwargs) -> None:
    """The worker's heartbeat row (capabilities, queues, last_seen), written now and every
    SAFESHRINK["WORKER_HEARTBEAT_SECONDS"] by a thread of the worker's main process."""
    from compression.services.workers import worker_heartbeat_start

    worker_heartbeat_start(hostname=sender.hostname, queues=sorted(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def stop_worker_heartbeat(sender=None, **kwargs) -> None:
    from compression.services.workers import worker_heartbeat_stop

    worker_heartbeat_stop(hostname=sender.hostname)
