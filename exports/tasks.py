from celery import shared_task

from exports.services.exports import export_build


@shared_task(name="exports.build")
def build_export(export_id: int) -> None:
    export_build(export_id=export_id)
