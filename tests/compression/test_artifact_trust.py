"""Issue 10: the artifact store is verified before a job uses it, registration by server path is
limited to SAFESHRINK_IMPORT_ROOTS, and artifacts are scoped to who registered or uses them."""

import os
import shutil
import time
from pathlib import Path

import pytest

from accounts.errors import ValidationFailed
from compression.engine.errors import EngineError
from compression.engine.manifest import VerificationCache, manifest_digest, verify_manifest
from compression.models import CompressionRun, Experiment, ModelArtifact, RunStatus
from compression.services.artifacts import PATH_REFUSED, artifact_import, artifact_path, artifact_register
from compression.services.experiments import experiment_create
from ledger.models import LedgerEvent
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _zero_64_bytes(path: Path) -> None:
    """Zero 64 bytes in the middle of a file: same size, still loadable, different bytes."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    assert any(data[middle : middle + 64]), "the bytes to zero must not already be zero"
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


# --- 1. verification before use -------------------------------------------------------------------------


@pytest.fixture
def experiment(engineer, base_artifact):
    return experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )


def test_a_corrupted_base_fails_the_run_with_corrupt_artifact_and_stores_nothing(
    engineer_api, experiment, base_artifact, settings
):
    stored = settings.SAFESHRINK["ARTIFACT_ROOT"] / base_artifact.digest
    _zero_64_bytes(stored / "model.safetensors")
    artifacts_before = ModelArtifact.objects.count()
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8"}, format="json")
    assert r.status_code == 202, r.content
    run = CompressionRun.objects.get(pk=r.json()["id"])
    assert run.status == RunStatus.FAILED
    assert run.failure_code == "corrupt_artifact"
    assert base_artifact.digest in run.failure_reason and "no longer match" in run.failure_reason
    assert run.output_artifact is None and run.provenance is None
    assert ModelArtifact.objects.count() == artifacts_before
    assert not LedgerEvent.objects.filter(action="run.succeeded").exists()
    assert LedgerEvent.objects.filter(action="run.failed", object_id=str(run.pk)).exists()
    assert not [p for p in (settings.SAFESHRINK["ARTIFACT_ROOT"] / "tmp").iterdir()]  # scratch removed


def test_an_untouched_base_passes_and_the_provenance_names_the_verified_bytes(engineer_api, experiment, base_artifact):
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8"}, format="json")
    run = CompressionRun.objects.get(pk=r.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    deps = run.provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    base = next(d for d in deps if d["name"] == "base_model")
    assert base["digest"] == {"sha256": base_artifact.digest}
    annotations = base["annotations"]
    assert annotations["files"] == len(base_artifact.manifest)
    assert annotations["files_hashed"] + annotations["files_from_cache"] == 2 * len(base_artifact.manifest)


def test_an_evaluation_of_a_corrupted_artifact_fails_with_corrupt_artifact(
    engineer, base_artifact, demo_suite, settings
):
    from evaluations.models import EvaluationRun
    from evaluations.services.runs import evaluation_config, evaluation_run_request, evaluation_run_start

    _zero_64_bytes(settings.SAFESHRINK["ARTIFACT_ROOT"] / base_artifact.digest / "model.safetensors")
    run = evaluation_run_request(
        actor=engineer,
        artifact=base_artifact,
        suite_version=demo_suite,
        config=evaluation_config(unsafe_labels=["hatespeech", "offensive"]),
    )
    evaluation_run_start(run_id=run.pk)
    run = EvaluationRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.FAILED and run.failure_code == "corrupt_artifact", run.failure_reason


def test_a_symlink_or_an_extra_file_in_the_store_is_corrupt(base_artifact, settings):
    stored = settings.SAFESHRINK["ARTIFACT_ROOT"] / base_artifact.digest
    (stored / "extra.txt").write_text("added later")
    with pytest.raises(EngineError) as caught:
        artifact_path(base_artifact)
    assert caught.value.code == "corrupt_artifact"
    (stored / "extra.txt").unlink()
    assert artifact_path(base_artifact) == stored
    (stored / "link").symlink_to("/etc/hostname")
    with pytest.raises(EngineError) as caught:
        artifact_path(base_artifact)
    assert caught.value.code == "corrupt_artifact" and "link" in caught.value.message


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> tuple[Path, str]:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    return folder, manifest_digest(folder)


def _later() -> int:
    """A clock 10 s ahead: the files just written are no longer "racily clean" and may be cached."""
    return time.time_ns() + 10_000_000_000


def test_the_cache_skips_unchanged_files_and_is_invalidated_by_size_or_mtime(model_copy):
    folder, digest = model_copy
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    cache = VerificationCache()
    first = verify_manifest(folder, digest, cache=cache, now_ns=_later)
    assert (first.hashed, first.cached, first.digest) == (files, 0, digest)
    second = verify_manifest(folder, digest, cache=cache, now_ns=_later)
    assert (second.hashed, second.cached) == (0, files)

    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 5_000_000_000))  # mtime only
    touched = verify_manifest(folder, digest, cache=cache, now_ns=_later)
    assert (touched.hashed, touched.cached) == (1, files - 1)  # hashed again, same bytes: passes

    original = weights.stat()
    _zero_64_bytes(weights)  # same size, new mtime
    with pytest.raises(EngineError) as caught:
        verify_manifest(folder, digest, cache=cache, now_ns=_later)
    assert caught.value.code == "corrupt_artifact"

    os.utime(weights, ns=(original.st_atime_ns, original.st_mtime_ns))  # mtime put back: ctime still moved
    assert weights.stat().st_size == original.st_size
    with pytest.raises(EngineError):
        verify_manifest(folder, digest, cache=cache, now_ns=_later)

    config = folder / "config.json"
    config.write_text(config.read_text() + " ")  # size changes
    with pytest.raises(EngineError):
        verify_manifest(folder, digest, cache=cache, now_ns=_later)


def test_a_file_changed_just_after_hashing_is_not_trusted_from_the_cache(model_copy):
    """Timestamps tick coarsely: a file written within the racy window of its hash is hashed again."""
    folder, digest = model_copy
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in folder.rglob("*") if p.is_file())
    cache = VerificationCache()
    verify_manifest(folder, digest, cache=cache, now_ns=lambda: newest + 1)  # hashed in the tick of the last write
    assert len(cache) == 0
    again = verify_manifest(folder, digest, cache=cache, now_ns=lambda: newest + 1)
    assert again.cached == 0 and again.hashed == again.files
    verify_manifest(folder, digest, cache=cache, now_ns=_later)  # once the files have aged, they are cached
    assert len(cache) == again.files


# --- 2. registration by server path ---------------------------------------------------------------------


@pytest.fixture
def import_root(settings, tmp_path) -> Path:
    root = tmp_path / "imports"
    root.mkdir()
    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_ROOTS": [root]}
    return root


def _post(api, path: str):
    return api.post("/api/artifacts/", {"name": "m", "path": path}, format="json")


def _store_entries(settings) -> set[str]:
    root = settings.SAFESHRINK["ARTIFACT_ROOT"]
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_without_import_roots_the_api_refuses_every_server_path(engineer_api, tiny_model_dir, settings):
    assert not settings.SAFESHRINK["IMPORT_ROOTS"]  # the default
    r = _post(engineer_api, str(tiny_model_dir))
    assert r.status_code == 400 and r.json()["message"] == PATH_REFUSED
    assert ModelArtifact.objects.count() == 0


def test_a_folder_inside_a_root_is_imported(engineer_api, import_root, tiny_model_dir):
    shutil.copytree(tiny_model_dir, import_root / "model")
    r = _post(engineer_api, str(import_root / "model"))
    assert r.status_code == 201, r.content
    assert r.json()["digest"] == manifest_digest(tiny_model_dir)


@pytest.mark.parametrize("link", ["file", "dir", "dangling", "hard"])
def test_a_symlink_in_the_folder_is_refused_and_nothing_is_copied(
    engineer_api, import_root, tiny_model_dir, settings, tmp_path, link
):
    model = import_root / "model"
    shutil.copytree(tiny_model_dir, model)
    if link == "file":
        (model / "passwd").symlink_to("/etc/passwd")
    elif link == "dir":
        (model / "sub").mkdir()
        (model / "sub" / "etc").symlink_to("/etc", target_is_directory=True)
    elif link == "dangling":
        (model / "gone").symlink_to(tmp_path / "nowhere")
    else:  # a hard link to a file outside the root (same file system)
        secret = tmp_path / "secret.txt"
        secret.write_text("not for the store")
        os.link(secret, model / "secret.txt")
    before = _store_entries(settings)
    r = _post(engineer_api, str(model))
    assert r.status_code == 400, r.content
    assert r.json()["code"] == "model_not_found" and r.json()["message"] == PATH_REFUSED
    assert ModelArtifact.objects.count() == 0
    assert _store_entries(settings) - {"tmp"} == before - {"tmp"}
    tmp = settings.SAFESHRINK["ARTIFACT_ROOT"] / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())
    stored = [p.read_bytes() for p in settings.SAFESHRINK["ARTIFACT_ROOT"].rglob("*") if p.is_file()]
    assert Path("/etc/passwd").read_bytes() not in stored and b"not for the store" not in stored


def test_a_folder_without_config_is_refused_before_copying(engineer_api, import_root, settings):
    (import_root / "data").mkdir()
    (import_root / "data" / "big.bin").write_bytes(b"x" * 1024)
    r = _post(engineer_api, str(import_root / "data"))
    assert r.status_code == 400 and "config.json" in r.json()["message"]
    assert str(settings.SAFESHRINK["ARTIFACT_ROOT"]) not in r.content.decode()  # no store path leaks
    tmp = settings.SAFESHRINK["ARTIFACT_ROOT"] / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_refusals_are_one_answer_whatever_the_reason(engineer, engineer_api, import_root, tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, import_root / "model")
    (import_root / "model.txt").write_text("a file, not a folder")
    (import_root / "alias").symlink_to(import_root / "model", target_is_directory=True)
    outside = tmp_path / "outside"
    shutil.copytree(tiny_model_dir, outside)
    cases = {
        "absent inside the root": str(import_root / "absent"),
        "absent outside": "/nonexistent/model",
        "existing folder outside the roots": str(outside),
        "system folder": "/etc",
        "a file inside the root": str(import_root / "model.txt"),
        "dot-dot out of the root": f"{import_root}/../outside",
        "dot-dot that lands back inside": f"{import_root}/model/../model",
        "a symlink to a folder inside the root": str(import_root / "alias"),
        "relative": "imports/model",
    }
    bodies = {}
    for reason, path in cases.items():
        r = _post(engineer_api, path)
        assert r.status_code == 400, (reason, r.content)
        bodies[reason] = r.json()
    assert len({repr(body) for body in bodies.values()}) == 1, bodies
    assert next(iter(bodies.values())) == {
        "code": "model_not_found",
        "message": PATH_REFUSED,
        "details": {"path": [PATH_REFUSED]},
    }
    assert ModelArtifact.objects.count() == 0
    with pytest.raises(ValidationFailed) as caught:  # the API refuses a NUL byte in any body before this
        artifact_import(actor=engineer, name="m", path=f"{import_root}/model\x00")
    assert caught.value.message == PATH_REFUSED


def test_operators_still_register_any_folder_through_the_service(engineer, tiny_model_dir, settings):
    """load_demo / build_teacher register through artifact_register: an operator action, not limited."""
    assert not settings.SAFESHRINK["IMPORT_ROOTS"]
    artifact = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    assert artifact.digest == manifest_digest(tiny_model_dir)


# --- 3. scope -------------------------------------------------------------------------------------------


def test_another_engineer_cannot_see_or_use_an_artifact(base_artifact, engineer_api, make_user, officer_api):
    other = api_client_for(make_user("oscar", "engineer"))
    assert engineer_api.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 200
    assert officer_api.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 200
    assert other.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 404
    assert other.get("/api/artifacts/").json()["results"] == []
    assert [a["id"] for a in officer_api.get("/api/artifacts/").json()["results"]] == [base_artifact.pk]
    r = other.post(
        "/api/experiments/",
        {"name": "x", "base_artifact": base_artifact.pk, "unsafe_labels": ["hatespeech"]},
        format="json",
    )
    assert r.status_code == 400 and "base_artifact" in r.json()["details"]
    assert Experiment.objects.count() == 0
    regulator = api_client_for(make_user("rita", "regulator"))
    assert regulator.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 403


def test_an_engineer_sees_what_their_experiments_reach(engineer, engineer_api, base_artifact, make_user):
    oscar = make_user("oscar", "engineer")
    experiment = experiment_create(
        actor=engineer, name="e", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech"]
    )
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8"}, format="json")
    candidate = CompressionRun.objects.get(pk=r.json()["id"]).output_artifact
    # oscar's experiment on eve's base (made by an admin or an older version): its base and candidates are his
    theirs = Experiment.objects.create(name="o", owner=oscar, base_artifact=base_artifact, unsafe_labels=["hatespeech"])
    CompressionRun.objects.create(
        experiment=theirs,
        method="dynamic_int8",
        requested_by=oscar,
        status=RunStatus.SUCCEEDED,
        output_artifact=candidate,
    )
    other = api_client_for(oscar)
    assert {a["id"] for a in other.get("/api/artifacts/").json()["results"]} == {base_artifact.pk, candidate.pk}
    assert other.get(f"/api/artifacts/{candidate.pk}/").status_code == 200


def test_registering_the_same_bytes_again_makes_the_artifact_visible(
    base_artifact, import_root, tiny_model_dir, make_user
):
    oscar = make_user("oscar", "engineer")
    other = api_client_for(oscar)
    assert other.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 404
    shutil.copytree(tiny_model_dir, import_root / "same")
    r = _post(other, str(import_root / "same"))
    assert r.status_code == 201 and r.json()["id"] == base_artifact.pk
    assert other.get(f"/api/artifacts/{base_artifact.pk}/").status_code == 200
    event = LedgerEvent.objects.filter(action="artifact.registered", actor_id=oscar.pk).get()
    assert event.object_id == str(base_artifact.pk)


def test_a_parent_must_be_visible(base_artifact, import_root, tiny_model_dir, make_user):
    other = api_client_for(make_user("oscar", "engineer"))
    shutil.copytree(tiny_model_dir, import_root / "m")
    r = other.post(
        "/api/artifacts/", {"name": "m", "path": str(import_root / "m"), "parent": base_artifact.pk}, format="json"
    )
    assert r.status_code == 400 and "parent" in r.json()["details"]
