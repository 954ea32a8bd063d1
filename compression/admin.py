from django.contrib import admin

from ledger.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import ArtifactUpload, CompressionRun, Experiment, ModelArtifact, UploadFile, WorkerHeartbeat

__all__ = ["ReadOnlyAdmin", "ReadOnlyInline"]  # other apps' admins import them from here too


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ReadOnlyAdmin):
    list_display = ("name", "digest", "kind", "format", "size_bytes", "signature_status", "parent", "created_at")
    list_filter = ("kind", "format", "signature_status")
    search_fields = ("name", "=digest")
    list_select_related = ("parent",)
    web_url_name = "web:artifact"


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "risk_tier", "base_artifact", "created_at")
    list_filter = ("risk_tier",)
    search_fields = ("name", "owner__username", "=base_artifact__digest")
    list_select_related = ("owner", "base_artifact")
    web_url_name = "web:experiment"


@admin.register(CompressionRun)
class CompressionRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "experiment", "method", "status", "progress_percent", "requested_by", "created_at")
    list_filter = ("status", "method")
    search_fields = ("=id", "experiment__name", "requested_by__username", "failure_code")
    list_select_related = ("experiment", "requested_by")
    web_url_name = "web:run"


class UploadFileInline(ReadOnlyInline):
    model = UploadFile
    fields = ("path", "size", "received", "sha256")


@admin.register(ArtifactUpload)
class ArtifactUploadAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "owner", "status", "total_bytes", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("name", "=key", "owner__username", "=manifest_digest")
    list_select_related = ("owner",)
    inlines = [UploadFileInline]


@admin.register(UploadFile)
class UploadFileAdmin(ReadOnlyAdmin):
    list_display = ("id", "upload", "path", "size", "received", "sha256")
    search_fields = ("path", "=upload__key", "=sha256")
    list_select_related = ("upload",)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    """The workers' capabilities and heartbeats (compression.services.workers): which queues each serves."""

    list_display = (
        "hostname",
        "live",
        "queues",
        "device",
        "device_name",
        "memory_bytes",
        "cpu_isa",
        "torch_version",
        "cuda_version",
        "last_seen",
        "stopped_at",
    )
    list_filter = ("device",)
    search_fields = ("hostname", "device_name")
    readonly_fields = ("live",)

    @admin.display(boolean=True, description="live")
    def live(self, obj: WorkerHeartbeat) -> bool:
        from compression.services.workers import worker_is_live

        return worker_is_live(obj)
