from django.db.models import QuerySet

from .models import LedgerEvent


def ledger_events_for(*, object_type: str, object_id) -> QuerySet[LedgerEvent]:
    return LedgerEvent.objects.filter(object_type=object_type, object_id=str(object_id)).order_by("seq")
