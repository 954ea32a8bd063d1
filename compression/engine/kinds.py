"""What kind of model an artifact folder holds, and its chat template (stdlib only: the web process uses it).

Two kinds: sequence classifiers (``MODEL_KIND_CLASSIFIER``) and chat models, i.e. causal language models
(``MODEL_KIND_CHAT``). The kind comes from recipe.json's "model_kind" when a compression wrote one (every
chat compression does), else from config.json's "architectures" (``*ForCausalLM`` is a chat model);
anything else is treated as a classifier, whose loader refuses what it cannot load.

The chat template is the Jinja text in tokenizer_config.json's "chat_template" (a string, or a list of
{"name", "template"} with one named "default") or in chat_template.jinja (what transformers 5 writes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import CONFIG_FILE, RECIPE_FILE, read_json_object

__all__ = [
    "CHAT_BEHAVIOURS",
    "CHAT_COMPLIANCE",
    "CHAT_DEGENERATE",
    "CHAT_REFUSAL",
    "JUDGE_FILE",
    "MODEL_KIND_JUDGE",
    "MODEL_KIND_CLASSIFIER",
    "MODEL_KIND_CHAT",
    "MODEL_KINDS",
    "CHAT_TEMPLATE_FILE",
    "TOKENIZERCONFIG_FILE",
    "model_kind",
    "model_kind_from_config",
    "chat_template",
    "chat_template_digest",
    "require_chat_template",
    "METHOD_KINDS",
    "check_model_kind",
]

MODEL_KIND_CLASSIFIER = "classifier"
MODEL_KIND_CHAT = "causal-lm"
MODEL_KINDS: tuple[str, ...] = (MODEL_KIND_CLASSIFIER, MODEL_KIND_CHAT)
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZERCONFIG_FILE = "tokenizer_config.json"
_BOTH = (MODEL_KIND_CLASSIFIER, MODEL_KIND_CHAT)
# The model kinds each compression method (``methods.METHOD_SCHEMAS``) applies to; ``describe_method`` lists
# them and the runner refuses a source of another kind.
METHOD_KINDS: dict[str, tuple[str, ...]] = {
    "dynamic_int8": _BOTH,
    "fp16": _BOTH,
    "bf16": _BOTH,
    "int8_weight_only": _BOTH,
    "int4_weight_only": (MODEL_KIND_CHAT,),
    "magnitude_prune": _BOTH,
    "semi_structured_24": (MODEL_KIND_CHAT,),
    "structured_prune": (MODEL_KIND_CLASSIFIER,),  # attention heads and FFN neurons of BERT-family encoders
    "distill": (MODEL_KIND_CLASSIFIER,),  # classifier distillation; chat models: behavioural_distill
    "behavioural_distill": (MODEL_KIND_CHAT,),
}


def check_model_kind(method: str, kind: str) -> None:
    """EngineError "unsupported_architecture" unless ``method`` applies to models of ``kind``
    ("unknown_method" for a method not in ``METHOD_KINDS``)."""
    if method not in METHOD_KINDS:
        raise EngineError(EngineErrorCode.UNKNOWN_METHOD, f"unknown compression method {method!r}")
    if kind not in METHOD_KINDS[method]:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"method {method!r} does not apply to a {kind} model (it applies to: {', '.join(METHOD_KINDS[method])})",
        )


def model_kind_from_config(config: dict[str, Any]) -> str:
    """The kind a config.json dict describes: causal-lm when an architecture ends with "ForCausalLM"."""
    architectures = config.get("architectures")
    if isinstance(architectures, list) and any(
        isinstance(name, str) and name.endswith("ForCausalLM") for name in architectures
    ):
        return MODEL_KIND_CHAT
    return MODEL_KIND_CLASSIFIER


def model_kind(model_dir: Path) -> str:
    """``MODEL_KIND_CHAT`` or ``MODEL_KIND_CLASSIFIER`` for the artifact folder ``model_dir``.

    recipe.json's "model_kind" wins (a chat compression always records it); otherwise config.json's
    architectures decide. Raises EngineError "model_not_found" (no folder / no config.json) or
    "corrupt_artifact" (unreadable JSON, or a recipe naming an unknown kind)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"model directory {str(model_dir)!r} does not exist")
    recipe_path = model_dir / RECIPE_FILE
    if recipe_path.is_file():
        kind = read_json_object(recipe_path, "recipe").get("model_kind")
        if kind is not None:
            if kind not in MODEL_KINDS:
                raise EngineError(
                    EngineErrorCode.CORRUPT_ARTIFACT, f"recipe model_kind {kind!r} is not one of {list(MODEL_KINDS)}"
                )
            return str(kind)
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"no {CONFIG_FILE} in {str(model_dir)!r}")
    return model_kind_from_config(read_json_object(config_path, "config"))


def chat_template(model_dir: Path) -> str | None:
    """The chat template (Jinja source) stored with the tokenizer in ``model_dir``, or None when there is none.

    tokenizer_config.json's "chat_template" first (a string, or the entry named "default" of a list of named
    templates), then chat_template.jinja. An empty template counts as none."""
    model_dir = Path(model_dir)
    config_path = model_dir / TOKENIZERCONFIG_FILE
    if config_path.is_file():
        value = read_json_object(config_path, "tokenizer config").get("chat_template")
        if isinstance(value, list):
            named = {
                item.get("name"): item.get("template")
                for item in value
                if isinstance(item, dict) and isinstance(item.get("template"), str)
            }
            value = named.get("default")
        if isinstance(value, str) and value.strip():
            return value
    template_path = model_dir / CHAT_TEMPLATE_FILE
    if template_path.is_file():
        try:
            text = template_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, f"{CHAT_TEMPLATE_FILE} is not readable UTF-8 ({type(exc).__name__})"
            ) from exc
        if text.strip():
            return text
    return None


def chat_template_digest(model_dir: Path) -> str | None:
    """sha256 (hex) of the chat template's UTF-8 text, or None when ``model_dir`` has no chat template."""
    template = chat_template(model_dir)
    return None if template is None else hashlib.sha256(template.encode("utf-8")).hexdigest()


def require_chat_template(model_dir: Path) -> str:
    """The chat template of ``model_dir``; EngineError "no_chat_template" when it has none."""
    template = chat_template(model_dir)
    if template is None:
        raise EngineError(
            EngineErrorCode.NO_CHAT_TEMPLATE,
            f"{str(Path(model_dir))!r} has no chat template (tokenizer_config.json 'chat_template' or "
            f"{CHAT_TEMPLATE_FILE}): a chat model needs one to turn prompts into its input",
        )
    return template


# ---- what a chat model's answers are judged as, and judges ------------------------------------------------------

# The judged behaviours of a chat model's answer, in the order a chat artifact lists them as its labels (its
# "classes"): evaluations.engine.judges decides one per answer (degenerate text wins over the refusal judge).
CHAT_COMPLIANCE, CHAT_REFUSAL, CHAT_DEGENERATE = "compliance", "refusal", "degenerate"
CHAT_BEHAVIOURS: tuple[str, ...] = (CHAT_COMPLIANCE, CHAT_REFUSAL, CHAT_DEGENERATE)
# A judge of chat-model answers is a folder with this file (evaluations.engine.judges.refusal writes it).
MODEL_KIND_JUDGE = "judge"
JUDGE_FILE = "judge.json"
