"""Compression methods beyond dynamic int8: casts, torchao int8, pruning, distillation, validation, teacher cache.

All on the session's tiny BERT (2 layers, hidden 64, 2 heads of 32, FFN 128, 267,651 parameters).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from compression.engine import (
    CompressionData,
    CompressionRequest,
    EngineError,
    compress,
    method_available,
    resolve_parameters,
    validate_parameters,
    validate_student,
)
from compression.engine.manifest import dir_size, manifest, manifest_digest

TINY_PARAMETERS = 267_651
# One head of the tiny model: q/k/v rows (3 x (64 x 32 + 32)) + attention-output columns (64 x 32).
PARAMS_PER_HEAD = 3 * (64 * 32 + 32) + 64 * 32
# One FFN neuron: intermediate row + bias (64 + 1) + output column (64).
PARAMS_PER_NEURON = 64 + 1 + 64
# Encoder Linear weights: 2 layers x (4 x 64x64 + 64x128 + 128x64).
ENCODER_LINEAR_WEIGHTS = 65_536
TEXTS = ["i love my neighbours", "they are all vermin and should be removed", "what a lovely day at the beach"]
TEACHER_CONFIG = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> dict[str, list[tuple[str, int]]]:
    from compression.engine.teacher import read_hatexplain

    return read_hatexplain(data_dir / "hatexplain" / "hatexplain_merged.csv")


@pytest.fixture(scope="module")
def data(rows: dict[str, list[tuple[str, int]]]) -> CompressionData:
    return CompressionData(
        train=tuple(rows["train"][:160]),
        calibration=tuple(rows["train"][160:224]),
        stress=tuple(rows["val"][:24]),
        heldout_adversarial=tuple(rows["val"][24:64]),
    )


def _run(method: str, source: Path, out: Path, parameters: dict | None = None, **kwargs) -> object:
    return compress(CompressionRequest(method, source, out, parameters or {}, kwargs.pop("seed", 0), **kwargs))


def _expect(code: str, request: CompressionRequest, *names: str) -> EngineError:
    with pytest.raises(EngineError) as caught:
        compress(request)
    assert caught.value.code == code, caught.value
    for name in names:
        assert name in caught.value.message
    assert not request.output_dir.exists()
    return caught.value


def _probs(loaded, texts=TEXTS):
    import torch

    with torch.inference_mode():
        encoded = loaded.tokenizer(texts, padding=True, return_tensors="pt")
        return torch.softmax(loaded.model(**encoded).logits.float(), dim=-1)


# --- validation (torch-free) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parameters", "name"),
    [
        ("magnitude_prune", {"sparsity": 1.0}, "sparsity"),
        ("magnitude_prune", {"sparsity": -0.1}, "sparsity"),
        ("magnitude_prune", {"sparsity": "0.5"}, "sparsity"),
        ("magnitude_prune", {"sparsity": True}, "sparsity"),
        ("magnitude_prune", {"sparsity": float("nan")}, "sparsity"),
        ("magnitude_prune", {"scope": "tensor"}, "scope"),
        ("magnitude_prune", {"sparsty": 0.5}, "sparsty"),
        ("structured_prune", {"head_fraction": 1.0}, "head_fraction"),
        ("structured_prune", {"ffn_fraction": -0.01}, "ffn_fraction"),
        ("structured_prune", {"recovery_epochs": 1.5}, "recovery_epochs"),
        ("fp16", {"bits": 16}, "bits"),
        ("distill", {"temperature": 0}, "temperature"),
        ("distill", {"alpha": 1.5}, "alpha"),
        ("distill", {"num_layers": 0}, "num_layers"),
        ("distill", {"init_layers": [0, "1"]}, "init_layers"),
        ("distill", {"reject": "confidence"}, "reject_threshold"),
        ("distill", {"reject": "confidence", "reject_threshold": 1.5}, "reject_threshold"),
        ("distill", {"reject_threshold": 0.5}, "reject_threshold"),
        ("distill", {"rounds": 0}, "rounds"),
    ],
)
def test_bad_parameters_name_the_parameter(method: str, parameters: dict, name: str) -> None:
    with pytest.raises(EngineError) as caught:
        validate_parameters(method, parameters)
    assert caught.value.code == "invalid_parameter"
    assert repr(name) in caught.value.message or name in caught.value.message


def test_defaults_are_filled_in() -> None:
    assert resolve_parameters("magnitude_prune", {}) == {"sparsity": 0.5, "scope": "global"}
    assert resolve_parameters("magnitude_prune", {"sparsity": 0}) == {"sparsity": 0, "scope": "global"}
    assert resolve_parameters("fp16", {}) == {}
    structured = resolve_parameters("structured_prune", {"head_fraction": 0.5})
    assert (structured["head_fraction"], structured["ffn_fraction"], structured["scope"]) == (0.5, 0.3, "global")
    distill = resolve_parameters("distill", {"init_layers": (0, 1)})
    assert distill["init_layers"] == [0, 1] and distill["rounds"] == 1 and distill["reject"] == "none"
    with pytest.raises(EngineError) as caught:
        validate_parameters("no_such_method", {})
    assert caught.value.code == "unknown_method"
    assert method_available("dynamic_int8") and not method_available("no_such_method")


def test_validate_student_against_teacher_config() -> None:
    assert validate_student({"num_layers": 1}, TEACHER_CONFIG) == {
        "num_layers": 1,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "init_layers": [1],
    }
    assert validate_student({"num_layers": 2}, TEACHER_CONFIG)["init_layers"] == [0, 1]
    assert validate_student({"num_layers": 1, "hidden_size": 32}, TEACHER_CONFIG) == {
        "num_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 1,
        "intermediate_size": 64,
        "init_layers": None,
    }
    for parameters, name in (
        ({"num_layers": 3}, "num_layers"),
        ({"hidden_size": 128}, "hidden_size"),
        ({"hidden_size": 48}, "hidden_size"),  # not a multiple of the head size 32
        ({"num_layers": 1, "init_layers": [0, 1]}, "init_layers"),
        ({"num_layers": 1, "init_layers": [2]}, "init_layers"),
        ({"num_layers": 2, "init_layers": [1, 1]}, "init_layers"),
        ({"num_layers": 1, "hidden_size": 32, "init_layers": [0]}, "init_layers"),
        ({"num_layers": 1, "intermediate_size": 129}, "intermediate_size"),
    ):
        with pytest.raises(EngineError) as caught:
            validate_student(parameters, TEACHER_CONFIG)
        assert caught.value.code == "invalid_parameter" and name in caught.value.message, parameters


def test_narrow_student_keeps_the_largest_teacher_neurons(tiny_model_dir: Path) -> None:
    import torch

    from compression.engine.distill import build_student
    from compression.engine.loading import load_classifier

    teacher = load_classifier(tiny_model_dir).model
    assert validate_student({"num_layers": 1, "intermediate_size": 48}, TEACHER_CONFIG)["intermediate_size"] == 48
    student, shape = build_student(teacher, {"num_layers": 1, "init_layers": [0], "intermediate_size": 48})
    assert shape["intermediate_size"] == 48 and student.config.intermediate_size == 48
    source, target = teacher.base_model.encoder.layer[0], student.base_model.encoder.layer[0]
    score = source.intermediate.dense.weight.norm(dim=1) * source.output.dense.weight.norm(dim=0)
    kept = torch.sort(torch.topk(score, 48).indices).values
    assert torch.equal(target.intermediate.dense.weight, source.intermediate.dense.weight[kept])
    assert torch.equal(target.intermediate.dense.bias, source.intermediate.dense.bias[kept])
    assert torch.equal(target.output.dense.weight, source.output.dense.weight[:, kept])
    assert torch.equal(target.output.dense.bias, source.output.dense.bias)  # hidden-sized: copied whole
    assert torch.equal(target.attention.self.query.weight, source.attention.self.query.weight)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_compression_data_is_validated_and_digested() -> None:
    data = CompressionData(train=[("a b", 1)], calibration=[["c", 0]])
    assert data.train == (("a b", 1),) and data.calibration == (("c", 0),) and data.stress == ()
    canonical = '{"calibration":[["c",0]],"heldout_adversarial":[],"stress":[],"train":[["a b",1]]}'
    assert data.digest() == hashlib.sha256(canonical.encode()).hexdigest()
    assert data.counts() == {"train": 1, "stress": 0, "heldout_adversarial": 0, "calibration": 1}
    for bad in ([("x", -1)], [("", 0)], [("x", 1.0)], [("x",)], "text"):
        with pytest.raises(EngineError) as caught:
            CompressionData(train=bad)
        assert caught.value.code == "invalid_input" and "train" in caught.value.message


# --- request-level errors ---------------------------------------------------------------------------


def test_request_errors_name_the_field(tiny_model_dir: Path, data: CompressionData, tmp_path: Path) -> None:
    src = tiny_model_dir
    _expect(
        "invalid_parameter", CompressionRequest("magnitude_prune", src, tmp_path / "a", {"sparsity": 1.0}), "sparsity"
    )
    _expect(
        "invalid_parameter", CompressionRequest("magnitude_prune", src, tmp_path / "b", {"sparsity": -0.1}), "sparsity"
    )
    _expect("invalid_parameter", CompressionRequest("structured_prune", src, tmp_path / "c", {"heads": 0.5}), "heads")
    _expect("empty_input", CompressionRequest("structured_prune", src, tmp_path / "d", {}), "calibration")
    _expect(
        "empty_input",
        CompressionRequest("structured_prune", src, tmp_path / "e", {}, data=CompressionData(train=data.train)),
        "calibration",
    )
    _expect(
        "empty_input",
        CompressionRequest(
            "structured_prune",
            src,
            tmp_path / "e2",
            {"recovery_epochs": 1},
            data=CompressionData(calibration=data.calibration),
        ),
        "train",
    )
    _expect("empty_input", CompressionRequest("distill", src, tmp_path / "f", {"num_layers": 1}), "train")
    _expect(
        "empty_input",
        CompressionRequest(
            "distill", src, tmp_path / "g", {"num_layers": 1, "rounds": 2}, data=CompressionData(train=data.train)
        ),
        "heldout_adversarial",
    )
    _expect(
        "empty_input",
        CompressionRequest(
            "distill",
            src,
            tmp_path / "h",
            {"num_layers": 1, "use_stress": True},
            data=CompressionData(train=data.train),
        ),
        "stress",
    )
    _expect(
        "invalid_parameter",
        CompressionRequest("distill", src, tmp_path / "i", {"num_layers": 3}, data=data),
        "num_layers",
    )
    _expect(
        "invalid_parameter",
        CompressionRequest("distill", src, tmp_path / "j", {"num_layers": 1, "hidden_size": 96}, data=data),
        "hidden_size",
    )
    _expect(
        "invalid_input",
        CompressionRequest(
            "distill", src, tmp_path / "k", {"num_layers": 1}, data=CompressionData(train=[("hello there", 3)])
        ),
        "train",
    )
    _expect("invalid_parameter", CompressionRequest("fp16", src, tmp_path / "l", {}, device="cuda:7"), "device")
    _expect("invalid_parameter", CompressionRequest("fp16", src, tmp_path / "m", {}, device="tpu"), "device")
    _expect("invalid_parameter", CompressionRequest("fp16", src, tmp_path / "n", {}, teachers=(src,)), "teachers")


def test_teachers_must_share_classes(tiny_model_dir: Path, data: CompressionData, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "normal", "1": "toxic", "2": "offensive"}
    config["label2id"] = {"normal": 0, "toxic": 1, "offensive": 2}
    (other / "config.json").write_text(json.dumps(config))
    _expect(
        "invalid_input",
        CompressionRequest(
            "distill", tiny_model_dir, tmp_path / "o", {"num_layers": 1, "epochs": 1}, data=data, teachers=(other,)
        ),
        "teachers",
    )


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("method", "parameters", "stop_at"),
    [
        ("structured_prune", {"head_fraction": 0.5}, "saving"),
        ("magnitude_prune", {}, "done"),
        ("distill", {"num_layers": 1, "epochs": 1, "rounds": 2}, "evaluating"),
        ("fp16", {}, "loading"),
    ],
)
def test_raising_progress_callback_leaves_no_output(
    tiny_model_dir: Path, data: CompressionData, tmp_path: Path, method: str, parameters: dict, stop_at: str
) -> None:
    seen: list[str] = []

    def progress(stage: str, fraction: float) -> None:
        seen.append(stage)
        if stage == stop_at:
            raise Stop(stage)

    out = tmp_path / "out"
    with pytest.raises(Stop):
        compress(CompressionRequest(method, tiny_model_dir, out, parameters, 0, data=data), progress)
    assert seen[-1] == stop_at
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# --- casts and int8 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "dtype"), [("fp16", "float16"), ("bf16", "bfloat16")])
def test_half_precision_casts(tiny_model_dir: Path, tmp_path: Path, method: str, dtype: str) -> None:
    import torch

    from compression.engine.loading import load_classifier

    stages: list[tuple[str, float]] = []
    result = compress(
        CompressionRequest(method, tiny_model_dir, tmp_path / "a", {}, 0),
        lambda stage, fraction: stages.append((stage, fraction)),
    )
    assert stages == [("loading", 0.1), ("casting", 0.5), ("saving", 0.8), ("done", 1.0)]
    assert result.format == "hf-dir" and result.dtypes == {dtype: 41}
    assert result.parameter_count == result.source_parameter_count == TINY_PARAMETERS
    assert json.loads((result.output_dir / "config.json").read_text())["dtype"] == dtype
    weights = (result.output_dir / "model.safetensors").stat().st_size
    assert weights < (tiny_model_dir / "model.safetensors").stat().st_size * 0.55
    assert result.size_bytes == dir_size(result.output_dir) < result.source_size_bytes
    loaded = load_classifier(result.output_dir)
    assert {p.dtype for p in loaded.model.parameters()} == {getattr(torch, dtype)}
    reference = _probs(load_classifier(tiny_model_dir))
    assert float((_probs(loaded) - reference).abs().max()) < 0.02
    again = compress(CompressionRequest(method, tiny_model_dir, tmp_path / "b", {}, 0))
    assert manifest_digest(again.output_dir) == manifest_digest(result.output_dir) == result.manifest_digest
    json.dumps(result.to_dict())


def test_int8_weight_only_is_refused_where_torchao_is_missing(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    assert not method_available("int8_weight_only") and method_available("dynamic_int8")
    with pytest.raises(EngineError) as caught:
        validate_parameters("int8_weight_only", {})
    assert caught.value.code == "method_unavailable"
    _expect("method_unavailable", CompressionRequest("int8_weight_only", tiny_model_dir, tmp_path / "o", {}, 0))


def test_int8_weight_only_with_torchao(tiny_model_dir: Path, tmp_path: Path) -> None:
    from compression.engine.loading import load_classifier

    assert method_available("int8_weight_only")  # torchao is pinned in requirements.txt
    result = compress(CompressionRequest("int8_weight_only", tiny_model_dir, tmp_path / "a", {}, 0))
    assert result.format == "torchao-int8"
    assert result.dtypes["int8"] == 28  # qdata + zero_point of 14 Linear layers
    assert [name for name, _, _ in manifest(result.output_dir)] == [
        "config.json",
        "model_state.safetensors",
        "recipe.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    loaded = load_classifier(result.output_dir)
    assert loaded.format == "torchao-int8"
    assert float((_probs(loaded) - _probs(load_classifier(tiny_model_dir))).abs().max()) < 0.05
    again = compress(CompressionRequest("int8_weight_only", tiny_model_dir, tmp_path / "b", {}, 0))
    assert manifest_digest(again.output_dir) == result.manifest_digest
    _expect(
        "invalid_parameter",
        CompressionRequest("int8_weight_only", tiny_model_dir, tmp_path / "c", {}, 0, device="cuda"),
        "device",
    )


# --- unstructured pruning ---------------------------------------------------------------------------


def test_magnitude_prune_global_exact_sparsity_and_reproducible(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    from compression.engine.loading import load_classifier

    result = compress(CompressionRequest("magnitude_prune", tiny_model_dir, tmp_path / "a", {"sparsity": 0.5}, 0))
    details = result.details
    assert details["pruned_weight_count"] == ENCODER_LINEAR_WEIGHTS
    assert details["pruned_weight_zeros"] == ENCODER_LINEAR_WEIGHTS // 2
    assert details["pruned_weight_sparsity"] == 0.5
    assert result.format == "hf-dir" and result.parameter_count == TINY_PARAMETERS
    source_nonzero = TINY_PARAMETERS - result.details["pruned_weight_zeros"]
    assert result.nonzero_parameter_count <= source_nonzero
    assert result.sparsity == pytest.approx(1 - result.nonzero_parameter_count / TINY_PARAMETERS)
    loaded = load_classifier(result.output_dir)
    encoder = loaded.model.bert.encoder
    zeros = sum(int((m.weight == 0).sum()) for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    assert zeros == ENCODER_LINEAR_WEIGHTS // 2
    assert int((loaded.model.classifier.weight == 0).sum()) == 0  # the head is untouched
    # Global: the kept weights are exactly the largest half by magnitude.
    source = load_classifier(tiny_model_dir).model.bert.encoder
    weights = torch.cat([m.weight.detach().flatten() for m in source.modules() if isinstance(m, torch.nn.Linear)])
    pruned = torch.cat([m.weight.detach().flatten() for m in encoder.modules() if isinstance(m, torch.nn.Linear)])
    assert float(weights.abs()[pruned == 0].max()) <= float(weights.abs()[pruned != 0].min())
    assert torch.equal(pruned[pruned != 0], weights[pruned != 0])
    _probs(loaded)
    again = compress(CompressionRequest("magnitude_prune", tiny_model_dir, tmp_path / "b", {"sparsity": 0.5}, 0))
    assert manifest_digest(again.output_dir) == result.manifest_digest != manifest_digest(tiny_model_dir)


def test_magnitude_prune_per_layer_scope(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = compress(
        CompressionRequest("magnitude_prune", tiny_model_dir, tmp_path / "a", {"sparsity": 0.3, "scope": "layer"}, 0)
    )
    per_layer = result.details["per_layer_sparsity"]
    assert len(per_layer) == 12  # 6 Linear per layer x 2 layers
    sizes = {
        "query": 4096,
        "key": 4096,
        "value": 4096,
        "attention.output.dense": 4096,
        "intermediate.dense": 8192,
        "output.dense": 8192,
    }
    for name, value in per_layer.items():
        size = next(size for suffix, size in sizes.items() if name.endswith(suffix))
        assert value == round(round(0.3 * size) / size, 6), name
    zero = compress(CompressionRequest("magnitude_prune", tiny_model_dir, tmp_path / "b", {"sparsity": 0}, 0))
    assert zero.details["pruned_weight_zeros"] == 0


# --- structured pruning -----------------------------------------------------------------------------


def test_structured_prune_removes_heads_and_neurons(
    tiny_model_dir: Path, data: CompressionData, tmp_path: Path
) -> None:
    import torch

    from compression.engine.loading import load_classifier
    from compression.engine.parameters import count_parameters
    from compression.engine.structure import apply_structure

    request = CompressionRequest(
        "structured_prune",
        tiny_model_dir,
        tmp_path / "a",
        {"head_fraction": 0.5, "ffn_fraction": 0.5},
        0,
        data=data,
        data_digest="suite:v1",
    )
    result = compress(request)
    details = result.details
    assert result.format == "hf-pruned" and result.data_digest == "suite:v1"
    assert details["importance"] == "gradient_taylor" and details["calibration_examples"] == 64
    assert details["heads_total_before"] == 4 and details["heads_total_after"] == 2
    assert details["neurons_total_before"] == 256 and details["neurons_total_after"] == 128
    assert all(count >= 1 for count in details["heads_kept_per_layer"])
    assert result.source_parameter_count == TINY_PARAMETERS
    assert result.parameter_count == TINY_PARAMETERS - 2 * PARAMS_PER_HEAD - 128 * PARAMS_PER_NEURON
    assert details["parameter_count_after"] == result.parameter_count
    assert result.size_bytes < result.source_size_bytes

    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert recipe["format"] == "hf-pruned" and len(recipe["layers"]) == 2
    assert [len(layer["heads"]) for layer in recipe["layers"]] == details["heads_kept_per_layer"]
    assert [len(layer["neurons"]) for layer in recipe["layers"]] == details["neurons_kept_per_layer"]
    loaded = load_classifier(result.output_dir)
    assert loaded.format == "hf-pruned" and count_parameters(loaded.model) == result.parameter_count
    for layer, entry in zip(loaded.model.bert.encoder.layer, recipe["layers"], strict=True):
        assert layer.attention.self.query.out_features == 32 * len(entry["heads"])
        assert layer.attention.self.num_attention_heads == len(entry["heads"])
        assert layer.attention.output.dense.in_features == 32 * len(entry["heads"])
        assert layer.intermediate.dense.out_features == len(entry["neurons"])
    # Same recipe applied to the source in memory gives the same outputs as the reloaded artifact.
    source = load_classifier(tiny_model_dir)
    apply_structure(source.model, recipe["layers"])
    assert torch.allclose(_probs(source), _probs(loaded), atol=1e-6)
    again = compress(
        CompressionRequest(
            "structured_prune",
            tiny_model_dir,
            tmp_path / "b",
            {"head_fraction": 0.5, "ffn_fraction": 0.5},
            0,
            data=data,
        )
    )
    assert manifest_digest(again.output_dir) == result.manifest_digest


def test_structured_prune_layer_scope_and_identity(tiny_model_dir: Path, data: CompressionData, tmp_path: Path) -> None:
    import torch

    from compression.engine.loading import load_classifier

    layer = compress(
        CompressionRequest(
            "structured_prune",
            tiny_model_dir,
            tmp_path / "a",
            {"head_fraction": 0.5, "ffn_fraction": 0.25, "scope": "layer"},
            0,
            data=data,
        )
    )
    assert layer.details["heads_kept_per_layer"] == [1, 1]
    assert layer.details["neurons_kept_per_layer"] == [96, 96]
    identity = compress(
        CompressionRequest(
            "structured_prune",
            tiny_model_dir,
            tmp_path / "b",
            {"head_fraction": 0.0, "ffn_fraction": 0.0},
            0,
            data=data,
        )
    )
    assert identity.parameter_count == TINY_PARAMETERS
    assert torch.allclose(
        _probs(load_classifier(identity.output_dir)), _probs(load_classifier(tiny_model_dir)), atol=1e-6
    )


def test_structured_prune_recovery_training(tiny_model_dir: Path, data: CompressionData, tmp_path: Path) -> None:
    result = compress(
        CompressionRequest(
            "structured_prune",
            tiny_model_dir,
            tmp_path / "a",
            {"head_fraction": 0.25, "ffn_fraction": 0.5, "recovery_epochs": 2, "recovery_max_examples": 100},
            0,
            data=data,
        )
    )
    recovery = result.details["recovery"]
    assert recovery["examples"] == 100 and len(recovery["epoch_loss"]) == 2
    assert result.parameter_count == TINY_PARAMETERS - PARAMS_PER_HEAD - 128 * PARAMS_PER_NEURON


def test_pruned_recipe_that_does_not_match_weights_is_corrupt(
    tiny_model_dir: Path, data: CompressionData, tmp_path: Path
) -> None:
    from compression.engine.loading import load_classifier

    result = compress(
        CompressionRequest(
            "structured_prune",
            tiny_model_dir,
            tmp_path / "a",
            {"head_fraction": 0.5, "ffn_fraction": 0.5},
            0,
            data=data,
        )
    )
    recipe_path = result.output_dir / "recipe.json"
    recipe = json.loads(recipe_path.read_text())
    recipe["layers"][0]["neurons"] = recipe["layers"][0]["neurons"][:-1]
    recipe_path.write_text(json.dumps(recipe))
    with pytest.raises(EngineError) as caught:
        load_classifier(result.output_dir)
    assert caught.value.code == "corrupt_artifact"
    recipe_path.write_text(json.dumps({**recipe, "format": "mystery"}))
    with pytest.raises(EngineError) as caught:
        load_classifier(result.output_dir)
    assert caught.value.code == "corrupt_artifact"


# --- distillation -----------------------------------------------------------------------------------


def test_distill_with_safety_options_two_rounds(tiny_model_dir: Path, data: CompressionData, tmp_path: Path) -> None:
    from compression.engine.common import encode, predict_probs
    from compression.engine.loading import load_classifier

    parameters = {
        "num_layers": 1,
        "epochs": 1,
        "batch_size": 32,
        "use_stress": True,
        "reject": "confidence",
        "reject_threshold": 0.6,
        "rounds": 2,
        "lr": 5e-4,
    }
    stages: list[str] = []
    result = compress(
        CompressionRequest("distill", tiny_model_dir, tmp_path / "a", parameters, 3, data=data),
        lambda stage, fraction: stages.append(stage),
    )
    assert stages == [
        "loading",
        "teacher_outputs",
        "training",
        "evaluating",
        "training",
        "evaluating",
        "saving",
        "done",
    ]
    details = result.details
    assert details["student"] == {
        "num_layers": 1,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "init_layers": [1],
    }
    assert details["train_examples"] == 160 and details["stress_examples"] == 24
    # Rejected counts match the teacher's own confidences.
    teacher = load_classifier(tiny_model_dir)
    confidence = (
        predict_probs(
            teacher.model, encode(teacher.tokenizer, [t for t, _ in data.train + data.stress], 64), teacher.model.device
        )
        .max(dim=-1)
        .values
    )
    assert details["rejected"]["train"] == int((confidence[:160] < 0.6).sum())
    assert details["rejected"]["stress"] == int((confidence[160:] < 0.6).sum())
    assert details["reject_threshold"] == 0.6
    first, second = details["rounds"]
    assert (first["round"], second["round"]) == (1, 2)
    assert first["train_examples"] == 184 and first["heldout_examples"] == 40
    assert first["heldout_failures"] == round((1 - first["heldout_accuracy"]) * 40)
    assert second["train_examples"] == 184 + first["failures_added_next_round"]
    assert first["failures_added_next_round"] == first["heldout_failures"]
    assert second["added_failures_in_training"] == first["heldout_failures"]
    assert second["heldout_contaminated"] is True and "failures_added_next_round" not in second
    assert len(first["epoch_loss"]) == 1 and len(details["loss_curve"]) == 2
    assert result.parameter_count < TINY_PARAMETERS
    loaded = load_classifier(result.output_dir)
    assert loaded.format == "hf-dir" and loaded.model.config.num_hidden_layers == 1
    assert loaded.labels == ("normal", "hatespeech", "offensive")
    _probs(loaded)
    json.dumps(result.to_dict())
    # Deterministic on the CPU: same request and seed, same bytes.
    again = compress(CompressionRequest("distill", tiny_model_dir, tmp_path / "b", parameters, 3, data=data))
    assert manifest_digest(again.output_dir) == result.manifest_digest


def test_distill_fresh_smaller_student_and_two_teachers(
    tiny_model_dir: Path, data: CompressionData, tmp_path: Path
) -> None:
    from compression.engine.loading import load_classifier

    second = compress(CompressionRequest("magnitude_prune", tiny_model_dir, tmp_path / "t2", {"sparsity": 0.3}, 0))
    small = CompressionData(train=data.train[:96], heldout_adversarial=data.heldout_adversarial[:20])
    result = compress(
        CompressionRequest(
            "distill",
            tiny_model_dir,
            tmp_path / "a",
            {"num_layers": 1, "hidden_size": 32, "epochs": 1, "reject": "entropy", "reject_threshold": 0.9},
            0,
            data=small,
            teachers=(second.output_dir,),
        )
    )
    details = result.details
    assert details["teacher_count"] == 2 and details["initialisation"] == "fresh"
    assert details["rejected"]["stress"] == 0 and details["rejected"]["heldout_added"] == 0
    assert len(details["rounds"]) == 1 and details["rounds"][0]["heldout_examples"] == 20
    config = load_classifier(result.output_dir).model.config
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (32, 1, 64)


# --- teacher cache ----------------------------------------------------------------------------------


def test_reference_teacher_builds_once_then_comes_from_cache(
    tiny_model_dir: Path, rows: dict[str, list[tuple[str, int]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The teacher recipe on the tiny model and a small CSV instead of MiniLM (tests never train the real teacher)."""
    import csv

    import compression.engine.teacher as teacher

    monkeypatch.setattr(teacher, "base_model_path", lambda: tiny_model_dir)
    csv_path = tmp_path / "hatexplain.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post_id", "split", "text", "label", "targets_majority"])
        for split, items in (("train", rows["train"][:200]), ("test", rows["test"][:100])):
            for number, (text, label) in enumerate(items):
                writer.writerow([f"{split}{number}", split, text, teacher.TEACHER_LABELS[label], ""])
        writer.writerow(["u1", "", "an undecided post", "undecided", ""])
    stages: list[str] = []
    kwargs = {
        "data_csv": csv_path,
        "cache_dir": tmp_path / "cache",
        "max_train": 150,
        "epochs": 1,
        "frozen_layers": 1,
        "max_length": 32,
    }
    first = teacher.build_reference_teacher(progress=lambda stage, fraction: stages.append(stage), **kwargs)
    assert not first.cached and first.test_examples == 100 and first.train_examples == 150
    assert 0.2 < first.accuracy < 1 and 0 < first.macro_f1 < 1
    assert stages[0] == "hashing" and stages[-1] == "done" and "training" in stages
    assert first.model_dir == tmp_path / "cache" / first.cache_key / "model"
    assert len(first.cache_key) == 64 and first.choices["code_version"] == teacher.TEACHER_CODE_VERSION
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [first.cache_key]  # no scratch left
    second = teacher.build_reference_teacher(**kwargs)
    assert second.cached and second.accuracy == first.accuracy and second.model_dir == first.model_dir
    assert second.seconds < 5
    hyper = {"epochs": 1}
    key = teacher._cache_key("d" * 64, "b" * 64, hyper)
    assert key != teacher._cache_key("e" * 64, "b" * 64, hyper) != teacher._cache_key("d" * 64, "b" * 64, {"epochs": 2})
    with pytest.raises(EngineError) as caught:
        teacher.build_reference_teacher(**{**kwargs, "frozen_layers": 2})
    assert caught.value.code == "invalid_parameter" and "frozen_layers" in caught.value.message


def test_a_method_that_transforms_the_cpu_copy_records_cpu_whatever_device_was_asked(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16 casts the loaded CPU copy: asked for another device (here PyTorch's `meta`, which every machine has and
    which no computation could have used), the result still says where the work was done."""
    import torch

    from compression.engine import runner

    monkeypatch.setattr(runner, "resolve_device", lambda name: torch.device("meta"))
    result = compress(CompressionRequest("fp16", tiny_model_dir, tmp_path / "half", {}, device="meta"))
    assert result.device == "cpu"
    assert "fp16" not in runner.DEVICE_METHODS and {"distill", "structured_prune"} <= runner.DEVICE_METHODS
