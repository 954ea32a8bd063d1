from django.contrib import admin

from compression.admin import ReadOnlyAdmin

from .models import Export


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    """Signed dossiers and evidence bundles: what a regulator downloads must stay as it was signed."""

    list_display = ("id", "release", "status", "requested_by", "bundle_digest", "pdf_bytes", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=release__id", "=bundle_digest", "=pdf_sha256", "requested_by__username")
    list_select_related = ("release", "requested_by")
