"""Celery tasks: thin, take ids, call one service."""

from celery import shared_task

from evaluations.services.runs import evaluation_chunk_execute, evaluation_run_start, evaluation_runs_requeue_orphaned


@shared_task(name="evaluations.start_run")
def start_evaluation_run(run_id: int) -> None:
    evaluation_run_start(run_id=run_id)


@shared_task(name="evaluations.evaluate_chunk")
def evaluate_chunk(run_id: int, chunk: int) -> None:
    evaluation_chunk_execute(run_id=run_id, chunk=chunk)


@shared_task(name="evaluations.requeue_orphaned_runs")
def requeue_orphaned_runs() -> list[int]:
    return evaluation_runs_requeue_orphaned()


@shared_task(name="evaluations.import_suite_file")
def import_suite_file(import_id: int) -> None:
    from evaluations.services.suite_imports import suite_import_execute

    suite_import_execute(import_id=import_id)


@shared_task(name="evaluations.requeue_stale_suite_imports")
def requeue_stale_suite_imports() -> list[int]:
    from evaluations.services.suite_imports import suite_imports_requeue_stale

    return suite_imports_requeue_stale()
