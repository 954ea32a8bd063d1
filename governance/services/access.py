"""Regulators' reads are ledger events too: a successful read is `access.viewed` (or, for a file,
`access.downloaded`, written by `export_open`); a refused read (404: no grant, an expired or revoked
grant, or no such object) is `access.denied` with the reason, never `access.viewed`."""

from collections.abc import Callable
from typing import TypeVar

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from accounts.errors import NotFound
from accounts.models import Role
from accounts.services import access_denied_record
from governance.models import RegulatorGrant, Release
from ledger.services import ledger_append

T = TypeVar("T")


def access_record(*, actor, what: str, object_id) -> None:
    """Record a regulator's successful read. Call it only once the read has succeeded."""
    if getattr(actor, "role", None) != Role.REGULATOR:
        return
    with transaction.atomic():
        ledger_append(
            actor=actor,
            action="access.viewed",
            object_type="regulator_access",
            object_id=object_id,
            payload={"what": what},
        )


def regulator_refusal_reason(*, regulator, release_id) -> str:
    """Why a regulator may not read a release: not_found, no_grant, grant_revoked, grant_expired or
    grant_not_yet_valid, from the latest grant."""
    if release_id is None or not Release.objects.filter(pk=release_id).exists():
        return "not_found"
    latest = (
        RegulatorGrant.objects.filter(regulator=regulator, release_id=release_id).order_by("-created_at", "-pk").first()
    )
    if latest is None:
        return "no_grant"
    now = timezone.now()
    if latest.revoked_at is not None and latest.revoked_at <= now:
        return "grant_revoked"
    if latest.valid_until <= now:
        return "grant_expired"
    if latest.valid_from > now:
        return "grant_not_yet_valid"
    return "not_found"


def access_refusal_record(*, actor, request, release_id, what: str) -> None:
    """Record a regulator's refused read (the 404 they get) as `access.denied`, with the reason."""
    if getattr(actor, "role", None) != Role.REGULATOR:
        return
    access_denied_record(
        actor=actor,
        method=request.method,
        path=request.path,
        reason=regulator_refusal_reason(regulator=actor, release_id=release_id),
        message=f"refused read: {what}",
        object_type="regulator_access",
        object_id=release_id if release_id is not None else "-",
    )


def access_read(
    *, actor, request, what: str, object_id, read: Callable[[], T], release_id: Callable[[], int | None] | None = None
) -> T:
    """Run `read`; record a regulator's read as `access.viewed` if it succeeded, or as `access.denied` if it
    was refused with a 404 (then re-raise). `release_id` names the release behind the object (for the
    reason); by default `object_id` is the release."""
    try:
        result = read()
    except (Http404, NotFound):
        if getattr(actor, "role", None) == Role.REGULATOR:
            access_refusal_record(
                actor=actor,
                request=request,
                what=what,
                release_id=release_id() if release_id else _int_or_none(object_id),
            )
        raise
    access_record(actor=actor, what=what, object_id=object_id)
    return result


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
