from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from evaluations.models import Comparison, EvaluationRun, Example, Flip, Suite, SuiteImport, SuiteVersion


class SuiteVersionOutput(serializers.ModelSerializer):
    suite = serializers.CharField(source="suite.name")

    class Meta:
        model = SuiteVersion
        fields = (
            "id",
            "suite",
            "number",
            "digest",
            "kind",
            "judge",
            "unsafe_labels",
            "example_count",
            "source",
            "created_at",
        )


class SuiteOutput(serializers.ModelSerializer):
    versions = SuiteVersionOutput(many=True, read_only=True)

    class Meta:
        model = Suite
        fields = ("id", "name", "description", "versions", "created_at")


class ExampleOutput(serializers.ModelSerializer):
    class Meta:
        model = Example
        fields = (
            "id",
            "external_id",
            "position",
            "text",
            "label",
            "is_unsafe",
            "slice",
            "tags",
            "subgroup",
            "reference",
            "source",
        )


class EvaluationOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    artifact_digest = serializers.CharField(source="artifact.digest")

    class Meta:
        model = EvaluationRun
        fields = (
            "id",
            "artifact",
            "artifact_digest",
            "suite_version",
            "config",
            "config_digest",
            "status",
            "progress",
            "attempts",
            "started_at",
            "finished_at",
            "wall_seconds",
            "failure_code",
            "failure_reason",
            "metrics",
            "runtime",
            "stability",
            "predictions_digest",
            "predictions_rows",
            "predictions_bytes",
            "created_at",
        )

    def get_progress(self, run: EvaluationRun) -> dict:
        return {"stage": run.progress_stage, "percent": run.progress_percent}


class ComparisonOutput(serializers.ModelSerializer):
    class Meta:
        model = Comparison
        fields = ("id", "baseline_run", "candidate_run", "status", "statistics", "results", "flip_count", "created_at")
        extra_kwargs = {
            "results": {
                "help_text": "As computed: `groups` (per group n, flips, stable_flips, metrics, McNemar on all and on "
                "stable flips, instability), `stability` (both runs' stability passes and the flips that hold in "
                "both; null when a run had none) and `runtime` (both models timed side by side)."
            },
            "statistics": {
                "help_text": "How the results were computed: bootstrap settings, test methods (`stable_test`), "
                "the deployment `profile`."
            },
        }


class FlipOutput(serializers.ModelSerializer):
    example = ExampleOutput()

    class Meta:
        model = Flip
        fields = (
            "id",
            "example",
            "baseline_prob",
            "candidate_prob",
            "direction",
            "candidate_correct",
            "stable",
            "baseline_behaviour",
            "candidate_behaviour",
            "baseline_output",
            "candidate_output",
        )
        extra_kwargs = {
            "baseline_prob": {
                "help_text": "Classifiers: the unsafe probability; chat models: the judge's refusal one."
            },
            "baseline_behaviour": {
                "help_text": "Chat models: what the baseline did (compliance, refusal, degenerate)."
            },
        }


class SuiteImportProgressOutput(serializers.Serializer):
    stage = serializers.CharField(help_text="queued, reading (parsing and checking every row), storing, done.")
    rows_done = serializers.IntegerField(help_text="Rows stored so far (in the import's open transaction).")
    rows_total = serializers.IntegerField(allow_null=True, help_text="Rows in the file, known once it is read.")


class SuiteImportOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="This import's status URL (poll it until succeeded or failed).")
    suite = serializers.CharField(source="suite_name")
    progress = serializers.SerializerMethodField()
    suite_version = SuiteVersionOutput(read_only=True, allow_null=True)

    class Meta:
        model = SuiteImport
        fields = (
            "id",
            "url",
            "suite",
            "status",
            "progress",
            "error",
            "suite_version",
            "file_name",
            "file_size",
            "file_sha256",
            "format",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        )

    def get_url(self, job: SuiteImport) -> str:
        from django.urls import reverse

        return reverse("suite-import-detail", kwargs={"pk": job.pk})

    @extend_schema_field(SuiteImportProgressOutput)
    def get_progress(self, job: SuiteImport) -> dict:
        return {"stage": job.stage or "queued", "rows_done": job.rows_done, "rows_total": job.rows_total}
