from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compression.engine.methods import (
    DATA_FIELD_DOCS,
    METHOD_SCHEMAS,
    METHOD_SUMMARIES,
    PARAMETER_KINDS,
    SUPPORTED_METHODS,
    ParamSpec,
)
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
            "kind",
            "chat_template_digest",
            "size_bytes",
            "parameter_count",
            "parent",
            "labels",
            "manifest",
            "system_signature_key",
            "system_signed_at",
            "signature_status",
            "signature_key_id",
            "signature_reason",
            "signature_checked_at",
            "created_at",
        )


class ExperimentInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    base_artifact = serializers.IntegerField()
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    unsafe_labels = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        allow_empty=False,
        help_text="Classifiers: the classes whose probabilities sum to 'unsafe' (required). Chat models: omit "
        "(the decision is 'refusal').",
    )
    generation = serializers.JSONField(
        required=False,
        help_text="Chat models only: how the base model is served and evaluated, some of system_prompt, "
        "max_new_tokens (1-512, default 64), stop_strings, decoding ('greedy').",
    )


class ExperimentOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")

    class Meta:
        model = Experiment
        fields = (
            "id",
            "name",
            "description",
            "owner",
            "risk_tier",
            "base_artifact",
            "unsafe_labels",
            "generation",
            "created_at",
        )


def parameter_openapi(spec: ParamSpec) -> dict[str, Any]:
    """One engine parameter as an OpenAPI 3.0 schema: the same type, bounds, choices and default the engine
    checks (compression.engine.methods), so that what the schema allows is what a run request accepts."""
    types: dict[str, dict[str, Any]] = {
        "bool": {"type": "boolean"},
        "int": {"type": "integer"},
        "float": {"type": "number"},
        "choice": {"type": "string", "enum": list(spec.choices)},
        "int_list": {"type": "array", "items": {"type": "integer"}},
    }  # one for each of PARAMETER_KINDS
    base = types[spec.kind]
    if spec.minimum is not None:
        base["minimum"] = spec.minimum
        if spec.exclusive_min:
            base["exclusiveMinimum"] = True
    if spec.maximum is not None:
        base["maximum"] = spec.maximum
        if spec.exclusive_max:
            base["exclusiveMaximum"] = True
    if spec.nullable:
        base["nullable"] = True
    base["default"] = spec.default
    if spec.doc:
        base["description"] = spec.doc
    return base


def parameters_openapi() -> dict[str, Any]:
    """The run request's `parameters`: one object per method, each listing exactly that method's parameters
    (all optional: the defaults apply). Which object applies is decided by `method`."""
    return {
        "type": "object",
        "description": "The parameters of `method`, all optional (a missing one takes its default): the object "
        "titled with the method's name. An unknown parameter, a wrong type or a value out of range is a 400 "
        "naming it. `GET /api/methods/` lists the same, with the data each method needs and whether this "
        "installation can run it.",
        "anyOf": [
            {
                "title": method,
                "description": METHOD_SUMMARIES[method],
                "type": "object",
                "properties": {name: parameter_openapi(spec) for name, spec in schema.items()},
                "additionalProperties": False,
            }
            for method, schema in METHOD_SCHEMAS.items()
        ],
        "default": {},
    }


@extend_schema_field(
    {
        "type": "string",
        "enum": list(SUPPORTED_METHODS),
        "description": "A compression method (`GET /api/methods/` describes each; any other name is a 400 "
        "`unknown_method` naming `method`).",
    }
)
class MethodNameField(serializers.CharField):
    """A compression method's name. Documented as the enum of the engine's methods; an unknown name is
    refused by the service (400 `unknown_method` naming `method`, with the names to choose from)."""


@extend_schema_field(parameters_openapi())
class MethodParametersField(serializers.DictField):
    """A method's parameters; checked against the method's schema by the service (engine validation)."""


class RunRequestInput(serializers.Serializer):
    method = MethodNameField(max_length=64)
    parameters = MethodParametersField(required=False, default=dict)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)
    data_suite_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Suite version for calibration / training data."
    )
    device = serializers.CharField(
        required=False,
        default=None,
        max_length=32,
        help_text="Run on this device ('cpu', 'cuda', 'cuda:1'), on the worker pool of its kind (cpu or gpu queue). "
        "Omitted: the cpu pool, on the worker's own device setting.",
    )
    queue_anyway = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Queue the run even when no live worker serves its device's queue (it waits for one); without it "
        "such a request is a 400 `no_worker_for_device` naming `device`.",
    )


class RoundHeldoutOutput(serializers.Serializer):
    prompts = serializers.IntegerField()
    harmful = serializers.IntegerField()
    safe = serializers.IntegerField()
    harmful_compliance_rate = serializers.FloatField(allow_null=True, help_text="Compliance among harmful prompts.")
    over_refusal_rate = serializers.FloatField(allow_null=True, help_text="Refusal among safe prompts.")
    degenerate_rate = serializers.FloatField(allow_null=True, help_text="Degenerate answers among all prompts.")
    failures = serializers.IntegerField(help_text="Prompts the student failed; they join the next round.")
    failure_ids = serializers.ListField(child=serializers.CharField(), help_text="The first 50 failed prompts.")


class RoundOutput(serializers.Serializer):
    """One finished round of a behavioural_distill run."""

    round = serializers.IntegerField()
    stress_prompts = serializers.IntegerField(help_text="Prompts the teacher was stress-tested on this round.")
    added_failures = serializers.IntegerField(help_text="Of them, the previous round's held-back failures.")
    training_examples = serializers.IntegerField(help_text="Accepted answers trained on.")
    accepted = serializers.IntegerField(help_text="Answers the judge accepted.")
    rejected = serializers.IntegerField(help_text="Answers the judge rejected (unsafe, over-refusing, degenerate).")
    dropped_prompts = serializers.IntegerField(help_text="Prompts with no accepted answer (dropped).")
    by_slice = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    data_digest = serializers.CharField(help_text="sha256 of the round's training set ([prompt id, answer] pairs).")
    heldout = RoundHeldoutOutput(help_text="The student on the held-back split after the round.")


class RunOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    rounds = RoundOutput(many=True, read_only=True, help_text="behavioural_distill: the finished rounds.")

    class Meta:
        model = CompressionRun
        fields = (
            "id",
            "experiment",
            "method",
            "parameters",
            "seed",
            "device",
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
            "rounds",
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


@extend_schema_field({"type": "number"})
class _NumberField(serializers.Field):
    """A number rendered as the engine holds it (8 stays 8, 0.5 stays 0.5)."""

    def to_representation(self, value):
        return value


class MethodParameterOutput(serializers.Serializer):
    """One parameter of a method, from the engine's ParamSpec (compression.engine.methods)."""

    name = serializers.CharField()
    type = serializers.CharField(help_text=f"One of: {', '.join(PARAMETER_KINDS)}.")
    default = serializers.JSONField(allow_null=True, help_text="The value used when the parameter is not given.")
    nullable = serializers.BooleanField(help_text="Whether null is accepted (it means: derive the value).")
    description = serializers.CharField(source="doc")
    minimum = _NumberField(allow_null=True, help_text="Lowest allowed value (numbers), or null.")
    exclusive_minimum = serializers.BooleanField(help_text="Whether `minimum` itself is refused.")
    maximum = _NumberField(allow_null=True, help_text="Highest allowed value (numbers), or null.")
    exclusive_maximum = serializers.BooleanField(help_text="Whether `maximum` itself is refused.")
    choices = serializers.ListField(
        child=serializers.CharField(), help_text="The allowed values of a `choice` parameter (empty otherwise)."
    )
    range = serializers.CharField(help_text='The allowed values in words, e.g. "[0, 1)"; empty: any of the type.')


class MethodConditionalDataOutput(serializers.Serializer):
    field = serializers.CharField()
    parameter = serializers.CharField()
    when = serializers.CharField(help_text='E.g. "rounds > 1", "use_stress is true".')


class MethodDataOutput(serializers.Serializer):
    """The data fields a method needs (taken from the run request's `data_suite_version`)."""

    required = serializers.ListField(
        child=serializers.CharField(),
        help_text="Always needed; a run request then needs `data_suite_version`. Fields: "
        + "; ".join(f"{name}: {doc}" for name, doc in DATA_FIELD_DOCS.items())
        + ".",
    )
    conditional = MethodConditionalDataOutput(many=True, help_text="Needed only with some parameter values.")


class MethodOutput(serializers.Serializer):
    """A compression method SafeShrink can run (GET /api/methods/)."""

    name = serializers.CharField(help_text="The value of `method` in a run request.")
    summary = serializers.CharField(help_text="What the method does.")
    parameters = MethodParameterOutput(many=True)
    data = MethodDataOutput()
    available = serializers.BooleanField(help_text="Whether this installation can run the method.")
    unavailable_reason = serializers.CharField(allow_null=True, help_text="Why not, when `available` is false.")
    model_kinds = serializers.ListField(
        child=serializers.CharField(), help_text="The model kinds the method applies to (classifier, causal-lm)."
    )
