from django.contrib import admin

from .models import CompressionRun, Experiment, ModelArtifact


class ReadOnlyAdmin(admin.ModelAdmin):
    """Recorded facts are changed only through services, never by hand in the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ReadOnlyAdmin):
    list_display = ("name", "digest", "format", "size_bytes", "parent", "created_at")
    list_filter = ("format",)
    search_fields = ("name", "digest")


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "risk_tier", "base_artifact", "created_at")
    list_filter = ("risk_tier",)


@admin.register(CompressionRun)
class CompressionRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "experiment", "method", "status", "progress_percent", "created_at")
    list_filter = ("status", "method")
