"""Celery tasks of the governance domain: thin, take ids, call one service."""

from celery import shared_task

from evaluations.services.runs import RUN_FINISHED_TASK
from governance.services.completion import releases_complete_for_evaluation, releases_complete_stuck
from governance.services.escalations import escalations_escalate_overdue
from governance.services.monitoring import revalidation_complete, revalidations_run_due
from governance.services.notifications import webhook_deliver
from governance.services.releases import EvaluationsPending, release_complete_evaluation
from governance.services.reviews import review_tasks_overdue


@shared_task(name=RUN_FINISHED_TASK)
def evaluation_finished(evaluation_id: int) -> list[int]:
    """Sent by evaluations, by name, when a run finishes: complete the releases waiting on it."""
    return releases_complete_for_evaluation(evaluation_id=evaluation_id)


@shared_task(name="governance.complete_release_evaluation")
def complete_release_evaluation(release_id: int) -> str:
    """One attempt (no polling): enqueued when a release starts evaluating, for reused finished runs."""
    return release_complete_evaluation(release_id=release_id).status


@shared_task(name="governance.complete_stuck_releases")
def complete_stuck_releases() -> list[int]:
    return releases_complete_stuck()


@shared_task(name="governance.escalate_overdue")
def escalate_overdue() -> list[int]:
    return escalations_escalate_overdue()


@shared_task(name="governance.reviews_overdue")
def reviews_overdue() -> list[int]:
    return review_tasks_overdue()


@shared_task(name="governance.run_due_revalidations")
def run_due_revalidations() -> list[int]:
    return revalidations_run_due()


@shared_task(name="governance.complete_revalidation", bind=True, max_retries=1440)
def complete_revalidation(self, release_id: int, evaluation_id: int) -> str | None:
    try:
        return revalidation_complete(release_id=release_id, evaluation_id=evaluation_id)
    except EvaluationsPending as exc:
        raise self.retry(countdown=3, exc=exc) from exc


@shared_task(name="governance.deliver_webhook", bind=True, max_retries=8)
def deliver_webhook(self, delivery_id: int) -> None:
    if not webhook_deliver(delivery_id=delivery_id):
        # Exponential backoff: 2, 4, 8, … seconds; the delivery row counts attempts and gives up itself.
        raise self.retry(countdown=2 ** min(self.request.retries + 1, 8))
