from celery import shared_task

from governance.services.releases import release_complete_evaluation


@shared_task(name="governance.complete_release_evaluation")
def complete_release_evaluation(release_id: int) -> None:
    release_complete_evaluation(release_id=release_id)
