"""Compression engine: manifests, tiny model build, dynamic int8 compression and its error paths."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from compression.engine import SUPPORTED_METHODS, CompressionRequest, EngineError, compress, validate_parameters
from compression.engine.manifest import dir_size, file_sha256, manifest, manifest_digest
from tests.conftest import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_RECIPE = b'{"dtype":"qint8","format":"torch-quantized","method":"dynamic_int8","modules":["Linear"]}'
TEXTS = ["i love my neighbours", "they are all vermin and should be removed", "what a lovely day at the beach"]


def data_csv() -> Path:
    return DATA_DIR / "hatexplain" / "hatexplain_merged.csv"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compression.engine.tiny import build_tiny_classifier

    out = tmp_path_factory.mktemp("tiny") / "model"
    report = build_tiny_classifier(data_csv=data_csv(), out_dir=out, seed=0)
    assert report.out_dir == out
    assert report.labels == ("normal", "hatespeech", "offensive")
    assert report.train_examples == 3000
    # Observed 0.58-0.65 over seeds 0-3; chance (majority class) is about 0.40.
    assert report.val_accuracy > 0.5
    return out


@pytest.fixture(scope="module")
def quantized_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quantized") / "int8"
    compress(CompressionRequest("dynamic_int8", tiny_dir, out, {}, 0))
    return out


# --- manifest -------------------------------------------------------------------------------------


def test_manifest_exact_and_digest_canonical(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"hello")
    (tmp_path / "a.txt").write_bytes(b"")
    entries = manifest(tmp_path)
    assert entries == [
        ("a.txt", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0),
        ("sub/b.bin", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", 5),
    ]
    canonical = (
        '[{"path":"a.txt","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},'
        '{"path":"sub/b.bin","sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","size":5}]'
    )
    assert manifest_digest(tmp_path) == hashlib.sha256(canonical.encode()).hexdigest()
    assert manifest_digest(tmp_path) == manifest_digest(tmp_path)
    assert dir_size(tmp_path) == 5
    assert file_sha256(tmp_path / "sub" / "b.bin") == entries[1][1]


def test_manifest_digest_changes_with_one_byte_or_a_rename(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(bytes(range(256)))
    before = manifest_digest(tmp_path)
    data = bytearray((tmp_path / "w.bin").read_bytes())
    data[100] ^= 0x01
    (tmp_path / "w.bin").write_bytes(bytes(data))
    after = manifest_digest(tmp_path)
    assert after != before
    (tmp_path / "w.bin").rename(tmp_path / "x.bin")
    assert manifest_digest(tmp_path) not in {before, after}


def test_manifest_missing_or_empty_dir(tmp_path: Path) -> None:
    for target in (tmp_path / "absent", tmp_path):
        with pytest.raises(EngineError) as caught:
            manifest_digest(target)
        assert caught.value.code == "model_not_found"


def test_web_modules_do_not_import_torch() -> None:
    code = (
        "import sys, compression.engine, compression.engine.manifest, compression.engine.methods, "
        "evaluations.engine, evaluations.engine.metrics; "
        "bad = [m for m in ('torch', 'transformers', 'django') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# --- tiny build -------------------------------------------------------------------------------------


def test_tiny_build_is_byte_reproducible(tmp_path: Path) -> None:
    from compression.engine.tiny import build_tiny_classifier

    kwargs = {"data_csv": data_csv(), "sample_size": 300, "epochs": 1}
    first = build_tiny_classifier(out_dir=tmp_path / "a", seed=7, **kwargs)
    second = build_tiny_classifier(out_dir=tmp_path / "b", seed=7, **kwargs)
    other = build_tiny_classifier(out_dir=tmp_path / "c", seed=8, **kwargs)
    assert first.train_examples == 300
    assert manifest(first.out_dir) == manifest(second.out_dir)
    assert [name for name, _, _ in manifest(first.out_dir)] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert file_sha256(first.out_dir / "model.safetensors") != file_sha256(other.out_dir / "model.safetensors")


def test_tiny_model_loads_offline_with_auto_classes(tiny_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    assert model.config.id2label == {0: "normal", 1: "hatespeech", 2: "offensive"}
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (64, 2, 2)
    assert tokenizer.convert_ids_to_tokens(tokenizer("The the")["input_ids"]) == ["[CLS]", "the", "the", "[SEP]"]
    assert tokenizer("zzqqxxunseenword")["input_ids"][1] == tokenizer.unk_token_id
    with torch.inference_mode():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    assert tuple(logits.shape) == (3, 3)


# --- dynamic int8 -----------------------------------------------------------------------------------


def test_dynamic_int8_reproducible_smaller_and_loadable(tiny_dir: Path, quantized_dir: Path, tmp_path: Path) -> None:
    from compression.engine.loading import load_classifier
    from compression.engine.parameters import count_parameters

    stages: list[tuple[str, float]] = []
    result = compress(
        CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "again", {}, 0),
        progress=lambda stage, fraction: stages.append((stage, fraction)),
    )
    assert stages == [("loading", 0.1), ("quantizing", 0.5), ("saving", 0.8), ("done", 1.0)]
    assert manifest_digest(result.output_dir) == manifest_digest(quantized_dir)
    assert [name for name, _, _ in manifest(result.output_dir)] == [
        "config.json",
        "model_state.pt",
        "recipe.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert (result.output_dir / "recipe.json").read_bytes() == EXPECTED_RECIPE
    assert (result.output_dir / "config.json").read_bytes() == (tiny_dir / "config.json").read_bytes()
    assert (result.format, result.method, result.parameters) == ("torch-quantized", "dynamic_int8", {})
    assert result.size_bytes == dir_size(result.output_dir)
    assert result.source_size_bytes == dir_size(tiny_dir)
    assert result.size_bytes < result.source_size_bytes
    # 2 layers x 6 Linear + pooler + classifier = 14 quantized Linear layers.
    assert result.dtypes["qint8"] == 14
    assert result.peak_rss_bytes > 0 and result.wall_seconds > 0

    source = load_classifier(tiny_dir)
    loaded = load_classifier(result.output_dir)
    assert source.format == "hf-dir" and loaded.format == "torch-quantized"
    assert loaded.labels == ("normal", "hatespeech", "offensive")
    assert not loaded.model.training
    assert result.parameter_count == count_parameters(source.model) == sum(p.numel() for p in source.model.parameters())

    import torch

    with torch.inference_mode():
        enc = source.tokenizer(TEXTS, padding=True, return_tensors="pt")
        fp32 = torch.softmax(source.model(**enc).logits, dim=-1)
        int8 = torch.softmax(loaded.model(**enc).logits, dim=-1)
    assert torch.allclose(fp32.sum(dim=-1), torch.ones(3))
    assert float((fp32 - int8).abs().max()) < 0.05


def test_dynamic_int8_with_embeddings_is_smaller_still(tiny_dir: Path, quantized_dir: Path, tmp_path: Path) -> None:
    from compression.engine.loading import load_classifier

    result = compress(CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "emb", {"quantize_embeddings": True}, 0))
    assert result.dtypes["quint8"] == 3  # word, position and token-type embeddings
    assert result.size_bytes < dir_size(quantized_dir)
    assert json.loads((result.output_dir / "recipe.json").read_text())["modules"] == ["Embedding", "Linear"]
    assert load_classifier(result.output_dir).format == "torch-quantized"


# --- errors -----------------------------------------------------------------------------------------


def _expect(code: str, request: CompressionRequest) -> EngineError:
    with pytest.raises(EngineError) as caught:
        compress(request)
    assert caught.value.code == code
    assert "Traceback" not in caught.value.message
    assert not request.output_dir.exists()
    return caught.value


def test_methods_and_parameter_validation() -> None:
    assert SUPPORTED_METHODS == (
        "behavioural_distill",
        "bf16",
        "distill",
        "dynamic_int8",
        "fp16",
        "int4_weight_only",
        "int8_weight_only",
        "magnitude_prune",
        "semi_structured_24",
        "structured_prune",
    )
    validate_parameters("dynamic_int8", {})
    validate_parameters("dynamic_int8", {"quantize_embeddings": False})
    for parameters, name in (({"bits": 4}, "bits"), ({"quantize_embeddings": 1}, "quantize_embeddings")):
        with pytest.raises(EngineError) as caught:
            validate_parameters("dynamic_int8", parameters)
        assert caught.value.code == "invalid_parameter" and name in caught.value.message
    with pytest.raises(EngineError) as caught:
        validate_parameters("no_such_method", {})
    assert caught.value.code == "unknown_method"


def test_request_parameters_are_read_only(tiny_dir: Path, tmp_path: Path) -> None:
    source = {"quantize_embeddings": True}
    request = CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "o", source, 0)
    source["quantize_embeddings"] = False
    assert request.parameters["quantize_embeddings"] is True
    with pytest.raises(TypeError):
        request.parameters["quantize_embeddings"] = False  # type: ignore[index]


def test_compress_error_codes_leave_no_output(tiny_dir: Path, tmp_path: Path) -> None:
    _expect("unknown_method", CompressionRequest("no_such_method", tiny_dir, tmp_path / "o1", {}, 0))
    error = _expect("invalid_parameter", CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "o2", {"bits": 4}, 0))
    assert "bits" in error.message
    _expect("model_not_found", CompressionRequest("dynamic_int8", tmp_path / "nowhere", tmp_path / "o3", {}, 0))


def test_existing_output_dir_is_refused_and_kept(tiny_dir: Path, tmp_path: Path) -> None:
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(EngineError) as caught:
        compress(CompressionRequest("dynamic_int8", tiny_dir, existing, {}, 0))
    assert caught.value.code == "invalid_parameter"
    assert (existing / "keep.txt").read_text() == "mine"


def test_truncated_source_weights_are_corrupt(tiny_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _expect("corrupt_artifact", CompressionRequest("dynamic_int8", broken, tmp_path / "out", {}, 0))


def test_truncated_quantized_state_is_corrupt(quantized_dir: Path, tmp_path: Path) -> None:
    from compression.engine.loading import load_classifier

    broken = tmp_path / "broken"
    shutil.copytree(quantized_dir, broken)
    state = broken / "model_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(EngineError) as caught:
        load_classifier(broken)
    assert caught.value.code == "corrupt_artifact"
    assert "model_state.pt" in caught.value.message and "Traceback" not in caught.value.message


def test_already_quantized_source_is_refused(quantized_dir: Path, tmp_path: Path) -> None:
    _expect("unsupported_architecture", CompressionRequest("dynamic_int8", quantized_dir, tmp_path / "o", {}, 0))


def test_failure_while_saving_removes_output_dir(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compression.engine.quantize as quantize

    def half_write(model: object, recipe: object, source_dir: Path, output_dir: Path) -> None:
        (output_dir / "model_state.pt").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quantize, "_write_artifact", half_write)
    error = _expect("corrupt_artifact", CompressionRequest("dynamic_int8", tiny_dir, tmp_path / "o", {}, 0))
    assert "No space left on device" in error.message


def _edit_config(tiny_dir: Path, target: Path, **changes: object) -> Path:
    shutil.copytree(tiny_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_loader_error_codes(tiny_dir: Path, tmp_path: Path) -> None:
    from compression.engine.loading import load_classifier

    cases = {
        "model_not_found": [tmp_path / "absent"],
        "unsupported_architecture": [
            _edit_config(tiny_dir, tmp_path / "clip", model_type="clip"),
            _edit_config(tiny_dir, tmp_path / "unknown", model_type="no-such-model"),
            _edit_config(tiny_dir, tmp_path / "headless", architectures=["BertModel"]),
        ],
    }
    no_config = tmp_path / "no_config"
    shutil.copytree(tiny_dir, no_config)
    (no_config / "config.json").unlink()
    cases["model_not_found"].append(no_config)
    bad_json = tmp_path / "bad_json"
    shutil.copytree(tiny_dir, bad_json)
    (bad_json / "config.json").write_text("{not json")
    cases["corrupt_artifact"] = [bad_json]
    for code, dirs in cases.items():
        for directory in dirs:
            with pytest.raises(EngineError) as caught:
                load_classifier(directory)
            assert caught.value.code == code, directory.name
