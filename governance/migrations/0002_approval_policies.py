"""Default approval policies per risk tier (four-eyes for high risk)."""

from django.db import migrations

DEFAULTS = [("low", 1, 6, 1, 72, 48, False), ("medium", 1, 10, 2, 72, 24, False), ("high", 2, 20, 2, 48, 12, True)]


def forwards(apps, schema_editor) -> None:
    ApprovalPolicy = apps.get_model("governance", "ApprovalPolicy")
    for tier, approvals, sample, per_item, review_hours, escalation_hours, halt in DEFAULTS:
        ApprovalPolicy.objects.get_or_create(risk_tier=tier, defaults={
            "approvals_required": approvals, "review_sample_size": sample, "reviewers_per_item": per_item,
            "review_hours": review_hours, "escalation_hours": escalation_hours, "halt_on_overdue": halt})


class Migration(migrations.Migration):
    dependencies = [("governance", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
