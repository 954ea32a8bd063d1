"""Import a GGUF chat model once into a normal transformers folder (fp32 safetensors, tokenizer, chat template).

transformers reads GGUF with ``from_pretrained(folder, gguf_file=name)`` (packages ``gguf`` and
``accelerate``) and dequantizes every tensor to float32, which takes tens of seconds for a 135M model; the
folder it saves reloads in a fraction of a second. The weights are then a dequantized 4-bit (or 8-bit...)
model, not the original full-precision one: ``source.json`` in the folder records the GGUF file's name,
sha256 and quantization types so every record built on the folder can say so.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from compression.engine.chat import SOURCE_FILE
from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.kinds import MODEL_KIND_CHAT, chat_template_digest, model_kind
from compression.engine.manifest import dir_size, file_sha256, manifest_digest
from trust.canonical import canonical_bytes

__all__ = ["gguf_import", "gguf_metadata"]


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - an unreadable optional field is simply absent
        return None


def gguf_metadata(gguf_path: Path) -> dict[str, Any]:
    """What the GGUF file says about itself: architecture, name, file type (e.g. "Q4_1"), the count of tensors
    per quantization type, the quantization version. EngineError "corrupt_artifact" when unreadable."""
    try:
        import gguf
    except ImportError as exc:
        raise EngineError(
            EngineErrorCode.METHOD_UNAVAILABLE, "importing a GGUF model needs the 'gguf' package"
        ) from exc
    try:
        reader = gguf.GGUFReader(str(gguf_path))
    except Exception as exc:  # gguf raises ValueError/struct errors/... for a damaged file
        raise EngineError(
            EngineErrorCode.CORRUPT_ARTIFACT, f"{gguf_path.name} is not a readable GGUF file ({type(exc).__name__})"
        ) from exc
    tensor_types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    file_type_value = _field(reader, "general.file_type")
    try:
        file_type = gguf.LlamaFileType(int(file_type_value)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        # No (or an unknown) declared file type: the most common quantized tensor type describes the file.
        quantized = [(count, name) for name, count in tensor_types.items() if name not in ("F32", "F16", "BF16")]
        file_type = max(quantized)[1] if quantized else (max((c, n) for n, c in tensor_types.items())[1])
    return {
        "architecture": _field(reader, "general.architecture"),
        "name": _field(reader, "general.name"),
        "file_type": file_type,
        "tensor_types": dict(sorted(tensor_types.items())),
        "quantization_version": _field(reader, "general.quantization_version"),
        "has_chat_template": _field(reader, "tokenizer.chat_template") is not None,
    }


def _drop_loading_options(path: Path) -> None:
    """Remove how this import loaded the tokenizer ("local_files_only", "is_local") from what it saved: they
    describe this process, not the tokenizer."""
    import json

    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if any(key in config for key in ("local_files_only", "is_local")):
        config = {key: value for key, value in config.items() if key not in ("local_files_only", "is_local")}
        path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def gguf_import(gguf_path: Path, output_dir: Path) -> dict[str, Any]:
    """Convert the GGUF causal LM ``gguf_path`` into a transformers folder ``output_dir`` (must not exist):
    config.json, generation_config.json, model.safetensors (float32), the tokenizer with its chat template,
    and source.json. Returns source.json's content plus "output_dir", "seconds", "size_bytes" and
    "manifest_digest". The folder is written beside ``output_dir`` and renamed into place when complete.

    EngineError: "model_not_found" (no such file), "invalid_parameter" (not a .gguf file, output_dir exists),
    "method_unavailable" (gguf/accelerate missing), "corrupt_artifact" (unreadable GGUF),
    "unsupported_architecture" (not a causal LM transformers can read from GGUF)."""
    import torch
    import transformers

    started = time.perf_counter()
    gguf_path = Path(gguf_path)
    output_dir = Path(output_dir)
    if not gguf_path.is_file():
        raise EngineError(EngineErrorCode.MODEL_NOT_FOUND, f"GGUF file {str(gguf_path)!r} does not exist")
    if gguf_path.suffix.lower() != ".gguf":
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"{gguf_path.name!r} is not a .gguf file")
    if output_dir.exists():
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, f"output_dir {str(output_dir)!r} already exists")
    for package in ("gguf", "accelerate"):
        try:
            __import__(package)
        except ImportError as exc:
            raise EngineError(
                EngineErrorCode.METHOD_UNAVAILABLE, f"importing a GGUF model needs the {package!r} package"
            ) from exc
    metadata = gguf_metadata(gguf_path)
    sha256 = file_sha256(gguf_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise EngineError(
            EngineErrorCode.UNSUPPORTED_ARCHITECTURE,
            f"transformers cannot load {name} as a causal LM ({type(exc).__name__}: {str(exc)[:200]})",
        ) from exc
    # The dequantized model is a plain float32 model now: saving must not claim a GGUF quantization.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()
    partial = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        model.save_pretrained(str(partial), safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        _drop_loading_options(partial / "tokenizer_config.json")
        kind = model_kind(partial)
        if kind != MODEL_KIND_CHAT:
            raise EngineError(
                EngineErrorCode.UNSUPPORTED_ARCHITECTURE, f"{name} did not convert to a causal LM (kind {kind!r})"
            )
        source = {
            "source_format": "gguf",
            "gguf_file": name,
            "gguf_sha256": sha256,
            "gguf_size_bytes": gguf_path.stat().st_size,
            **{f"gguf_{key}": value for key, value in metadata.items()},
            "dequantized_from": metadata["file_type"],
            "dtype": "float32",
            "note": f"weights dequantized from the GGUF file's {metadata['file_type']} quantization to float32: "
            "this is not the original full-precision model, and its quantization error is part of every "
            "measurement made on it",
            "chat_template_sha256": chat_template_digest(partial),
            "transformers_version": transformers.__version__,
            "parameter_count": sum(parameter.numel() for parameter in model.parameters()),
        }
        (partial / SOURCE_FILE).write_bytes(canonical_bytes(source))
        partial.rename(output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {
        **source,
        "output_dir": str(output_dir),
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": dir_size(output_dir),
        "manifest_digest": manifest_digest(output_dir),
    }
