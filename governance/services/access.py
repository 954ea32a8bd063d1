"""Regulators' reads are ledger events too."""

from django.db import transaction

from accounts.models import Role
from ledger.services import ledger_append


def access_record(*, actor, what: str, object_id) -> None:
    if getattr(actor, "role", None) != Role.REGULATOR:
        return
    with transaction.atomic():
        ledger_append(actor=actor, action="access.viewed", object_type="regulator_access", object_id=object_id,
                      payload={"what": what})
