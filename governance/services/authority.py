"""Who may do what on a release: roles, tier authorities, separation of duties."""

from accounts.errors import PermissionDenied
from accounts.models import Role
from compression.models import RiskTier
from governance.models import ApprovalPolicy, AuthorityGrant, Release

# Used when a tier has no ApprovalPolicy row; the same values are seeded by migration 0002.
DEFAULT_APPROVAL_POLICIES = {
    RiskTier.LOW: {"approvals_required": 1, "review_sample_size": 6, "reviewers_per_item": 1, "review_hours": 72,
                   "escalation_hours": 48, "halt_on_overdue": False},
    RiskTier.MEDIUM: {"approvals_required": 1, "review_sample_size": 10, "reviewers_per_item": 2, "review_hours": 72,
                      "escalation_hours": 24, "halt_on_overdue": False},
    RiskTier.HIGH: {"approvals_required": 2, "review_sample_size": 20, "reviewers_per_item": 2, "review_hours": 48,
                    "escalation_hours": 12, "halt_on_overdue": True},
}


def approval_policy_for(tier: str) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.filter(risk_tier=tier).first()
    return policy or ApprovalPolicy(risk_tier=tier, **DEFAULT_APPROVAL_POLICIES.get(tier, DEFAULT_APPROVAL_POLICIES["high"]))


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
