from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class SafeShrinkUserAdmin(UserAdmin):
    """Accounts stay editable (password, active, role), but are never deleted: ledger events name their actor
    by id, so a person who leaves is deactivated instead."""

    list_display = ("username", "email", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff", "is_superuser")
    search_fields = ("username", "email", "first_name", "last_name")
    fieldsets = (*UserAdmin.fieldsets, ("SafeShrink", {"fields": ("role",)}))

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
