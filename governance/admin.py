"""Governance records in the admin: listed and opened by superusers, never added, changed or deleted by hand
(every change goes through a service that writes its ledger event). A release's gate is shown as a table."""

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from compression.admin import ReadOnlyAdmin, ReadOnlyInline

from .models import (
    ApprovalPolicy,
    AuthorityGrant,
    Decision,
    Escalation,
    FailureMode,
    Incident,
    MitigationTemplate,
    RegulatorGrant,
    Release,
    RevalidationSchedule,
    ReviewLabel,
    ReviewTask,
    RiskTaxonomy,
    RolloutStage,
    ThresholdPolicy,
    ThresholdRule,
    WebhookDelivery,
    WebhookEndpoint,
)

ZONE_COLOURS = {"green": "#1f7a3a", "amber": "#b54708", "red": "#b42318"}
SCROLL_X = "overflow-x:auto;max-width:100%"  # a wide table scrolls inside the admin's content column


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _thresholds(verdict: dict) -> str:
    """The limits as governance.gate.zone_of applies them: green at or beyond the green limit, red strictly
    beyond the red limit, amber between."""
    green, red = _number(verdict.get("green_limit")), _number(verdict.get("red_limit"))
    if verdict.get("higher_is_better"):
        return f"green ≥ {green}, red < {red}"
    return f"green ≤ {green}, red > {red}"


def _zone(zone) -> str:
    colour = ZONE_COLOURS.get(zone, "#475467")
    return format_html('<strong style="color:{}">{}</strong>', colour, str(zone or "—").upper())


def gate_table(gate) -> str:
    """A release's gate (Release.gate: governance.gate's verdicts as stored) as an HTML table: rule, metric,
    group, judged value, thresholds, zone and why. Tolerates verdicts missing keys (nothing here may fail)."""
    verdicts = [v for v in gate or [] if isinstance(v, dict)]
    if not verdicts:
        return format_html('<p class="help">{}</p>', "No gate yet: the release has not been judged.")
    rows = format_html_join(
        "",
        "<tr><td><strong>{}</strong> <code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td>"
        '<td>{}</td><td>{}</td><td>{}</td><td style="white-space:nowrap">{}</td><td>{}</td></tr>',
        (
            (
                v.get("title") or v.get("rule") or "",
                v.get("rule") or "",
                v.get("metric") or "",
                v.get("group") or "",
                " ".join(str(v.get(k)) for k in ("kind", "bound") if v.get(k)),
                _number(v.get("value")),
                _thresholds(v),
                _zone(v.get("zone")),
                "; ".join(x for x in (v.get("reason") or "", _flip_basis(v)) if x),
            )
            for v in verdicts
        ),
    )
    return format_html(
        '<div style="{}"><table class="gate-table"><thead><tr><th>Rule</th><th>Metric</th><th>Group</th>'
        "<th>Judged</th><th>Value</th><th>Thresholds</th><th>Zone</th><th>Note</th></tr></thead>"
        "<tbody>{}</tbody></table></div>",
        SCROLL_X,
        rows,
    )


def review_outcome_table(outcome) -> str:
    """A release's blind review outcome (governance.services.reviews.review_outcome as stored) as a small table.
    Tolerates outcomes missing keys; keys it does not know are listed as they are."""
    if not isinstance(outcome, dict) or not outcome:
        return format_html('<p class="help">{}</p>', "No blind review outcome: the release was not reviewed.")
    names = dict(ReviewLabel.choices)
    labels = outcome.get("labels") if isinstance(outcome.get("labels"), dict) else {}
    kappa = outcome.get("kappa")
    known = {
        "verdict": ("Verdict", str(outcome.get("verdict") or "—").upper()),
        "items": ("Items reviewed", _number(outcome.get("items"))),
        "reviews": ("Reviews", _number(outcome.get("reviews"))),
        "labels": ("Labels", "; ".join(f"{names.get(k, k)}: {v}" for k, v in sorted(labels.items())) or "—"),
        "deviation_items": ("Items judged a safety deviation", _number(outcome.get("deviation_items"))),
        "deviation_share": ("Deviation share", _number(outcome.get("deviation_share"))),
        "max_deviation_share": ("Largest share that passes", _number(outcome.get("max_deviation_share"))),
        "kappa": ("Cohen's kappa", _number(kappa)),
        "kappa_status": ("Kappa status", str(outcome.get("kappa_status") or "—")),
        "kappa_pairs": ("Doubly-reviewed items", _number(outcome.get("kappa_pairs"))),
    }
    rows = [known[k] for k in known if k in outcome]
    rows += [(k, str(v)) for k, v in sorted(outcome.items()) if k not in known]
    return format_html(
        '<div style="{}"><table class="review-outcome"><tbody>{}</tbody></table></div>',
        SCROLL_X,
        format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
    )


def _flip_basis(verdict: dict) -> str:
    basis = verdict.get("flip_basis")
    return f"flips counted: {basis}" if basis else ""


class FailureModeInline(ReadOnlyInline):
    model = FailureMode
    fields = ("code", "category", "title", "severity", "likelihood")
    show_change_link = False


class ThresholdRuleInline(ReadOnlyInline):
    model = ThresholdRule
    fields = ("code", "title", "metric", "group", "kind", "bound", "higher_is_better", "green_limit", "red_limit")
    show_change_link = False


@admin.register(RiskTaxonomy)
class RiskTaxonomyAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "published_at", "created_by")
    search_fields = ("name",)
    list_select_related = ("created_by",)
    inlines = [FailureModeInline]


@admin.register(FailureMode)
class FailureModeAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "category", "severity", "likelihood", "taxonomy")
    list_filter = ("severity", "category")
    search_fields = ("code", "title", "category")
    list_select_related = ("taxonomy",)


@admin.register(ThresholdPolicy)
class ThresholdPolicyAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "flip_basis", "taxonomy", "published_at")
    list_filter = ("flip_basis",)
    search_fields = ("name",)
    list_select_related = ("taxonomy",)
    inlines = [ThresholdRuleInline]


@admin.register(ThresholdRule)
class ThresholdRuleAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "policy", "metric", "group", "kind", "green_limit", "red_limit")
    list_filter = ("kind", "bound", "metric")
    search_fields = ("code", "title", "metric", "policy__name")
    list_select_related = ("policy",)


class DecisionInline(ReadOnlyInline):
    model = Decision
    fields = ("kind", "actor", "rationale", "release_version", "created_at")


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "experiment", "status", "gate_zone", "version", "created_by", "updated_at")
    list_filter = ("status", "gate_zone")
    search_fields = ("=id", "experiment__name", "=candidate_digest", "created_by__username")
    list_select_related = ("experiment", "created_by")
    exclude = ("gate", "review_outcome")  # shown as tables, not as JSON blobs
    readonly_fields = ("gate_table", "review_outcome_table")
    inlines = [DecisionInline]
    web_url_name = "web:release"

    def get_fieldsets(self, request, obj=None):
        gate = ["gate_zone", "gate_table", "review_outcome_table"]
        fields = [name for name in self.get_fields(request, obj) if name not in gate]
        return [(None, {"fields": fields}), ("Gate and blind review", {"fields": gate})]

    @admin.display(description="Gate")
    def gate_table(self, obj: Release) -> str:
        return gate_table(obj.gate)

    @admin.display(description="Blind review")
    def review_outcome_table(self, obj: Release) -> str:
        return review_outcome_table(obj.review_outcome)


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ("id", "release", "kind", "actor", "actor_role", "release_version", "created_at")
    list_filter = ("kind", "actor_role")
    search_fields = ("=release__id", "actor__username", "rationale", "=candidate_digest")
    list_select_related = ("release", "actor")


@admin.register(AuthorityGrant)
class AuthorityGrantAdmin(ReadOnlyAdmin):
    list_display = ("user", "risk_tier", "level", "granted_by", "granted_at")
    list_filter = ("risk_tier", "level")
    search_fields = ("user__username", "granted_by__username")
    list_select_related = ("user", "granted_by")


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ReadOnlyAdmin):
    list_display = ("risk_tier", "approvals_required", "review_sample_size", "reviewers_per_item", "review_hours")
    list_filter = ("halt_on_overdue",)
    search_fields = ("risk_tier",)


@admin.register(RolloutStage)
class RolloutStageAdmin(ReadOnlyAdmin):
    list_display = ("release", "position", "percent", "starts_at", "started_at")
    search_fields = ("=release__id",)
    list_select_related = ("release",)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ("id", "release", "trigger", "level", "owner_role", "status", "deadline", "resolved_by")
    list_filter = ("status", "trigger", "level")
    search_fields = ("=release__id", "summary", "resolution")
    list_select_related = ("release", "resolved_by")


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "release", "flip", "reviewer", "label", "deadline", "submitted_at")
    list_filter = ("label",)
    search_fields = ("=release__id", "reviewer__username", "note")
    list_select_related = ("release", "flip", "reviewer")


@admin.register(MitigationTemplate)
class MitigationTemplateAdmin(ReadOnlyAdmin):
    list_display = ("code", "title", "kind")
    list_filter = ("kind",)
    search_fields = ("code", "title", "description")


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("id", "release", "severity", "title", "reported_by", "opened_at")
    list_filter = ("severity",)
    search_fields = ("=release__id", "title", "description", "reported_by__username")
    list_select_related = ("release", "reported_by")


@admin.register(RevalidationSchedule)
class RevalidationScheduleAdmin(ReadOnlyAdmin):
    list_display = ("release", "interval_hours", "next_run_at", "last_run_at", "runs")
    search_fields = ("=release__id",)
    list_select_related = ("release",)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("url", "active")
    list_filter = ("active",)
    search_fields = ("url",)
    exclude = ("secret",)  # the HMAC key is not shown, not even to administrators


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "endpoint", "event", "status", "attempts", "created_at", "delivered_at")
    list_filter = ("status", "event")
    search_fields = ("event", "endpoint__url", "last_error")
    list_select_related = ("endpoint",)


@admin.register(RegulatorGrant)
class RegulatorGrantAdmin(ReadOnlyAdmin):
    list_display = ("id", "regulator", "release", "granted_by", "valid_from", "valid_until", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("regulator__username", "=release__id", "granted_by__username", "reason")
    list_select_related = ("regulator", "release", "granted_by")
