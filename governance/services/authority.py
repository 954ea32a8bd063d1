"""Who may do what on a release: roles, tier authorities, separation of duties."""

from accounts.errors import PermissionDenied
from accounts.models import Role
from governance.error_codes import GovernanceErrorCode
from governance.models import Release
from governance.selectors import authority_level


def require_officer(user, what: str) -> None:
    if user.role != Role.OFFICER:
        raise PermissionDenied(f"Only governance officers may {what}.")


def require_authority(user, release: Release, what: str, *, level: int = 1) -> None:
    require_officer(user, what)
    tier = release.experiment.risk_tier
    if authority_level(user, tier) < level:
        raise PermissionDenied(
            f"You hold no level-{level} authority for {tier}-risk releases, so you may not {what}.",
            code=GovernanceErrorCode.OUTSIDE_AUTHORITY,
        )


def require_independent(user, release: Release) -> None:
    """Separation of duties: whoever requested or ran the experiment cannot decide on it."""
    if user.pk in (release.experiment.owner_id, release.run_requested_by_id, release.created_by_id):
        raise PermissionDenied(
            "Separation of duties: you requested or ran this experiment, so you cannot decide on it.",
            code=GovernanceErrorCode.SEPARATION_OF_DUTIES,
        )
