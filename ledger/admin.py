from django.contrib import admin
from django.db import models

from .models import Checkpoint, LedgerEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Recorded facts are changed only through services (each writes its ledger event), never by hand in the
    admin: superusers may list and open them, nobody may add, change or delete them here. Defined in the lowest
    app so that every app's admin can use it."""

    show_full_result_count = False  # no second COUNT(*) over big tables (events, predictions, metrics)

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        """Every field, the ones no form edits (ids, keys, timestamps) included, then the declared ones
        (display methods); not those in `exclude` (secrets) nor binary state."""
        hidden = set(self.exclude or ())
        meta = self.model._meta
        names = [f.name for f in meta.fields if f.name not in hidden and not isinstance(f, models.BinaryField)]
        names += [f.name for f in meta.many_to_many if f.name not in hidden]
        return [*names, *(name for name in self.readonly_fields if name not in names)]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [*(self.fields or ()), *self.readonly_fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerEvent)
class LedgerEventAdmin(ReadOnlyAdmin):
    """The ledger is append-only, even for administrators (PostgreSQL's triggers refuse it too)."""

    list_display = ("seq", "occurred_at", "action", "object_type", "object_id", "actor_username", "rejected")
    list_filter = ("action", "object_type", "actor_role", "rejected")
    search_fields = ("=object_id", "actor_username", "action", "=hash")
    date_hierarchy = "occurred_at"


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "signed_at", "key_id", "head_hash")
    list_filter = ("key_id",)
    search_fields = ("=seq", "=head_hash", "key_id")
