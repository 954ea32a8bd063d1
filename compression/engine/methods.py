"""Supported compression methods, their parameter schemas and validation (torch-free: used by the web API).

The one definition of what each method is: what it does (``METHOD_SUMMARIES``), its parameters with
types, ranges, defaults and meaning (``METHOD_SCHEMAS``), the data it needs (``METHOD_DATA`` always,
``METHOD_CONDITIONAL_DATA`` with some parameter values) and whether this installation can run it
(``method_availability``). ``describe_method`` joins them for ``GET /api/methods/``, the OpenAPI schema
and the README's table, so a new method or parameter shows up everywhere from here.

Every parameter is optional and has a default (see ``METHOD_SCHEMAS``); ``resolve_parameters`` fills
the defaults in. ``validate_parameters`` raises EngineError naming the offending parameter.
``validate_student`` checks a distillation student against the teacher's config.json (a dict) so the
web layer can refuse a student larger than its teacher at request time.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from compression.engine import capabilities
from compression.engine.behaviour_schema import (
    BEHAVIOURAL_DISTILL_SCHEMA,
    BEHAVIOURAL_DISTILL_SUMMARY,
    check_behaviour_combination,
)
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.kinds import METHOD_KINDS, check_model_kind
from compression.engine.param_spec import FRACTION as _FRACTION
from compression.engine.param_spec import PARAMETER_KINDS, ParamSpec

__all__ = [
    "SUPPORTED_METHODS",
    "METHOD_SCHEMAS",
    "METHOD_SUMMARIES",
    "METHOD_DATA",
    "METHOD_CONDITIONAL_DATA",
    "METHOD_KINDS",
    "DATA_FIELD_DOCS",
    "ParamSpec",
    "PARAMETER_KINDS",
    "DataNeed",
    "Availability",
    "validate_parameters",
    "resolve_parameters",
    "validate_student",
    "method_available",
    "method_availability",
    "parameter_schema",
    "required_data",
    "describe_method",
    "check_model_kind",
]


METHOD_SCHEMAS: Mapping[str, Mapping[str, ParamSpec]] = {
    "dynamic_int8": {
        "quantize_embeddings": ParamSpec("bool", False, doc="also quantize embeddings (quint8 per-row weights)"),
    },
    "fp16": {},
    "bf16": {},
    "int8_weight_only": {},
    "int4_weight_only": {
        "group_size": ParamSpec(
            "int",
            32,
            minimum=8,
            maximum=1024,
            doc="input weights sharing one scale; must divide the input size of every quantized Linear",
        ),
    },
    "magnitude_prune": {
        "sparsity": ParamSpec(
            "float",
            0.5,
            **_FRACTION,
            doc="fraction of encoder (chat models: decoder-layer) Linear weights set to zero, in [0, 1)",
        ),
        "scope": ParamSpec(
            "choice",
            "global",
            choices=("global", "layer"),
            doc="'global': one magnitude threshold over all encoder Linear weights; 'layer': per Linear",
        ),
    },
    "semi_structured_24": {},
    "structured_prune": {
        "head_fraction": ParamSpec("float", 0.3, **_FRACTION, doc="fraction of attention heads removed, in [0, 1)"),
        "ffn_fraction": ParamSpec("float", 0.3, **_FRACTION, doc="fraction of feed-forward neurons removed, in [0, 1)"),
        "scope": ParamSpec(
            "choice",
            "global",
            choices=("global", "layer"),
            doc="'global': rank units across layers (layer-normalised scores); 'layer': same share per layer",
        ),
        "max_length": ParamSpec("int", 64, minimum=8, maximum=512, doc="token cap for calibration / recovery"),
        "batch_size": ParamSpec("int", 16, minimum=1, maximum=1024, doc="calibration / recovery batch size"),
        "recovery_epochs": ParamSpec(
            "int",
            0,
            minimum=0,
            maximum=50,
            doc="epochs of recovery distillation from the unpruned model on data.train (0: none)",
        ),
        "recovery_lr": ParamSpec(
            "float",
            5e-5,
            minimum=0.0,
            maximum=1.0,
            exclusive_min=True,
            doc="AdamW learning rate of the recovery training",
        ),
        "recovery_max_examples": ParamSpec(
            "int", 0, minimum=0, maximum=10_000_000, doc="cap on data.train rows used for recovery (0: all)"
        ),
    },
    "distill": {
        "num_layers": ParamSpec("int", 2, minimum=1, maximum=128, doc="student encoder layers (<= teacher's)"),
        "hidden_size": ParamSpec(
            "int",
            None,
            minimum=8,
            maximum=16384,
            nullable=True,
            doc="student hidden size (<= teacher's; null: teacher's, initialised from init_layers)",
        ),
        "init_layers": ParamSpec(
            "int_list",
            None,
            nullable=True,
            doc="teacher layer indices copied into the student (only when hidden_size equals the "
            "teacher's; default evenly spaced, first and last included)",
        ),
        "intermediate_size": ParamSpec(
            "int",
            None,
            minimum=1,
            maximum=65536,
            nullable=True,
            doc="student feed-forward width (<= the teacher's; null: the teacher's ratio to "
            "hidden_size). Initialised from teacher layers, the student keeps each "
            "layer's largest neurons (|input row| x |output column|)",
        ),
        "temperature": ParamSpec(
            "float",
            2.0,
            minimum=0.0,
            maximum=100.0,
            exclusive_min=True,
            doc="softmax temperature T of the KL term (scaled by T^2)",
        ),
        "alpha": ParamSpec(
            "float",
            0.5,
            minimum=0.0,
            maximum=1.0,
            doc="weight of the KL term; (1 - alpha) weighs the hard-label cross-entropy",
        ),
        "epochs": ParamSpec("int", 3, minimum=1, maximum=100, doc="epochs per round"),
        "batch_size": ParamSpec("int", 32, minimum=1, maximum=1024, doc="training batch size"),
        "lr": ParamSpec("float", 1e-4, minimum=0.0, maximum=1.0, exclusive_min=True, doc="AdamW learning rate"),
        "max_length": ParamSpec("int", 64, minimum=8, maximum=512, doc="token cap for training and teacher labels"),
        "max_train_examples": ParamSpec("int", 0, minimum=0, maximum=10_000_000, doc="cap on data.train rows (0: all)"),
        "use_stress": ParamSpec("bool", False, doc="add data.stress (edge-case + adversarial) to the training set"),
        "reject": ParamSpec(
            "choice",
            "none",
            choices=("none", "confidence", "entropy"),
            doc="drop the soft label (train on the hard label only) where the teachers are unsure: "
            "'confidence': max prob < reject_threshold; 'entropy': entropy (nats) > reject_threshold",
        ),
        "reject_threshold": ParamSpec(
            "float",
            None,
            minimum=0.0,
            maximum=100.0,
            nullable=True,
            doc="required when reject is not 'none'; in (0, 1] for 'confidence'",
        ),
        "rounds": ParamSpec(
            "int",
            1,
            minimum=1,
            maximum=20,
            doc="iterative rounds: after each round the student's failures on data.heldout_adversarial "
            "join the training set and training continues",
        ),
    },
    "behavioural_distill": BEHAVIOURAL_DISTILL_SCHEMA,
}

# Data fields a method needs (an empty one is an "empty_input" error naming it). Distillation's
# conditional needs (stress, heldout_adversarial) are checked against the resolved parameters.
METHOD_DATA: Mapping[str, tuple[str, ...]] = {
    "dynamic_int8": (),
    "fp16": (),
    "bf16": (),
    "int8_weight_only": (),
    "int4_weight_only": (),
    "magnitude_prune": (),
    "semi_structured_24": (),
    "structured_prune": ("calibration",),
    "distill": ("train",),
    "behavioural_distill": (),  # prompts come from the stress_set / heldback_split parameters, not data fields
}


@dataclass(frozen=True)
class DataNeed:
    """A data field a method needs only with some parameter values: when ``parameter``'s value (its default
    when not given) is greater than ``above`` (for a bool parameter, ``above=False`` means "when true")."""

    field: str
    parameter: str
    above: Any

    def applies(self, method: str, parameters: Mapping[str, Any]) -> bool:
        value = parameters.get(self.parameter, METHOD_SCHEMAS[method][self.parameter].default)
        return value is not None and value > self.above

    def when(self) -> str:
        """The condition in words, e.g. "use_stress is true", "rounds > 1"."""
        return f"{self.parameter} is true" if self.above is False else f"{self.parameter} > {self.above}"


METHOD_CONDITIONAL_DATA: Mapping[str, tuple[DataNeed, ...]] = {
    "dynamic_int8": (),
    "fp16": (),
    "bf16": (),
    "int8_weight_only": (),
    "int4_weight_only": (),
    "magnitude_prune": (),
    "semi_structured_24": (),
    "structured_prune": (DataNeed("train", "recovery_epochs", 0),),
    "distill": (DataNeed("stress", "use_stress", False), DataNeed("heldout_adversarial", "rounds", 1)),
    "behavioural_distill": (),
}

# What each data field holds (the engine's CompressionData; a run takes them from a registered suite version).
DATA_FIELD_DOCS: Mapping[str, str] = {
    "train": "labelled training examples (distillation, recovery training)",
    "calibration": "labelled examples that score the importance of heads and neurons",
    "stress": "edge-case and adversarial examples added to distillation training",
    "heldout_adversarial": "adversarial examples the student is tested on between distillation rounds",
}

METHOD_SUMMARIES: Mapping[str, str] = {
    "dynamic_int8": "Dynamic int8 quantization (torch.ao) of every Linear layer, and of the embeddings on request: "
    "int8 weights, activations quantized on the fly; for CPU inference. A chat model's lm_head stays in fp32 "
    "(int8 output logits can turn a small chat model's text degenerate). Saved as torch-quantized.",
    "fp16": "Casts every floating-point weight to float16 (half the size). Saved as a plain hf-dir.",
    "bf16": "Casts every floating-point weight to bfloat16 (half the size, float32's range). Saved as a plain hf-dir.",
    "int8_weight_only": "torchao int8 weight-only quantization of every Linear layer (activations stay floating "
    "point; a chat model's lm_head stays fp32). Needs torchao working with this torch. Saved as torchao-int8.",
    "int4_weight_only": "torchao int4 weight-only quantization of a chat model's Linear layers (int4 values, one "
    "scale per group of input weights; lm_head stays fp32). Runs on the CPU through torchao's IntxWeightOnlyConfig, "
    "which stores the int4 values unpacked in int8: it shows int4's effect on behaviour, not int4's file size. "
    "Saved as torchao-int4.",
    "magnitude_prune": "Unstructured pruning: zeroes the smallest-magnitude encoder Linear weights (chat models: the "
    "decoder layers' Linear weights; embeddings, norms and lm_head untouched). The file is no smaller and dense "
    "kernels are no faster; the zeros are a starting point for sparse kernels.",
    "semi_structured_24": "2:4 semi-structured sparsity of a chat model's decoder-layer Linear weights: in every "
    "group of 4 consecutive input weights the 2 smallest-magnitude are zeroed (50%; embeddings, norms and lm_head "
    "untouched). Stored densely (hf-dir with zeros, the pattern in recipe.json); sparse 2:4 kernels need a GPU.",
    "structured_prune": "Removes attention heads and feed-forward neurons ranked by gradient-based importance on "
    "calibration data (a smaller, faster model), optionally followed by recovery distillation from the unpruned "
    "model.",
    "distill": "Knowledge distillation into a smaller student (fewer layers, optionally narrower), with safety "
    "options: stress examples in training, dropping unsure soft labels, and rounds that train on the student's "
    "failures on held-out adversarial examples.",
    "behavioural_distill": BEHAVIOURAL_DISTILL_SUMMARY,
}

SUPPORTED_METHODS: tuple[str, ...] = tuple(sorted(METHOD_SCHEMAS))

# The package each optional method (``capabilities.OPTIONAL_METHOD_PROBES``) needs; the probe checks it works.
_OPTIONAL_PACKAGES: Mapping[str, str] = {"int8_weight_only": "torchao", "int4_weight_only": "torchao"}


class Availability(NamedTuple):
    """Whether a method can run on this installation, and when not, why (a sentence for people)."""

    available: bool
    reason: str = ""


def parameter_schema(method: str) -> dict[str, dict[str, Any]]:
    """JSON description of ``method``'s parameters; raises unknown_method."""
    _check_method(method)
    return {name: spec.describe() for name, spec in METHOD_SCHEMAS[method].items()}


def required_data(method: str, parameters: Mapping[str, Any]) -> list[str]:
    """The data fields ``method`` needs with these parameters: ``METHOD_DATA``'s, then the conditional ones."""
    needs = METHOD_CONDITIONAL_DATA.get(method, ())
    return [*METHOD_DATA.get(method, ()), *(need.field for need in needs if need.applies(method, parameters))]


def method_availability(method: str) -> Availability:
    """Whether ``method`` can run here, and why not. int8_weight_only needs torchao installed and working
    with this torch: the answer recorded at start-up (``engine.capabilities``; the web process never
    probes). A worker with nothing recorded probes in process once. A torch-free process with nothing
    recorded accepts it when torchao is installed: the worker checks again before running."""
    if method not in METHOD_SCHEMAS:
        return Availability(False, f"{method!r} is not a compression method")
    if method not in capabilities.OPTIONAL_METHOD_PROBES:
        return Availability(True)
    package = _OPTIONAL_PACKAGES.get(method, "torchao")
    if importlib.util.find_spec(package) is None:
        return Availability(False, f"needs {package}, which is not installed")
    answer = capabilities.recorded(method)
    if answer is None and "torch" in sys.modules:
        answer = capabilities.probe(method)
        capabilities.record({method: answer})
    if answer is False:
        return Availability(
            False, f"{package} is installed but {method} did not run with this torch on this CPU at start-up"
        )
    return Availability(True)


def method_available(method: str) -> bool:
    """True when ``method`` can run here (see ``method_availability``). Unknown -> False."""
    return method_availability(method).available


def describe_method(method: str) -> dict[str, Any]:
    """Everything a client needs to request ``method`` (JSON-serialisable; raises unknown_method): its
    summary, parameters in definition order (``ParamSpec.describe`` plus name and range text), the data
    fields it always needs and those it needs with some parameter values, the model kinds it applies to
    (``METHOD_KINDS``), and whether it can run here."""
    _check_method(method)
    availability = method_availability(method)
    return {
        "name": method,
        "summary": METHOD_SUMMARIES[method],
        "parameters": [
            {"name": name, **spec.describe(), "range": spec.range_text()}
            for name, spec in METHOD_SCHEMAS[method].items()
        ],
        "data": {
            "required": list(METHOD_DATA[method]),
            "conditional": [
                {"field": need.field, "parameter": need.parameter, "when": need.when()}
                for need in METHOD_CONDITIONAL_DATA[method]
            ],
        },
        "model_kinds": list(METHOD_KINDS[method]),
        "available": availability.available,
        "unavailable_reason": availability.reason or None,
    }


def _check_method(method: str) -> None:
    if method not in METHOD_SCHEMAS:
        raise EngineError(
            EngineErrorCode.UNKNOWN_METHOD,
            f"unknown compression method {method!r}; supported: {', '.join(SUPPORTED_METHODS)}",
        )


def _check_value(method: str, name: str, spec: ParamSpec, value: Any) -> None:
    def bad(expected: str) -> EngineError:
        return EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter {name!r} for method {method!r} must be {expected}, got {value!r}",
        )

    if value is None:
        if spec.nullable:
            return
        raise bad(f"a {spec.kind}, not null")
    kind = spec.kind
    # bool is a subclass of int: check exactly so 1 is not taken for True and True not for 1.
    if kind == "bool":
        if type(value) is not bool:
            raise bad("bool")
        return
    if kind == "choice":
        if type(value) is not str or value not in spec.choices:
            raise bad(f"one of {list(spec.choices)}")
        return
    if kind == "int_list":
        if not isinstance(value, (list, tuple)) or any(type(item) is not int for item in value):
            raise bad("a list of integers")
        return
    if kind == "int" and type(value) is not int:
        raise bad("int")
    if kind == "float" and (type(value) not in (int, float) or not math.isfinite(value)):
        raise bad("a finite number")
    low, high = spec.minimum, spec.maximum
    low_ok = low is None or (value > low if spec.exclusive_min else value >= low)
    high_ok = high is None or (value < high if spec.exclusive_max else value <= high)
    if not (low_ok and high_ok):
        raise bad(f"in {spec.range_text()}")


def validate_parameters(method: str, parameters: Mapping[str, Any]) -> None:
    """Raise EngineError unless ``parameters`` is valid for ``method``; return None when valid.

    Unknown method -> "unknown_method"; a known method this machine cannot run (int8_weight_only without
    a working torchao) -> "method_unavailable"; non-mapping, unknown key, wrong type or out-of-range
    value -> "invalid_parameter" with the offending parameter named in the message.
    """
    _check_method(method)
    if not isinstance(parameters, Mapping):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "parameters must be a JSON object")
    schema = METHOD_SCHEMAS[method]
    for name in sorted(parameters, key=str):
        if name not in schema:
            accepted = ", ".join(sorted(schema)) or "none"
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                f"unknown parameter {name!r} for method {method!r} (accepted: {accepted})",
            )
        _check_value(method, name, schema[name], parameters[name])
    if method == "distill":
        _check_distill_combination(parameters)
    if method == "behavioural_distill":
        check_behaviour_combination(parameters)
    availability = method_availability(method)
    if not availability.available:
        raise EngineError(
            EngineErrorCode.METHOD_UNAVAILABLE,
            f"method {method!r} is not available on this machine ({availability.reason})",
        )


def _check_distill_combination(parameters: Mapping[str, Any]) -> None:
    reject = parameters.get("reject", "none")
    threshold = parameters.get("reject_threshold")
    if reject != "none" and threshold is None:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, f"parameter 'reject_threshold' is required when reject is {reject!r}"
        )
    if reject == "confidence" and threshold is not None and not 0.0 < threshold <= 1.0:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, "parameter 'reject_threshold' must be in (0, 1] for reject='confidence'"
        )
    if reject == "none" and threshold is not None:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "parameter 'reject_threshold' is set but reject is 'none'")


def resolve_parameters(method: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate, then return every parameter of ``method`` with defaults filled in (lists as lists)."""
    validate_parameters(method, parameters)
    resolved = {name: spec.default for name, spec in METHOD_SCHEMAS[method].items()}
    for name, value in parameters.items():
        resolved[name] = list(value) if isinstance(value, tuple) else value
    return resolved


def _config_int(teacher_config: Mapping[str, Any], key: str) -> int:
    value = teacher_config.get(key)
    if type(value) is not int or value < 1:
        raise EngineError(EngineErrorCode.INVALID_INPUT, f"teacher config has no valid {key!r}")
    return value


def validate_student(parameters: Mapping[str, Any], teacher_config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``distill`` student against the teacher's config.json (a dict); return the student's shape.

    Raises EngineError("invalid_parameter") naming the parameter when the student would be larger than
    the teacher (num_layers, hidden_size), when hidden_size is not a multiple of the teacher's head size,
    or when init_layers is given with a different hidden size, has the wrong length, repeats or names a
    layer the teacher lacks, or when intermediate_size exceeds the teacher's. Returns {"num_layers",
    "hidden_size", "num_attention_heads", "intermediate_size", "init_layers" (list or None: fresh init)}.
    """
    resolved = resolve_parameters("distill", parameters)
    teacher_layers = _config_int(teacher_config, "num_hidden_layers")
    teacher_hidden = _config_int(teacher_config, "hidden_size")
    teacher_heads = _config_int(teacher_config, "num_attention_heads")
    teacher_intermediate = _config_int(teacher_config, "intermediate_size")
    num_layers = resolved["num_layers"]
    if num_layers > teacher_layers:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'num_layers' = {num_layers} exceeds the teacher's {teacher_layers} layers "
            "(a student must not be larger)",
        )
    hidden = resolved["hidden_size"] if resolved["hidden_size"] is not None else teacher_hidden
    if hidden > teacher_hidden:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'hidden_size' = {hidden} exceeds the teacher's hidden size {teacher_hidden} "
            "(a student must not be larger)",
        )
    head_size = teacher_hidden // teacher_heads
    if hidden % head_size:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'hidden_size' = {hidden} must be a multiple of the teacher's head size {head_size}",
        )
    init_layers = resolved["init_layers"]
    if hidden != teacher_hidden:
        if init_layers is not None:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                "parameter 'init_layers' needs hidden_size equal to the teacher's (a fresh student has none)",
            )
    else:
        if init_layers is None:
            init_layers = (
                [teacher_layers - 1]
                if num_layers == 1
                else [round(i * (teacher_layers - 1) / (num_layers - 1)) for i in range(num_layers)]
            )
        init_layers = list(init_layers)
        if len(init_layers) != num_layers:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                f"parameter 'init_layers' has {len(init_layers)} entries; num_layers is {num_layers}",
            )
        if len(set(init_layers)) != len(init_layers) or any(not 0 <= index < teacher_layers for index in init_layers):
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                f"parameter 'init_layers' {init_layers} must be distinct teacher layer indices in "
                f"[0, {teacher_layers - 1}]",
            )
    intermediate = resolved["intermediate_size"]
    if intermediate is None:
        intermediate = max(1, round(teacher_intermediate * hidden / teacher_hidden))
    elif intermediate > teacher_intermediate:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            f"parameter 'intermediate_size' = {intermediate} exceeds the teacher's {teacher_intermediate} "
            "(a student must not be larger)",
        )
    return {
        "num_layers": num_layers,
        "hidden_size": hidden,
        "num_attention_heads": hidden // head_size,
        "intermediate_size": intermediate,
        "init_layers": init_layers,
    }
