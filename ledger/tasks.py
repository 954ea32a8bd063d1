import datetime as dt
import logging

from celery import shared_task
from django.utils import timezone

from ledger.partitions import ledger_partitions_ensure_due
from ledger.services import ledger_seal, may_seal, pending_events

logger = logging.getLogger(__name__)


@shared_task(name="ledger.seal")
def seal() -> int:
    """Safety net: events are sealed right after their transaction commits; this catches any whose
    post-commit sealing did not run (a process that died in between). Also makes the coming months'
    ledger partitions (at most once an hour per process) in case no sealer runs. Under a role that may
    not seal (the application's, beside a sealer role) it says so when events wait longer than a minute."""
    ledger_partitions_ensure_due()
    if may_seal():
        return ledger_seal()
    stale = pending_events().filter(occurred_at__lt=timezone.now() - dt.timedelta(minutes=1)).count()
    if stale:
        logger.error("ledger: %d event(s) unsealed for over a minute: is `manage.py ledger_sealer` running?", stale)
    return 0
