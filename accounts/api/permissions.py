"""Role checks for API views. Object-level rules live in the services."""

from rest_framework.permissions import BasePermission

from accounts.models import Role


class HasRole(BasePermission):
    """Allows only users whose role is in `view.allowed_roles` (admins always)."""

    message = "Your role may not use this endpoint."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        allowed = getattr(view, "allowed_roles", None)
        return allowed is None or user.role in allowed or user.role == Role.ADMIN
