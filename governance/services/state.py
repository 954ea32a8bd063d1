"""The release state machine's moves: lock the row, check who and which version, check the state, move it.
Every move is allowed by the table in `governance.lifecycle`, bumps the release's version and writes its ledger
event in the caller's transaction. Refusals (403/409) are recorded in the ledger by `guarded`. This module is
below releases, escalations and reviews: they all import it, it imports none of them."""

from collections.abc import Callable

from accounts.errors import Conflict, NotFound, PermissionDenied
from governance.error_codes import GovernanceErrorCode
from governance.lifecycle import allowed
from governance.models import Release
from ledger.services import ledger_append, ledger_record_refusal

OBJECT_TYPE = "release"


def locked(
    release_id: int, expected_version: int | None, authorize: Callable[[Release], None] | None = None
) -> Release:
    """Lock the release row. Who before what: `authorize` (the actor's role and authority) is checked
    before the expected version, so a refused actor is recorded as refused, not as holding a stale page."""
    release = Release.objects.select_for_update().filter(pk=release_id).first()
    if release is None:
        raise NotFound(f"No release {release_id}.")
    if authorize is not None:
        authorize(release)
    if expected_version is not None and release.version != expected_version:
        raise Conflict(
            f"Release {release.pk} changed since you loaded it (version {expected_version}, now {release.version}).",
            code=GovernanceErrorCode.STALE_VERSION,
            details={"expected_version": [f"Current version is {release.version}."]},
        )
    return release


def expect(release: Release, *states: str) -> None:
    if release.status not in states:
        wanted = " or ".join(states)
        raise Conflict(
            f"Release {release.pk} is {release.status}, not {wanted}.", code=GovernanceErrorCode.INVALID_TRANSITION
        )


def transition(release: Release, *, actor, to: str, action: str, payload: dict, fields: tuple[str, ...] = ()) -> None:
    """Move a locked release to `to` (if the lifecycle table allows it), bump its version, append the ledger event."""
    previous = release.status
    if not allowed(previous, to):
        raise Conflict(
            f"Release {release.pk} cannot go from {previous} to {to}.", code=GovernanceErrorCode.INVALID_TRANSITION
        )
    release.status = to
    release.version += 1
    release.save(update_fields=["status", "version", "updated_at", *fields])
    ledger_append(
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=release.pk,
        payload={"from": previous, "to": to, "version": release.version, **payload},
    )


def guarded(actor, release_id: int, operation: Callable[[], Release]) -> Release:
    """Run a state change; a 403/409 refusal is recorded in the ledger after the rollback."""
    try:
        return operation()
    except (PermissionDenied, Conflict) as exc:
        ledger_record_refusal(
            actor=actor, object_type=OBJECT_TYPE, object_id=release_id, code=exc.code, message=exc.message
        )
        raise
