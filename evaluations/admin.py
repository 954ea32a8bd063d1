from django.contrib import admin

from compression.admin import ReadOnlyAdmin

from .models import Comparison, EvaluationRun, Example, Flip, Prediction, Suite, SuiteImport, SuiteVersion


@admin.register(Suite)
class SuiteAdmin(ReadOnlyAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)
    list_select_related = ("created_by",)


@admin.register(SuiteVersion)
class SuiteVersionAdmin(ReadOnlyAdmin):
    list_display = ("suite", "number", "kind", "digest", "example_count", "created_at")
    list_filter = ("kind",)
    search_fields = ("suite__name", "=digest")
    list_select_related = ("suite",)


@admin.register(Example)
class ExampleAdmin(ReadOnlyAdmin):
    list_display = ("id", "suite_version", "position", "external_id", "label", "is_unsafe", "slice", "subgroup")
    list_filter = ("slice", "is_unsafe")
    search_fields = ("=external_id", "text", "=subgroup")
    list_select_related = ("suite_version__suite",)


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "artifact", "suite_version", "status", "progress_percent", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "artifact__name", "=artifact__digest", "=config_digest", "failure_code")
    list_select_related = ("artifact", "suite_version__suite")
    web_url_name = "web:evaluation"


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "example", "predicted_label", "unsafe_prob", "decision_unsafe", "stable", "behaviour")
    list_filter = ("decision_unsafe", "stable", "behaviour")
    search_fields = ("=run__id", "=example__external_id")
    list_select_related = ("run", "example")


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ("id", "baseline_run", "candidate_run", "status", "flip_count", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=baseline_run__id", "=candidate_run__id")
    list_select_related = ("baseline_run", "candidate_run")
    web_url_name = "web:comparison"


@admin.register(Flip)
class FlipAdmin(ReadOnlyAdmin):
    list_display = ("id", "comparison", "example", "direction", "candidate_correct", "stable", "candidate_behaviour")
    list_filter = ("direction", "stable", "candidate_correct")
    search_fields = ("=comparison__id", "=example__external_id")
    list_select_related = ("comparison", "example")


@admin.register(SuiteImport)
class SuiteImportAdmin(ReadOnlyAdmin):
    list_display = ("id", "suite_name", "file_name", "status", "rows_done", "rows_total", "requested_by", "created_at")
    list_filter = ("status", "format")
    search_fields = ("suite_name", "file_name", "=file_sha256", "requested_by__username")
    list_select_related = ("requested_by",)
