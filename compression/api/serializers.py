from rest_framework import serializers

from compression.models import CompressionRun, Experiment, ModelArtifact, RiskTier


class ArtifactRegisterInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    path = serializers.CharField(
        help_text="An absolute path to a model directory on the server, inside one of the "
        "folders the operator allowed (SAFESHRINK_IMPORT_ROOTS; none by default). "
        "Symlinks are refused."
    )
    parent = serializers.IntegerField(required=False, allow_null=True)


class ArtifactOutput(serializers.ModelSerializer):
    class Meta:
        model = ModelArtifact
        fields = (
            "id",
            "name",
            "digest",
            "format",
            "size_bytes",
            "parameter_count",
            "parent",
            "labels",
            "manifest",
            "created_at",
        )


class ExperimentInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    base_artifact = serializers.IntegerField()
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    unsafe_labels = serializers.ListField(child=serializers.CharField(), allow_empty=False)


class ExperimentOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")

    class Meta:
        model = Experiment
        fields = ("id", "name", "description", "owner", "risk_tier", "base_artifact", "unsafe_labels", "created_at")


class RunRequestInput(serializers.Serializer):
    method = serializers.CharField(max_length=64)
    parameters = serializers.DictField(required=False, default=dict)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)
    data_suite_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Suite version for calibration / training data."
    )


class RunOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = CompressionRun
        fields = (
            "id",
            "experiment",
            "method",
            "parameters",
            "seed",
            "data_source",
            "status",
            "progress",
            "attempts",
            "started_at",
            "finished_at",
            "wall_seconds",
            "failure_code",
            "failure_reason",
            "output_artifact",
            "provenance",
            "provenance_envelope",
            "created_at",
        )

    def get_progress(self, run: CompressionRun) -> dict:
        return {"stage": run.progress_stage, "percent": run.progress_percent}


class RunSummaryOutput(RunOutput):
    """A run as a list row: without its provenance statement and signed envelope (GET /api/runs/{id}/)."""

    class Meta(RunOutput.Meta):
        fields = tuple(f for f in RunOutput.Meta.fields if f not in ("provenance", "provenance_envelope"))
