"""A registered folder's parameter count, measured from its safetensors headers when it is stored (folder, import,
upload, MLflow registry all store through the same code), without loading a weight."""

import json
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from compression.engine.weights_header import INDEX_FILE, safetensors_parameter_count


def _folder(tmp_path, tensors: dict, name="model.safetensors"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp_path / name))
    return tmp_path


def test_floating_point_tensors_are_counted_and_integer_buffers_are_not(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "encoder.weight": np.zeros((7, 5), dtype=np.float32),
            "encoder.bias": np.zeros((5,), dtype=np.float16),
            "embeddings.position_ids": np.arange(11, dtype=np.int64).reshape(1, 11),
        },
    )
    assert safetensors_parameter_count(folder) == 7 * 5 + 5


def test_sharded_weights_are_counted_across_the_shards_the_index_names(tmp_path):
    save_file({"a": np.zeros((3, 4), dtype=np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros((6,), dtype=np.float32)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (tmp_path / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert safetensors_parameter_count(tmp_path) == 12 + 6
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    assert safetensors_parameter_count(tmp_path) is None  # shards live beside the index


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x01\x02",
        struct.pack("<Q", 10**12) + b"{}",
        struct.pack("<Q", 4) + b"[1]x",
        struct.pack("<Q", 3) + b"{x}",
    ],
)
def test_an_unreadable_header_is_an_unknown_count_not_a_failure(tmp_path, content):
    (tmp_path / "model.safetensors").write_bytes(content)
    assert safetensors_parameter_count(tmp_path) is None


def test_a_folder_without_safetensors_weights_has_no_count(tmp_path):
    (tmp_path / "model_state.pt").write_bytes(b"not counted here")
    assert safetensors_parameter_count(tmp_path) is None


@pytest.mark.django_db
def test_a_registered_folder_artifact_has_the_loaded_model_s_parameter_count(base_artifact, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from compression.engine.parameters import count_parameters

    expected = count_parameters(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir))
    assert expected > 0
    assert base_artifact.parameter_count == expected
    base_artifact.refresh_from_db()
    assert base_artifact.parameter_count == expected


@pytest.mark.django_db
def test_registering_again_fills_in_a_count_an_older_registration_lacks(engineer, base_artifact, tiny_model_dir):
    from compression.models import ModelArtifact
    from compression.services.artifacts import artifact_register

    counted = base_artifact.parameter_count
    ModelArtifact.objects.filter(pk=base_artifact.pk).update(parameter_count=None)  # registered before counting
    again = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    assert again.pk == base_artifact.pk and again.parameter_count == counted
    assert ModelArtifact.objects.get(pk=base_artifact.pk).parameter_count == counted


@pytest.mark.django_db
def test_an_uploaded_folder_is_counted_too(engineer_api, tiny_model_dir, tmp_path):
    from compression.models import ModelArtifact
    from tests.compression.test_uploads import _create, _send

    folder = tmp_path / "upload"
    shutil.copytree(tiny_model_dir, folder)
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder)
    finished = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    assert finished.status_code == 200, finished.json()
    artifact = ModelArtifact.objects.get(pk=finished.json()["artifact"]["id"])
    assert artifact.parameter_count is not None
    assert artifact.parameter_count == safetensors_parameter_count(tiny_model_dir)
