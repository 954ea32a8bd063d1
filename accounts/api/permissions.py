"""Role checks for API views. Object-level rules live in the services.

Every refusal here is recorded (ARCHITECTURE.md, "Authorisation"): a signed-in user's as one
`access.denied` ledger event (role, method, path, reason); an anonymous client's only as a count per
time window (`accounts.services.anonymous_refusal_count`), so anonymous requests cannot flood the ledger."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Role
from accounts.services import access_denied_record, anonymous_refusal_count


def _is_the_request(request) -> bool:
    """False for the copies DRF makes to ask "could this user also POST/PUT here?" (the browsable API's
    forms, OPTIONS metadata: `rest_framework.request.clone_request` sets `method` on the copy). Only a
    refusal of the request the client actually sent is recorded."""
    return "method" not in vars(request)


class HasRole(BasePermission):
    """Allows only users whose role is in `view.allowed_roles` (admins always); for unsafe methods,
    `view.write_roles` when the view sets it. Checked before any input is parsed, so a role that may
    not write gets 403 whatever it sent."""

    message = "Your role may not use this endpoint."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            if _is_the_request(request):
                anonymous_refusal_count(method=request.method, path=request.path)
            return False
        allowed = getattr(view, "allowed_roles", None)
        writing = request.method not in SAFE_METHODS and getattr(view, "write_roles", None) is not None
        if writing:
            allowed = view.write_roles
        if allowed is None or user.role in allowed or user.role == Role.ADMIN:
            return True
        if _is_the_request(request):
            reason = (
                "role_may_not_write"
                if writing and user.role in (getattr(view, "allowed_roles", None) or ())
                else "role_not_allowed"
            )
            access_denied_record(
                actor=user, method=request.method, path=request.path, reason=reason, message=self.message
            )
        return False
