"""Helpers shared by the compression methods (torch-based)."""

from __future__ import annotations

import resource
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compression.engine.formats import CONFIG_FILE
from compression.engine.loading import LoadedModel

__all__ = [
    "Progress",
    "TOKENIZER_FILES",
    "MethodContext",
    "MethodOutput",
    "peak_rss_bytes",
    "copy_tokenizer_files",
    "copy_config",
    "seeded",
    "encode",
    "batches",
    "save_hf_dir",
    "predict_probs",
    "predict_logits",
]

Progress = Callable[[str, float], None]

# Copied byte-for-byte from the source so the tokenizer (and the digest) cannot drift.
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
)


@dataclass
class MethodContext:
    """Everything a method implementation gets from the runner (parameters already resolved)."""

    request: Any  # CompressionRequest
    parameters: dict[str, Any]
    loaded: LoadedModel  # the source model, on the CPU, eval mode
    source_dir: Path
    output_dir: Path  # does not exist yet: call make_output_dir()
    device: torch.device
    report: Progress

    def make_output_dir(self) -> Path:
        from compression.engine.errors import EngineError, EngineErrorCode

        try:
            self.output_dir.parent.mkdir(parents=True, exist_ok=True)
            self.output_dir.mkdir()
        except OSError as exc:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER,
                f"output_dir {str(self.output_dir)!r} cannot be created ({exc.strerror})",
            ) from exc
        return self.output_dir


@dataclass
class MethodOutput:
    """What a method wrote: the artifact format and JSON-serialisable method-specific details."""

    format: str
    details: dict[str, Any] = field(default_factory=dict)


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def copy_tokenizer_files(source_dir: Path, output_dir: Path) -> None:
    """Copy the tokenizer files present in ``source_dir`` byte-for-byte."""
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, output_dir / name)


def copy_config(source_dir: Path, output_dir: Path) -> None:
    shutil.copyfile(source_dir / CONFIG_FILE, output_dir / CONFIG_FILE)


def save_hf_dir(model: Any, source_dir: Path, output_dir: Path) -> None:
    """save_pretrained (config.json + model.safetensors) plus the source's tokenizer files.
    ``model`` is a transformers PreTrainedModel (untyped for mypy: see pyproject.toml)."""
    model.save_pretrained(str(output_dir), safe_serialization=True)
    copy_tokenizer_files(source_dir, output_dir)


@contextmanager
def seeded(seed: int, deterministic: bool = True) -> Iterator[None]:
    """Seed torch's RNG (the caller's RNG state is restored afterwards) and, on request, switch on
    deterministic algorithms (restored afterwards too)."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            yield
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` padded to the longest (capped at ``max_length``)."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return {name: encoded[name] for name in names if name in encoded}


def batches(encoded: dict[str, torch.Tensor], index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows ``index`` of ``encoded`` trimmed to their longest row, on ``device``."""
    mask = encoded["attention_mask"][index]
    width = max(1, int(mask.sum(dim=1).max()))
    return {name: value[index, :width].to(device) for name, value in encoded.items()}


def predict_logits(
    model: torch.nn.Module,
    encoded: dict[str, torch.Tensor],
    device: torch.device,
    batch_size: int = 64,
) -> torch.Tensor:
    """float32 logits on the CPU for every row of ``encoded`` (length-sorted batches, eval mode)."""
    count = encoded["input_ids"].shape[0]
    lengths = encoded["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    config: Any = model.config  # a transformers PretrainedConfig (untyped for mypy)
    out = torch.empty((count, config.num_labels), dtype=torch.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            out[index] = model(**batches(encoded, index, device)).logits.float().cpu()
    model.train(was_training)
    return out


def predict_probs(
    model: torch.nn.Module,
    encoded: dict[str, torch.Tensor],
    device: torch.device,
    batch_size: int = 64,
    temperature: float = 1.0,
) -> torch.Tensor:
    """softmax(logits / T) in float32 on the CPU for every row of ``encoded``."""
    return torch.softmax(predict_logits(model, encoded, device, batch_size) / temperature, dim=-1)
