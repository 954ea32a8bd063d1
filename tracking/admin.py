"""External runs as reported by their engineers: read-only here as everywhere (a param never changes; every
logging request is a ledger event)."""

from django.contrib import admin

from compression.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import (
    EngineerKey,
    ExternalRun,
    ExternalRunMetric,
    ExternalRunParam,
    ExternalRunProvenance,
    ExternalRunTag,
    RegisteredModel,
    RegisteredModelVersion,
    RunArtifactFile,
)


class ExternalRunParamInline(ReadOnlyInline):
    model = ExternalRunParam
    fields = ("key", "value")
    show_change_link = False


class ExternalRunTagInline(ExternalRunParamInline):
    model = ExternalRunTag


@admin.register(ExternalRun)
class ExternalRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "run_uuid", "experiment", "method", "known_method", "status", "recorded_by", "started_at")
    list_filter = ("status", "known_method")
    search_fields = ("=run_uuid", "name", "method", "experiment__name", "recorded_by__username")
    list_select_related = ("experiment", "recorded_by")
    web_url_name = "web:external-run"
    inlines = [ExternalRunParamInline, ExternalRunTagInline]  # metrics can be millions of rows: their own list


@admin.register(ExternalRunParam)
class ExternalRunParamAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "key", "value")
    search_fields = ("key", "=run__run_uuid")
    list_select_related = ("run",)


@admin.register(ExternalRunTag)
class ExternalRunTagAdmin(ExternalRunParamAdmin):
    pass


@admin.register(ExternalRunMetric)
class ExternalRunMetricAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "key", "step", "value", "timestamp")
    search_fields = ("key", "=run__run_uuid")
    list_select_related = ("run",)


@admin.register(EngineerKey)
class EngineerKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "name", "owner", "created_at")
    search_fields = ("=key_id", "name", "owner__username")
    list_select_related = ("owner",)


@admin.register(ExternalRunProvenance)
class ExternalRunProvenanceAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "signature_verified", "key_id", "attached_by", "created_at")
    list_filter = ("signature_verified", "payload_type")
    search_fields = ("=run__run_uuid", "=envelope_digest", "=key_id")
    list_select_related = ("run", "attached_by")


@admin.register(RunArtifactFile)
class RunArtifactFileAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "path", "size", "sha256", "logged_at")
    search_fields = ("path", "=sha256", "=run__run_uuid")
    list_select_related = ("run",)


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "created_at", "updated_at")
    search_fields = ("name", "owner__username")
    list_select_related = ("owner",)


@admin.register(RegisteredModelVersion)
class RegisteredModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "registered_model", "version", "run", "artifact", "created_by", "created_at")
    search_fields = ("registered_model__name", "=run__run_uuid", "=artifact__digest")
    list_select_related = ("registered_model", "run", "artifact", "created_by")
