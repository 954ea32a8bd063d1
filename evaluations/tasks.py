from celery import shared_task

from evaluations.services.runs import evaluation_run_execute


@shared_task(name="evaluations.execute_run")
def execute_evaluation_run(run_id: int) -> None:
    evaluation_run_execute(run_id=run_id)
