from django.contrib import admin

from compression.admin import ReadOnlyAdmin

from .models import Decision, FailureMode, Release, RiskTaxonomy, ThresholdPolicy, ThresholdRule


class FailureModeInline(admin.TabularInline):
    model = FailureMode
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ThresholdRuleInline(FailureModeInline):
    model = ThresholdRule


@admin.register(RiskTaxonomy)
class RiskTaxonomyAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "published_at")
    inlines = [FailureModeInline]


@admin.register(ThresholdPolicy)
class ThresholdPolicyAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "published_at")
    inlines = [ThresholdRuleInline]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "experiment", "status", "gate_zone", "version", "updated_at")
    list_filter = ("status", "gate_zone")


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("release", "kind", "actor", "created_at")
