"""Chat models (causal LMs) in the compression engine: the tiny chat model, model kinds and chat templates,
loading every format, each compression method on a chat model, refusals, and the GGUF import.

All on the tiny random chat model (LlamaForCausalLM, 2 layers, hidden 64, untied lm_head, 139,584 weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

torch = pytest.importorskip("torch")

from compression.engine import CompressionRequest, EngineError, compress  # noqa: E402
from compression.engine.kinds import (  # noqa: E402
    METHOD_KINDS,
    MODEL_KIND_CHAT,
    MODEL_KIND_CLASSIFIER,
    chat_template,
    chat_template_digest,
    model_kind,
)
from compression.engine.manifest import manifest_digest  # noqa: E402
from compression.engine.methods import SUPPORTED_METHODS, describe_method  # noqa: E402

TINY_CHAT_PARAMETERS = 139_584
CHAT_METHODS = [
    ("dynamic_int8", {}, "torch-quantized"),
    ("int8_weight_only", {}, "torchao-int8"),
    ("int4_weight_only", {"group_size": 32}, "torchao-int4"),
    ("magnitude_prune", {"sparsity": 0.3}, "hf-dir"),
    ("semi_structured_24", {}, "hf-dir"),
    ("fp16", {}, "hf-dir"),
]
QUANTIZING = {"dynamic_int8", "int8_weight_only", "int4_weight_only"}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def chat_dir(tiny_chat_dir: Path) -> Path:
    return tiny_chat_dir  # tests/conftest.py: built once per session, read only


@pytest.fixture(scope="module")
def outputs(chat_dir: Path, tmp_path_factory) -> dict:
    """Every chat method applied once to the tiny chat model (shared by the checks below)."""
    root = tmp_path_factory.mktemp("chat-out")
    return {
        method: compress(CompressionRequest(method, chat_dir, root / method, parameters, 0))
        for method, parameters, _ in CHAT_METHODS
    }


def _classifier_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    return path


def _copy_without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target)
    for name in names:
        (target / name).unlink()
    return target


def _generate(loaded, prompts=("hello there", "how do I bake bread?"), new_tokens=4):
    tokenizer = loaded.tokenizer
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = loaded.model.generate(**encoded, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return out[:, encoded["input_ids"].shape[1] :]


def _expect(code: str, request: CompressionRequest, *words: str) -> EngineError:
    with pytest.raises(EngineError) as caught:
        compress(request)
    assert caught.value.code == code, caught.value
    for word in words:
        assert word in caught.value.message
    assert not request.output_dir.exists()
    return caught.value


# --- the tiny chat model, kinds and templates ---------------------------------------------------------------


def test_tiny_chat_model_is_deterministic_per_seed(chat_dir: Path, tmp_path: Path) -> None:
    from compression.engine.tiny_chat import CHATML_TEMPLATE, build_tiny_chat_model

    again = build_tiny_chat_model(tmp_path / "again", seed=0)
    other = build_tiny_chat_model(tmp_path / "other", seed=1)
    assert manifest_digest(again) == manifest_digest(chat_dir)
    assert (other / "model.safetensors").read_bytes() != (chat_dir / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (chat_dir / "tokenizer.json").read_bytes()
    config = json.loads((chat_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is False
    assert chat_template(chat_dir) == CHATML_TEMPLATE
    with pytest.raises(EngineError) as caught:
        build_tiny_chat_model(chat_dir)
    assert caught.value.code == "invalid_parameter"


def test_model_kind_and_chat_template_detection(chat_dir: Path, tmp_path: Path) -> None:
    assert model_kind(chat_dir) == MODEL_KIND_CHAT
    assert model_kind(_classifier_dir(tmp_path / "clf")) == MODEL_KIND_CLASSIFIER
    digest = chat_template_digest(chat_dir)
    assert digest == hashlib.sha256(chat_template(chat_dir).encode()).hexdigest()
    # The template inside tokenizer_config.json counts too (a string, or a named list's "default").
    moved = _copy_without(chat_dir, tmp_path / "inline", "chat_template.jinja")
    assert chat_template(moved) is None and chat_template_digest(moved) is None
    tokenizer_config = json.loads((moved / "tokenizer_config.json").read_text())
    for value in (
        "{{ messages }}",
        [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ m }}"}],
    ):
        (moved / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "chat_template": value}))
        expected = value if isinstance(value, str) else "{{ m }}"
        assert chat_template(moved) == expected
        assert chat_template_digest(moved) == hashlib.sha256(expected.encode()).hexdigest()
    # A recipe's model_kind wins over the config (a compression of a chat model always writes one).
    recipe_dir = _classifier_dir(tmp_path / "recipe")
    (recipe_dir / "recipe.json").write_text(json.dumps({"format": "hf-dir", "model_kind": "causal-lm"}))
    assert model_kind(recipe_dir) == MODEL_KIND_CHAT
    (recipe_dir / "recipe.json").write_text(json.dumps({"format": "hf-dir", "model_kind": "robot"}))
    for folder, code in ((recipe_dir, "corrupt_artifact"), (tmp_path / "absent", "model_not_found")):
        with pytest.raises(EngineError) as caught:
            model_kind(folder)
        assert caught.value.code == code


def test_kinds_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import compression.engine.kinds, compression.engine.methods; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_load_chat_model_pads_left_and_generates(chat_dir: Path) -> None:
    from compression.engine.chat import load_chat_model

    loaded = load_chat_model(chat_dir)
    assert loaded.format == "hf-dir" and loaded.kind == MODEL_KIND_CHAT and not loaded.model.training
    assert loaded.tokenizer.padding_side == "left" and loaded.pad_token_id == 0 and loaded.eos_token_ids == (2,)
    assert loaded.chat_template_digest == chat_template_digest(chat_dir) and loaded.recipe == {}
    first = _generate(loaded)
    assert first.shape == (2, 4) and torch.equal(first, _generate(loaded))  # greedy: the same tokens again


def test_load_chat_model_refusals_and_missing_pad_token(chat_dir: Path, tmp_path: Path) -> None:
    from compression.engine.chat import load_chat_model

    cases = [
        (_copy_without(chat_dir, tmp_path / "no-template", "chat_template.jinja"), "no_chat_template"),
        (_copy_without(chat_dir, tmp_path / "no-config", "config.json"), "model_not_found"),
        (_classifier_dir(tmp_path / "classifier"), "unsupported_architecture"),
        (tmp_path / "absent", "model_not_found"),
    ]
    for folder, code in cases:
        with pytest.raises(EngineError) as caught:
            load_chat_model(folder)
        assert caught.value.code == code, (folder, caught.value)
    no_pad = _copy_without(chat_dir, tmp_path / "no-pad")
    config = json.loads((no_pad / "tokenizer_config.json").read_text())
    config.pop("pad_token")
    (no_pad / "tokenizer_config.json").write_text(json.dumps(config))
    loaded = load_chat_model(no_pad)
    assert loaded.pad_token_added and loaded.tokenizer.pad_token == "<|im_end|>" and loaded.pad_token_id == 2


# --- compression methods on a chat model --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "parameters", "fmt"), CHAT_METHODS, ids=[m for m, _, _ in CHAT_METHODS])
def test_each_method_gives_a_loadable_chat_artifact(outputs: dict, chat_dir: Path, method, parameters, fmt) -> None:
    from compression.engine.chat import load_chat_model

    result = outputs[method]
    assert result.format == fmt and result.method == method
    assert result.parameter_count == result.source_parameter_count == TINY_CHAT_PARAMETERS
    assert result.size_bytes > 0 and result.source_size_bytes > 0 and result.dtypes
    assert result.details["model_kind"] == MODEL_KIND_CHAT
    assert result.details["chat_template_digest"] == chat_template_digest(chat_dir)
    assert model_kind(result.output_dir) == MODEL_KIND_CHAT
    assert chat_template(result.output_dir) == chat_template(chat_dir)
    loaded = load_chat_model(result.output_dir)
    assert loaded.format == fmt and loaded.recipe["model_kind"] == MODEL_KIND_CHAT
    assert loaded.recipe["method"] == method and loaded.recipe["lm_head"]["reason"]
    assert _generate(loaded).shape == (2, 4)
    lm_head = loaded.model.lm_head
    if method in QUANTIZING:
        # The lm_head rule: quantization leaves the vocabulary projection a float Linear, and says why.
        assert loaded.recipe["keep_float"] == ["lm_head"] and "degenerate" in loaded.recipe["lm_head"]["reason"]
        assert type(lm_head) is torch.nn.Linear and type(lm_head.weight) is torch.nn.Parameter
        assert lm_head.weight.dtype == torch.float32 and result.details["kept_float"] == ["lm_head"]
    elif method == "fp16":
        assert lm_head.weight.dtype == torch.float16 and result.dtypes == {"float16": 21}
    else:
        assert loaded.recipe["lm_head"]["rule"] == "not pruned"


def test_quantized_layers_are_quantized(outputs: dict) -> None:
    from compression.engine.chat import load_chat_model

    assert outputs["dynamic_int8"].dtypes["qint8"] == 14  # 2 layers x 7 Linear; lm_head is not among them
    model = load_chat_model(outputs["dynamic_int8"].output_dir).model
    up_proj = model.model.layers[0].mlp.up_proj
    assert (
        type(up_proj).__module__.startswith("torch.ao.nn.quantized.dynamic") and up_proj.weight().dtype == torch.qint8
    )
    int4 = load_chat_model(outputs["int4_weight_only"].output_dir).model
    weight = int4.model.layers[0].self_attn.q_proj.weight
    assert type(weight).__name__ == "IntxUnpackedToInt8Tensor"
    assert int(weight.qdata.min()) >= -8 and int(weight.qdata.max()) <= 7
    recipe = json.loads((outputs["int4_weight_only"].output_dir / "recipe.json").read_text())
    assert recipe["group_size"] == 32 and recipe["weight_dtype"] == "int4" and "unpacked" in recipe["storage"]


def test_pruning_keeps_embeddings_norms_and_lm_head(outputs: dict, chat_dir: Path) -> None:
    from safetensors.torch import load_file

    source = load_file(str(chat_dir / "model.safetensors"))
    for method in ("magnitude_prune", "semi_structured_24"):
        pruned = load_file(str(outputs[method].output_dir / "model.safetensors"))
        untouched = [key for key in source if "layers" not in key or "norm" in key]
        assert "lm_head.weight" in untouched and "model.embed_tokens.weight" in untouched
        for key in untouched:
            assert torch.equal(source[key], pruned[key]), (method, key)
    details = outputs["magnitude_prune"].details
    assert details["pruned_weight_sparsity"] == pytest.approx(0.3, abs=1e-4)
    assert all(name.startswith("layers.") for name in details["per_layer_sparsity"])


def test_semi_structured_24_pattern_holds_on_every_target(outputs: dict, chat_dir: Path) -> None:
    from safetensors.torch import load_file

    result = outputs["semi_structured_24"]
    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert recipe["pattern"]["n"] == 2 and recipe["pattern"]["m"] == 4 and recipe["pattern"]["axis"] == "input"
    assert len(recipe["targets"]) == 14 and result.details["pruned_weight_sparsity"] == 0.5
    source = load_file(str(chat_dir / "model.safetensors"))
    pruned = load_file(str(result.output_dir / "model.safetensors"))
    for name in recipe["targets"]:
        key = f"model.{name}.weight"
        groups, original = pruned[key].reshape(-1, 4), source[key].reshape(-1, 4)
        assert bool(((groups == 0).sum(dim=1) >= 2).all()), key
        kept = groups != 0
        # The survivors are the 2 largest magnitudes of each group.
        smallest_kept = torch.where(kept, original.abs(), torch.inf).min(dim=1).values
        largest_zeroed = torch.where(~kept, original.abs(), -torch.inf).max(dim=1).values
        assert bool((smallest_kept >= largest_zeroed).all()), key
    assert result.sparsity == pytest.approx(result.details["pruned_weight_zeros"] / TINY_CHAT_PARAMETERS, abs=1e-6)


def test_semi_structured_24_is_deterministic(outputs: dict, chat_dir: Path, tmp_path: Path) -> None:
    again = compress(CompressionRequest("semi_structured_24", chat_dir, tmp_path / "again", {}, 0))
    assert again.manifest_digest == outputs["semi_structured_24"].manifest_digest


def test_tied_lm_head_stays_tied_and_float_and_is_stored_once(tmp_path: Path) -> None:
    from safetensors import safe_open

    from compression.engine.chat import load_chat_model
    from compression.engine.tiny_chat import build_tiny_chat_model

    tied = build_tiny_chat_model(tmp_path / "tied", seed=0, tie_word_embeddings=True)
    source = load_chat_model(tied).model
    for method in ("dynamic_int8", "int8_weight_only"):
        result = compress(CompressionRequest(method, tied, tmp_path / method, {}, 0))
        model = load_chat_model(result.output_dir).model
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert model.lm_head.weight.dtype == torch.float32
        assert torch.equal(model.lm_head.weight, source.model.embed_tokens.weight)
        assert _generate(load_chat_model(result.output_dir)).shape == (2, 4)
    with safe_open(str(tmp_path / "int8_weight_only" / "model_state.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys


def test_methods_that_do_not_apply_to_a_kind_are_refused(chat_dir: Path, tmp_path: Path) -> None:
    from compression.engine import CompressionData

    data = CompressionData(train=(("hello", 0),), calibration=(("hello", 0),))
    for method in ("structured_prune", "distill"):
        _expect(
            "unsupported_architecture",
            CompressionRequest(method, chat_dir, tmp_path / method, {}, 0, data=data),
            method,
            "causal-lm",
        )
    classifier = _classifier_dir(tmp_path / "classifier")
    for method in ("semi_structured_24", "int4_weight_only"):
        _expect(
            "unsupported_architecture",
            CompressionRequest(method, classifier, tmp_path / f"c-{method}", {}, 0),
            "classifier",
        )
    _expect(
        "invalid_parameter",
        CompressionRequest("int4_weight_only", chat_dir, tmp_path / "g", {"group_size": 48}, 0),
        "group_size",
    )
    no_template = _copy_without(chat_dir, tmp_path / "no-template", "chat_template.jinja")
    _expect("no_chat_template", CompressionRequest("dynamic_int8", no_template, tmp_path / "nt", {}, 0))


def test_every_method_says_which_model_kinds_it_applies_to() -> None:
    assert set(METHOD_KINDS) == set(SUPPORTED_METHODS)
    for method in SUPPORTED_METHODS:
        assert describe_method(method)["model_kinds"] == list(METHOD_KINDS[method])
    assert describe_method("semi_structured_24")["model_kinds"] == ["causal-lm"]
    assert describe_method("structured_prune")["model_kinds"] == ["classifier"]
    assert describe_method("dynamic_int8")["model_kinds"] == ["classifier", "causal-lm"]
    assert "int4" in describe_method("int4_weight_only")["summary"]


# --- GGUF import --------------------------------------------------------------------------------------------


def test_gguf_import_converts_once_and_records_the_quantization(chat_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    from safetensors.torch import load_file

    from compression.engine.chat import load_chat_model
    from compression.engine.gguf import gguf_import
    from compression.engine.tiny_chat import write_tiny_chat_gguf

    gguf_path = write_tiny_chat_gguf(chat_dir, tmp_path / "tiny.Q8_0.gguf")
    report = gguf_import(gguf_path, tmp_path / "imported")
    source = json.loads((tmp_path / "imported" / "source.json").read_text())
    assert source["dequantized_from"] == "Q8_0" and source["gguf_file"] == "tiny.Q8_0.gguf"
    assert source["gguf_sha256"] == hashlib.sha256(gguf_path.read_bytes()).hexdigest()
    assert source["gguf_tensor_types"] == {"F32": 5, "Q8_0": 16} and "dequantized" in source["note"]
    assert report["manifest_digest"] == manifest_digest(tmp_path / "imported")
    assert source["chat_template_sha256"] == chat_template_digest(chat_dir)
    loaded = load_chat_model(tmp_path / "imported")
    assert loaded.source["gguf_sha256"] == source["gguf_sha256"] and loaded.format == "hf-dir"
    original, imported = (
        load_file(str(chat_dir / "model.safetensors")),
        load_file(str(tmp_path / "imported" / "model.safetensors")),
    )
    assert set(original) == set(imported)
    for key, value in original.items():  # Q8_0 error only (q/k rows un-permuted correctly)
        assert float((value - imported[key]).abs().max()) < 0.01, key
    text = "<|im_start|>user\nthe user asked about a poem<|im_end|>\n"
    assert loaded.tokenizer(text)["input_ids"] == load_chat_model(chat_dir).tokenizer(text)["input_ids"]
    assert _generate(loaded).shape == (2, 4)
    with pytest.raises(EngineError) as caught:
        gguf_import(gguf_path, tmp_path / "imported")
    assert caught.value.code == "invalid_parameter"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
