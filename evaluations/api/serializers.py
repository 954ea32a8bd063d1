from rest_framework import serializers

from evaluations.models import Comparison, EvaluationRun, Example, Flip, Suite, SuiteVersion


class SuiteVersionOutput(serializers.ModelSerializer):
    suite = serializers.CharField(source="suite.name")

    class Meta:
        model = SuiteVersion
        fields = ("id", "suite", "number", "digest", "unsafe_labels", "example_count", "source", "created_at")


class SuiteOutput(serializers.ModelSerializer):
    versions = SuiteVersionOutput(many=True, read_only=True)

    class Meta:
        model = Suite
        fields = ("id", "name", "description", "versions", "created_at")


class ExampleOutput(serializers.ModelSerializer):
    class Meta:
        model = Example
        fields = ("id", "external_id", "position", "text", "label", "is_unsafe", "slice", "tags", "subgroup", "source")


class EvaluationOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    artifact_digest = serializers.CharField(source="artifact.digest")

    class Meta:
        model = EvaluationRun
        fields = ("id", "artifact", "artifact_digest", "suite_version", "config", "config_digest", "status",
                  "progress", "attempts", "started_at", "finished_at", "wall_seconds", "failure_code",
                  "failure_reason", "metrics", "runtime", "created_at")

    def get_progress(self, run: EvaluationRun) -> dict:
        return {"stage": run.progress_stage, "percent": run.progress_percent}


class ComparisonOutput(serializers.ModelSerializer):
    class Meta:
        model = Comparison
        fields = ("id", "baseline_run", "candidate_run", "status", "statistics", "results", "flip_count", "created_at")


class FlipOutput(serializers.ModelSerializer):
    example = ExampleOutput()

    class Meta:
        model = Flip
        fields = ("id", "example", "baseline_prob", "candidate_prob", "direction", "candidate_correct")
