import json

from django.contrib import admin
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from .models import Checkpoint, LedgerEvent

JSON_BLOCK_STYLE = "max-height:24em;max-width:60em;overflow:auto;white-space:pre;margin:0"


def json_block(value) -> str:
    """A JSON value pretty-printed (escaped) in a scrolling <pre>, not as one long line."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="json" style="{}">{}</pre>', JSON_BLOCK_STYLE, text)


def _json_display(field: models.JSONField):
    def show(obj) -> str:
        return json_block(getattr(obj, field.attname))

    show.__name__ = field.name  # the admin takes the field's help text and CSS class from this name
    show.short_description = field.verbose_name  # type: ignore[attr-defined]
    return show


class ReadOnlyAdmin(admin.ModelAdmin):
    """Recorded facts are changed only through services (each writes its ledger event), never by hand in the
    admin: superusers may list and open them, nobody may add, change or delete them here. Defined in the lowest
    app so that every app's admin can use it. JSON fields are shown pretty-printed in a scrolling block; with
    `web_url_name` ("web:run"), the change page links to the record's page on the site."""

    show_full_result_count = False  # no second COUNT(*) over big tables (events, predictions, metrics)
    web_url_name: str | None = None

    def __init__(self, model, admin_site) -> None:
        super().__init__(model, admin_site)
        # Made once: the admin matches the callables of the readonly fields and the fieldsets by identity.
        self._json_displays = {f.name: _json_display(f) for f in model._meta.fields if isinstance(f, models.JSONField)}

    def get_readonly_fields(self, request, obj=None) -> list:
        """Every field, the ones no form edits (ids, keys, timestamps) included, then the declared ones
        (display methods); not those in `exclude` (secrets) nor binary state. JSON fields as `json_block`s."""
        hidden = set(self.exclude or ())
        meta = self.model._meta
        names = [f.name for f in meta.fields if f.name not in hidden and not isinstance(f, models.BinaryField)]
        names += [f.name for f in meta.many_to_many if f.name not in hidden]
        declared = [name for name in self.readonly_fields if name not in names and name != "web_page"]
        page = ["web_page"] if self.web_url_name and obj is not None else []  # first: the way to the site
        return [*page, *(self._json_displays.get(name, name) for name in names), *declared]

    @admin.display(description="Page on the site")
    def web_page(self, obj) -> str:
        try:
            url = reverse(self.web_url_name or "", args=[obj.pk])
        except NoReverseMatch:
            return "—"
        return format_html('<a href="{}">{}</a>', url, url)

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
