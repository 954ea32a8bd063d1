from django.contrib import admin

from .models import LedgerEvent


@admin.register(LedgerEvent)
class LedgerEventAdmin(admin.ModelAdmin):
    """Read-only: the ledger is append-only, even for administrators."""

    list_display = ("seq", "occurred_at", "action", "object_type", "object_id", "actor_username")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor_username")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
