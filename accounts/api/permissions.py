"""Role checks for API views. Object-level rules live in the services."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Role


class HasRole(BasePermission):
    """Allows only users whose role is in `view.allowed_roles` (admins always); for unsafe methods,
    `view.write_roles` when the view sets it. Checked before any input is parsed, so a role that may
    not write gets 403 whatever it sent."""

    message = "Your role may not use this endpoint."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        allowed = getattr(view, "allowed_roles", None)
        if request.method not in SAFE_METHODS and getattr(view, "write_roles", None) is not None:
            allowed = view.write_roles
        return allowed is None or user.role in allowed or user.role == Role.ADMIN
