"""Request and response shapes of the external-run API. The request serializers document the input (and the
small ones check it); the rules themselves live in tracking.services, which the MLflow layer calls too. Every
run (and provenance) output says `"source": "external", "verification": "reported"`."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.fields import StrictCharField, StrictIntegerField
from compression.engine.methods import SUPPORTED_METHODS
from tracking.models import (
    ENDED_STATUSES,
    MAX_KEY_LENGTH,
    MAX_METHOD_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    EngineerKey,
    ExternalRun,
    ExternalRunMetric,
    ExternalRunProvenance,
)
from tracking.selectors import metric_summary
from tracking.services.batch import (
    INT64_MAX,
    INT64_MIN,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    NAME_RULE,
)
from tracking.services.provenance import MAX_SIGNATURES
from tracking.services.runs import CODE_REFERENCE_FIELDS, MAX_INPUT_ARTIFACTS, MAX_SEEDS, MAX_TOOL_VERSION
from trust.dsse import INTOTO_PAYLOAD_TYPE

KEY_PATTERN = r"^[/\w.\- :]+$"
# Plain values (no labels), so the schema has one enum for each wherever it appears (also on the metrics page).
SOURCE_CHOICES = [ExternalRun.SOURCE]
VERIFICATION_CHOICES = [ExternalRun.VERIFICATION]


def _key_field():
    return serializers.RegexField(KEY_PATTERN, max_length=MAX_KEY_LENGTH, help_text=NAME_RULE)


# -- input ------------------------------------------------------------------------------------------------------


class CodeReferenceInput(serializers.Serializer):
    url = StrictCharField(required=False, allow_blank=True, max_length=CODE_REFERENCE_FIELDS["url"])
    commit = StrictCharField(required=False, allow_blank=True, max_length=CODE_REFERENCE_FIELDS["commit"])
    path = StrictCharField(required=False, allow_blank=True, max_length=CODE_REFERENCE_FIELDS["path"])


class ExternalRunInput(serializers.Serializer):
    experiment = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="One of your experiments.")
    method = StrictCharField(max_length=MAX_METHOD_LENGTH, help_text="The method as you name it (free text).")
    known_method = serializers.ChoiceField(
        choices=SUPPORTED_METHODS,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="The SafeShrink compression method it corresponds to, if any.",
    )
    name = StrictCharField(max_length=MAX_NAME_LENGTH, required=False, allow_blank=True, default="")
    parameters = serializers.DictField(required=False, help_text="The method's parameters (JSON).")
    code_reference = CodeReferenceInput(required=False, help_text="Where the code that ran lives.")
    tool_versions = serializers.DictField(
        child=StrictCharField(max_length=MAX_TOOL_VERSION), required=False, help_text="Tool name -> version."
    )
    hardware = serializers.DictField(required=False, help_text="What it ran on (JSON).")
    seeds = serializers.ListField(
        child=StrictIntegerField(min_value=INT64_MIN, max_value=INT64_MAX), required=False, max_length=MAX_SEEDS
    )
    tags = serializers.DictField(
        child=StrictCharField(max_length=MAX_TAG_VALUE_LENGTH, allow_blank=True),
        required=False,
        help_text="Tag key -> value. " + NAME_RULE,
    )
    input_artifacts = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=INT64_MAX),
        required=False,
        max_length=MAX_INPUT_ARTIFACTS,
        help_text="Artifacts the run read (e.g. the experiment's base model).",
    )
    output_artifact = StrictIntegerField(
        min_value=1, max_value=INT64_MAX, required=False, allow_null=True, help_text="The artifact the run produced."
    )
    started_at = serializers.DateTimeField(required=False, help_text="Default: now.")


class ParamInput(serializers.Serializer):
    key = _key_field()
    value = StrictCharField(max_length=MAX_PARAM_VALUE_LENGTH, allow_blank=True, trim_whitespace=False)


class TagInput(serializers.Serializer):
    key = _key_field()
    value = StrictCharField(max_length=MAX_TAG_VALUE_LENGTH, allow_blank=True, trim_whitespace=False)


class MetricInput(serializers.Serializer):
    key = _key_field()
    value = serializers.FloatField(help_text="A finite number.")
    step = StrictIntegerField(min_value=INT64_MIN, max_value=INT64_MAX, required=False, default=0)
    timestamp = StrictIntegerField(
        min_value=0,
        max_value=INT64_MAX,
        required=False,
        allow_null=True,
        help_text="Milliseconds since the Unix epoch; left out or null: when the server received it.",
    )


class LogBatchInput(serializers.Serializer):
    """Documentation of POST /api/external-runs/{id}/log/ (tracking.services.batch checks it, in one pass)."""

    params = serializers.ListField(child=ParamInput(), required=False, max_length=MAX_PARAMS_PER_BATCH)
    metrics = serializers.ListField(child=MetricInput(), required=False, max_length=MAX_METRICS_PER_BATCH)
    tags = serializers.ListField(child=TagInput(), required=False, max_length=MAX_TAGS_PER_BATCH)


class FinishInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=[str(s) for s in ENDED_STATUSES], default="finished")
    ended_at = serializers.DateTimeField(required=False, help_text="Default: now.")
    output_artifact = StrictIntegerField(min_value=1, max_value=INT64_MAX, required=False, allow_null=True)


class SignatureInput(serializers.Serializer):
    keyid = StrictCharField(required=False, allow_blank=True, max_length=200)
    sig = StrictCharField(help_text="Base64 Ed25519 signature over DSSE's PAE(payloadType, payload).")


class EnvelopeInput(serializers.Serializer):
    payloadType = serializers.ChoiceField(choices=[INTOTO_PAYLOAD_TYPE])  # noqa: N815 (DSSE's field name)
    payload = StrictCharField(help_text="Base64 of an in-toto Statement (UTF-8 JSON).")
    signatures = serializers.ListField(child=SignatureInput(), min_length=1, max_length=MAX_SIGNATURES)


class ProvenanceInput(serializers.Serializer):
    """Documentation of POST /api/external-runs/{id}/provenance/ (tracking.services.provenance checks it)."""

    envelope = EnvelopeInput()


class EngineerKeyInput(serializers.Serializer):
    public_key = StrictCharField(
        max_length=4000, help_text="Ed25519 public key: PEM (SubjectPublicKeyInfo) or base64 of its 32 raw bytes."
    )
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


# -- output -----------------------------------------------------------------------------------------------------


class _Reported(serializers.Serializer):
    source = serializers.ChoiceField(choices=SOURCE_CHOICES, read_only=True, default=ExternalRun.SOURCE)
    verification = serializers.ChoiceField(
        choices=VERIFICATION_CHOICES, read_only=True, default=ExternalRun.VERIFICATION
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["source"], data["verification"] = ExternalRun.SOURCE, ExternalRun.VERIFICATION
        return data


class ExternalRunSummaryOutput(_Reported, serializers.ModelSerializer):
    recorded_by = serializers.CharField(source="recorded_by.username", read_only=True)

    class Meta:
        model = ExternalRun
        fields = (
            "id",
            "run_uuid",
            "experiment",
            "recorded_by",
            "name",
            "method",
            "known_method",
            "status",
            "started_at",
            "ended_at",
            "output_artifact",
            "contents_digest",
            "source",
            "verification",
            "created_at",
        )


class MetricSummaryOutput(serializers.Serializer):
    key = serializers.CharField()
    count = serializers.IntegerField()
    first_step = serializers.IntegerField()
    last_step = serializers.IntegerField()
    latest_value = serializers.FloatField(help_text="The value at the highest step (then the latest timestamp).")
    latest_timestamp = serializers.IntegerField()


class ProvenanceOutput(_Reported, serializers.ModelSerializer):
    attached_by = serializers.CharField(source="attached_by.username", read_only=True)
    subject_matches_output = serializers.SerializerMethodField(
        help_text="Whether a subject of the statement has the output artifact's digest as its sha256 "
        "(null: the run names no output artifact)."
    )

    class Meta:
        model = ExternalRunProvenance
        fields = (
            "id",
            "run",
            "attached_by",
            "payload_type",
            "statement",
            "envelope_digest",
            "signature_verified",
            "key_id",
            "verification_reason",
            "subject_matches_output",
            "source",
            "verification",
            "created_at",
        )

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_subject_matches_output(self, record: ExternalRunProvenance) -> bool | None:
        output = record.run.output_artifact
        if output is None:
            return None
        subjects = record.statement.get("subject") if isinstance(record.statement, dict) else None
        return any(
            isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get("sha256") == output.digest
            for s in subjects or ()
        )


class ExternalRunOutput(ExternalRunSummaryOutput):
    params = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    provenance = ProvenanceOutput(many=True, read_only=True)

    class Meta(ExternalRunSummaryOutput.Meta):
        fields = (
            *ExternalRunSummaryOutput.Meta.fields,
            "parameters",
            "code_reference",
            "tool_versions",
            "hardware",
            "seeds",
            "input_artifacts",
            "params",
            "tags",
            "metrics",
            "provenance",
        )

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_params(self, run: ExternalRun) -> dict:
        return dict(run.params.order_by("key").values_list("key", "value"))

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_tags(self, run: ExternalRun) -> dict:
        return dict(run.tags.order_by("key").values_list("key", "value"))

    @extend_schema_field(MetricSummaryOutput(many=True))
    def get_metrics(self, run: ExternalRun) -> list:
        return MetricSummaryOutput(metric_summary(run), many=True).data


class MetricOutput(serializers.ModelSerializer):
    class Meta:
        model = ExternalRunMetric
        fields = ("key", "value", "step", "timestamp")


class LogOutput(_Reported):
    run = serializers.IntegerField(source="run.pk")
    params_added = serializers.IntegerField()
    metrics_added = serializers.IntegerField()
    tags_set = serializers.IntegerField()
    digest = serializers.CharField(allow_null=True, help_text="sha256 of what this request added (in the ledger).")


class EngineerKeyOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = EngineerKey
        fields = ("id", "key_id", "name", "public_key", "owner", "created_at")
