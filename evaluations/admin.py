from django.contrib import admin

from compression.admin import ReadOnlyAdmin

from .models import Comparison, EvaluationRun, Suite, SuiteVersion


@admin.register(Suite)
class SuiteAdmin(ReadOnlyAdmin):
    list_display = ("name", "created_at")


@admin.register(SuiteVersion)
class SuiteVersionAdmin(ReadOnlyAdmin):
    list_display = ("suite", "number", "digest", "example_count", "created_at")


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "artifact", "suite_version", "status", "progress_percent", "created_at")
    list_filter = ("status",)


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ("id", "baseline_run", "candidate_run", "status", "flip_count", "created_at")
