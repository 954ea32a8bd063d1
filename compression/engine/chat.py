"""Load a chat model (a causal language model with a chat template) for generation, in any artifact format.

Formats are those of ``formats``: "hf-dir" (a save_pretrained folder: fp32, a GGUF import, pruned or 2:4
sparse), "torch-quantized" (dynamic int8), "torchao-int8" and "torchao-int4" (weight-only). The tokenizer
pads on the left (generation appends on the right) and always has a pad token (the end-of-sequence token
when the folder names none). The model is in eval mode. ``render_prompt`` turns a prompt (and an optional system
prompt) into the text the model reads, for generation (evaluations.engine.generate) and distillation alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.formats import (
    CONFIG_FILE,
    FORMAT_HF_DIR,
    FORMAT_TORCH_QUANTIZED,
    FORMAT_TORCHAO_INT4,
    FORMAT_TORCHAO_INT8,
    read_json_object,
    read_recipe,
)
from compression.engine.kinds import (
    CHAT_TEMPLATE_FILE,
    MODEL_KIND_CHAT,
    model_kind_from_config,
    require_chat_template,
)
from compression.engine.loading import (
    CPU_ONLY_FORMATS,
    _load_hf_dir,
    _load_torch_quantized,
    _load_torchao,
    resolve_device,
)

__all__ = [
    "LoadedChatModel",
    "load_chat_model",
    "load_chat_config",
    "is_chat",
    "chat_recipe",
    "copy_chat_files",
    "SOURCE_FILE",
    "GENERATION_CONFIG_FILE",
    "CHAT_FILES",
    "LM_HEAD_FP32_REASON",
    "render_prompt",
]

SOURCE_FILE = "source.json"  # written by gguf_import: where the weights came from
GENERATION_CONFIG_FILE = "generation_config.json"
# Copied byte for byte into every artifact made from a chat model (besides config.json and the tokenizer files).
CHAT_FILES: tuple[str, ...] = (CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE)

LM_HEAD_FP32_REASON = (
    "lm_head (the vocabulary projection) is kept in floating point: dynamic int8 of every Linear including "
    "lm_head turned Gemma-3-270M into degenerate text on SafeShrink's machines, while small chat models stay "
    "mostly fluent with int8 decoder layers and a float lm_head. Greedy decoding picks the next token from small "
    "logit differences that a quantized vocabulary projection blurs."
)
LM_HEAD_UNPRUNED_REASON = (
    "lm_head, the embeddings and the norms are not pruned: only the decoder layers' Linear weights are, "
    "so the vocabulary projection that picks each token is the source's."
)


@dataclass(frozen=True)
class LoadedChatModel:
    """A chat model ready for generation.

    ``model``: a transformers causal LM in eval mode; ``tokenizer``: padding on the left, pad token set;
    ``format``: the artifact format; ``kind``: always ``kinds.MODEL_KIND_CHAT``; ``chat_template`` and
    ``chat_template_digest`` (sha256 of its UTF-8 text); ``eos_token_ids``: the ids that end a reply
    (generation_config's, else the tokenizer's); ``pad_token_id``; ``recipe``: recipe.json (empty for a plain
    folder); ``source``: source.json of a GGUF import (empty otherwise); ``generation_config``: the folder's
    generation_config.json (empty when absent); ``pad_token_added``: the folder named no pad token and the
    end-of-sequence token pads."""

    model: Any
    tokenizer: Any
    format: str
    chat_template: str
    chat_template_digest: str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    kind: str = MODEL_KIND_CHAT
    recipe: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    generation_config: Mapping[str, Any] = field(default_factory=dict)
    pad_token_added: bool = False


def is_chat(loaded: Any) -> bool:
    """True when ``loaded`` (a method's source) is a chat model."""
    return isinstance(loaded, LoadedChatModel)


def chat_recipe(recipe: dict[str, Any], *, lm_head: str) -> dict[str, Any]:
    """``recipe`` (recipe.json of an artifact made from a chat model) with "model_kind" and the lm_head rule.

    ``lm_head``: "float" (quantization: lm_head kept in floating point, listed in "keep_float"), "unpruned"
    (pruning: only the decoder layers' Linear weights change) or "cast" (fp16/bf16: cast with the rest)."""
    out = {**recipe, "model_kind": MODEL_KIND_CHAT}
    if lm_head == "float":
        out["keep_float"] = ["lm_head"]
        out["lm_head"] = {"rule": "kept in floating point", "reason": LM_HEAD_FP32_REASON}
    elif lm_head == "unpruned":
        out["lm_head"] = {"rule": "not pruned", "reason": LM_HEAD_UNPRUNED_REASON}
    else:
        out["lm_head"] = {"rule": "cast with every other weight", "reason": "a cast keeps every weight's dtype uniform"}
    return out


def copy_chat_files(source_dir: Path, output_dir: Path) -> None:
    """Copy the chat template file and generation_config.json of ``source_dir`` byte for byte (overwriting
    what save_pretrained wrote, so the generation settings cannot drift)."""
    import shutil

    for name in CHAT_FILES:
        if (Path(source_dir) / name).is_file():
            shutil.copyfile(Path(source_dir) / name, Path(output_dir) / name)


def load_chat_config(model_dir: Path) -> Any:
    """The transformers config of the chat model in ``model_dir``. EngineError "model_not_found" (no folder or
    config.json), "unsupported_architecture" (not a causal LM transformers knows), "corrupt_artifact"."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"model directory {str(model_dir)!r} does not exist")
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"no {CONFIG_FILE} in {str(model_dir)!r}")
    raw = read_json_object(config_path, "config")
    if model_kind_from_config(raw) != MODEL_KIND_CHAT:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"architectures {raw.get('architectures')!r} contain no causal language model (*ForCausalLM): "
            "not a chat model",
        )
    try:
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError) as exc:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"model_type {raw.get('model_type')!r} is not known to transformers",
        ) from exc
    except (OSError, TypeError) as exc:
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"{CONFIG_FILE} could not be loaded ({type(exc).__name__})"
        ) from exc
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"model_type {raw.get('model_type')!r} has no causal-LM architecture in transformers",
        )
    return config


def _load_tokenizer(model_dir: Path) -> tuple[Any, bool]:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True, trust_remote_code=False, padding_side="left"
        )
    except Exception as exc:  # transformers raises many types here; all mean an unusable tokenizer.
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT,
            f"tokenizer files in {str(model_dir)!r} could not be loaded ({type(exc).__name__})",
        ) from exc
    tokenizer.padding_side = "left"
    added = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, "the tokenizer has neither a pad token nor an end-of-sequence token"
            )
        tokenizer.pad_token = tokenizer.eos_token
        added = True
    return tokenizer, added


def _eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = tokenizer.eos_token_id
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(int(item) for item in values if item is not None)


def _optional_json(path: Path, what: str) -> dict[str, Any]:
    return read_json_object(path, what) if path.is_file() else {}


def load_chat_model(model_dir: Path, device: str = "cpu") -> LoadedChatModel:
    """Load the chat model in ``model_dir`` (offline) in eval mode on ``device``.

    EngineError: "model_not_found" (no folder, config.json or weights), "unsupported_architecture" (not a
    causal language model), "no_chat_template" (no chat template beside the tokenizer), "corrupt_artifact"
    (unreadable files, weights that do not match the config), "invalid_parameter" (a device that is not
    usable, or an int8/int4 artifact on a GPU), "method_unavailable" (a torchao artifact without torchao)."""
    import hashlib

    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    config = load_chat_config(model_dir)
    resolved = resolve_device(device)
    template = require_chat_template(model_dir)
    recipe = read_recipe(model_dir) or {}
    fmt = str(recipe.get("format", FORMAT_HF_DIR))
    if fmt in CPU_ONLY_FORMATS and resolved.type != "cpu":
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"{fmt} (int8/int4) models run on the CPU only")
    tokenizer, pad_added = _load_tokenizer(model_dir)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template
    model: Any  # a transformers causal LM (untyped for mypy)
    if fmt == FORMAT_TORCH_QUANTIZED:
        model = _load_torch_quantized(model_dir, config, AutoModelForCausalLM)
    elif fmt in (FORMAT_TORCHAO_INT8, FORMAT_TORCHAO_INT4):
        model = _load_torchao(model_dir, config, recipe, AutoModelForCausalLM)
    elif fmt == FORMAT_HF_DIR:
        model = _load_hf_dir(model_dir, config, AutoModelForCausalLM)
    else:
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"format {fmt!r} is not a chat model format")
    generation = _optional_json(model_dir / GENERATION_CONFIG_FILE, "generation config")
    if generation:
        from transformers import GenerationConfig

        try:
            model.generation_config = GenerationConfig.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as exc:  # a generation config transformers cannot read
            raise EngineError(
                EngineErrorCode.CORRUPT_ARTIFACT, f"{GENERATION_CONFIG_FILE} could not be loaded ({type(exc).__name__})"
            ) from exc
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(resolved)
    model.eval()
    return LoadedChatModel(
        model=model,
        tokenizer=tokenizer,
        format=fmt,
        chat_template=template,
        chat_template_digest=hashlib.sha256(template.encode("utf-8")).hexdigest(),
        eos_token_ids=_eos_ids(model, tokenizer),
        pad_token_id=int(tokenizer.pad_token_id),
        recipe=dict(recipe),
        source=_optional_json(model_dir / SOURCE_FILE, "source"),
        generation_config=generation,
        pad_token_added=pad_added,
    )


def render_prompt(tokenizer: Any, prompt: str, system_prompt: str | None, chat_template: str | None = None) -> str:
    """The text the model reads for ``prompt``: the chat template (``chat_template``, else the tokenizer's)
    applied to [system (when set), user] with the assistant's turn opened (add_generation_prompt)."""
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages.append({"role": "user", "content": prompt})
    try:
        text = tokenizer.apply_chat_template(
            messages, chat_template=chat_template, tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:  # jinja's TemplateError, or no template: both mean this model cannot chat
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"the model's chat template cannot render a prompt: {exc}"
        ) from exc
    if not isinstance(text, str):
        raise EngineError(EngineErrorCode.UNSUPPORTED_ARCHITECTURE, "the model's chat template did not render text")
    return text
