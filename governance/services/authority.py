"""Who may do what on a release: roles, tier authorities, separation of duties."""

from accounts.errors import PermissionDenied
from accounts.models import Role
from compression.models import RiskTier
from governance.models import ApprovalPolicy, AuthorityGrant, Release

DEFAULT_APPROVALS = {RiskTier.LOW: 1, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


def approval_policy_for(tier: str) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.filter(risk_tier=tier).first()
    return policy or ApprovalPolicy(risk_tier=tier, approvals_required=DEFAULT_APPROVALS.get(tier, 1))


def authority_level(user, tier: str) -> int:
    """The user's authority level for a tier (0 = none). Admins are not authorities: they run the system."""
    if user.role != Role.OFFICER:
        return 0
    grant = AuthorityGrant.objects.filter(user=user, risk_tier=tier).first()
    return grant.level if grant else 0


def require_officer(user, what: str) -> None:
    if user.role != Role.OFFICER:
        raise PermissionDenied(f"Only governance officers may {what}.")


def require_authority(user, release: Release, what: str, *, level: int = 1) -> None:
    require_officer(user, what)
    tier = release.experiment.risk_tier
    if authority_level(user, tier) < level:
        raise PermissionDenied(
            f"You hold no level-{level} authority for {tier}-risk releases, so you may not {what}.",
            code="outside_authority",
        )


def require_independent(user, release: Release) -> None:
    """Separation of duties: whoever requested or ran the experiment cannot decide on it."""
    if user.pk in (release.experiment.owner_id, release.compression_run.requested_by_id, release.created_by_id):
        raise PermissionDenied(
            "Separation of duties: you requested or ran this experiment, so you cannot decide on it.",
            code="separation_of_duties",
        )
