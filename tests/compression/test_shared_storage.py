"""The shared, S3-compatible artifact storage: workers on several machines share artifacts.

The real django-storages S3 backend and boto3 talk to moto's in-process S3 (no network). Each
"machine" is a separate, empty local store (ARTIFACT_ROOT); the bucket is what they share."""

import json

import pytest

from compression.engine.errors import EngineError
from compression.engine.manifest import manifest_digest
from compression.models import CompressionRun, RunStatus
from compression.services.artifacts import artifact_fetch_receipt, artifact_path, artifact_register
from compression.services.experiments import experiment_create

pytestmark = pytest.mark.django_db(transaction=True)
BUCKET = "safeshrink-artifacts"


@pytest.fixture
def bucket(settings, tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {
            **settings.STORAGES,
            "artifacts": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {"bucket_name": BUCKET, "region_name": "us-east-1", "location": "artifacts"},
            },
        }
        settings.SAFESHRINK = {
            **settings.SAFESHRINK,
            "ARTIFACT_STORAGE": "artifacts",
            "ARTIFACT_ROOT": tmp_path / "machine-a",
        }
        yield client


def _keys(client) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def _machine(settings, tmp_path, name: str) -> None:
    """Switch to another machine: same database and bucket, an empty local store."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "ARTIFACT_ROOT": tmp_path / name}


def test_registered_artifact_is_published_and_another_machine_fetches_it(
    bucket, settings, tmp_path, engineer, tiny_model_dir
):
    artifact = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    files = {entry["path"] for entry in artifact.manifest}
    assert _keys(bucket) == {f"artifacts/{artifact.digest}.manifest.json"} | {
        f"artifacts/{artifact.digest}/{path}" for path in files
    }
    manifest = json.loads(
        bucket.get_object(Bucket=BUCKET, Key=f"artifacts/{artifact.digest}.manifest.json")["Body"].read()
    )
    assert manifest == artifact.manifest

    _machine(settings, tmp_path, "machine-b")
    assert not (tmp_path / "machine-b" / artifact.digest).exists()
    fetched = artifact_path(artifact)
    assert fetched == tmp_path / "machine-b" / artifact.digest
    assert manifest_digest(fetched) == artifact.digest
    assert not any((tmp_path / "machine-b" / "tmp").iterdir())  # no staging folder left behind
    # Machine B keeps a receipt of the verified fetch; machine A, where it was registered, has none.
    receipt = artifact_fetch_receipt(artifact.digest)
    assert receipt is not None and receipt["digest"] == artifact.digest
    assert (receipt["files"], receipt["bytes"]) == (len(files), artifact.size_bytes)
    _machine(settings, tmp_path, "machine-a")
    assert artifact_fetch_receipt(artifact.digest) is None


def test_storing_and_uploading_touch_no_database(bucket, tiny_model_dir, django_assert_num_queries):
    """artifact_store runs before the transaction that records the artifact: no transaction or row
    lock is held while files are copied and uploaded."""
    from compression.services.artifacts import artifact_store

    with django_assert_num_queries(0):
        stored = artifact_store(tiny_model_dir)
    assert f"artifacts/{stored.digest}.manifest.json" in _keys(bucket)


def test_an_upload_the_storage_renames_is_a_storage_error_and_not_marked_complete(bucket, monkeypatch, tiny_model_dir):
    """A storage that keeps an upload under another name (e.g. one that never overwrites) must not be taken
    for a complete upload: the manifest, which marks completeness, is not written."""
    from storages.backends.s3 import S3Storage

    from compression.services.artifacts import artifact_store

    monkeypatch.setattr(S3Storage, "save", lambda self, name, content, max_length=None: f"{name}_renamed")
    with pytest.raises(EngineError) as failed:
        artifact_store(tiny_model_dir)
    assert failed.value.code == "storage_error" and "_renamed" in failed.value.message
    assert not any(key.endswith(".manifest.json") for key in _keys(bucket))


def test_a_changed_object_in_the_bucket_is_refused(bucket, settings, tmp_path, engineer, tiny_model_dir):
    artifact = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    bucket.put_object(Bucket=BUCKET, Key=f"artifacts/{artifact.digest}/config.json", Body=b'{"tampered": true}')

    _machine(settings, tmp_path, "machine-b")
    with pytest.raises(EngineError) as caught:
        artifact_path(artifact)
    assert caught.value.code == "corrupt_artifact" and artifact.digest in caught.value.message
    assert not (tmp_path / "machine-b" / artifact.digest).exists()
    assert artifact_fetch_receipt(artifact.digest) is None  # a refused copy leaves no receipt


def test_an_artifact_missing_everywhere_is_named(bucket, settings, tmp_path, engineer, tiny_model_dir):
    artifact = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    bucket.delete_object(Bucket=BUCKET, Key=f"artifacts/{artifact.digest}.manifest.json")

    _machine(settings, tmp_path, "machine-b")
    with pytest.raises(EngineError) as caught:
        artifact_path(artifact)
    assert caught.value.code == "model_not_found" and artifact.digest in caught.value.message


def test_a_worker_with_an_empty_store_compresses_and_publishes(
    bucket, settings, tmp_path, engineer, engineer_api, tiny_model_dir
):
    """The worker's store is empty: it fetches the base from the bucket, publishes its output, and
    a third machine loads that output from the bucket."""
    base = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    _machine(settings, tmp_path, "machine-b")  # the worker: nothing in its store yet
    response = engineer_api.post(
        f"/api/experiments/{experiment.pk}/runs/",
        {"method": "magnitude_prune", "parameters": {"sparsity": 0.5}, "seed": 1},
        format="json",
    )
    assert response.status_code == 202, response.json()
    run = CompressionRun.objects.get(pk=response.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    output = run.output_artifact.digest
    assert f"artifacts/{output}.manifest.json" in _keys(bucket)

    _machine(settings, tmp_path, "machine-c")
    assert manifest_digest(artifact_path(run.output_artifact)) == output
