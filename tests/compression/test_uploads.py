"""Issue 13 §1: resumable, chunked uploads of a model folder (POST /api/uploads/ ...), and their bad input:
each refusal is a 4xx in the error model naming the field, and nothing is stored."""

import datetime as dt
import fcntl
import hashlib
import io
import json
import os
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from compression.engine.manifest import manifest_digest
from compression.models import ArtifactUpload, ModelArtifact, UploadFile, UploadStatus
from compression.services import upload_digests, uploads
from ledger.models import LedgerEvent
from tests.compression.test_shared_storage import bucket  # noqa: F401 (a fixture)
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def folder(tmp_path) -> Path:
    """A small Hugging Face-like model folder: nested file, empty file, a 'weights' file of many chunks."""
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": {"0": "safe", "1": "unsafe"}}))
    (root / "model.safetensors").write_bytes(os.urandom(300_000))
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (root / "added_tokens.json").write_bytes(b"")
    return root


def _declare(folder: Path, **changes) -> list[dict]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        files.append({"path": rel, "size": len(data), "sha256": _sha(data), **changes.get(rel, {})})
    return files


def _create(api, folder: Path, name: str = "uploaded", **changes):
    return api.post("/api/uploads/", {"name": name, "files": _declare(folder, **changes)}, format="json")


def _put(api, upload_id: int, path: str, offset: int, data: bytes, sha256: str | None = None, **extra):
    query = urlencode({"path": path, "offset": offset, "sha256": sha256 or _sha(data)})
    content_type = extra.pop("content_type", "application/octet-stream")
    return api.put(f"/api/uploads/{upload_id}/chunks/?{query}", data=data, content_type=content_type, **extra)


def _send(api, upload: dict, folder: Path, chunk: int = 64_000, only: str | None = None, start: dict | None = None):
    for entry in upload["files"]:
        if only and entry["path"] != only:
            continue
        data = (folder / entry["path"]).read_bytes()
        for offset in range((start or {}).get(entry["path"], 0), len(data), chunk):
            response = _put(api, upload["id"], entry["path"], offset, data[offset : offset + chunk])
            assert response.status_code == 200, response.json()


def _error(response, status: int, code: str, field: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:400])
    body = response.json()
    assert set(body) == {"code", "message", "details"} and body["message"]
    assert body["code"] == code, body
    assert field in body["details"], body
    return body


def _stored_nothing():
    assert not ModelArtifact.objects.exists()
    assert not LedgerEvent.objects.filter(action="artifact.registered").exists()


# --- The path that works -----------------------------------------------------------------------------------


def test_a_folder_uploaded_in_chunks_and_resumed_becomes_a_normal_artifact(engineer_api, folder, settings):
    created = _create(engineer_api, folder)
    assert created.status_code == 201, created.json()
    upload = created.json()
    assert created["Location"].endswith(f"/api/uploads/{upload['id']}/")
    assert upload["status"] == "open" and upload["received_bytes"] == 0
    assert upload["manifest_digest"] == manifest_digest(folder)  # the artifact's digest to be
    assert upload["chunk_bytes"] == settings.SAFESHRINK["MODEL_UPLOAD_CHUNK_BYTES"]
    assert [f["path"] for f in upload["files"]] == sorted(f["path"] for f in upload["files"])

    weights = (folder / "model.safetensors").read_bytes()
    assert _put(engineer_api, upload["id"], "model.safetensors", 0, weights[:100_000]).json()["received"] == 100_000
    # "The connection dropped": the client asks what arrived and resumes from there.
    status = engineer_api.get(f"/api/uploads/{upload['id']}/").json()
    received = {f["path"]: f["received"] for f in status["files"]}
    assert received == {
        "added_tokens.json": 0,
        "config.json": 0,
        "model.safetensors": 100_000,
        "tokenizer/vocab.txt": 0,
    }
    _send(engineer_api, upload, folder, start=received)
    assert engineer_api.get(f"/api/uploads/{upload['id']}/").json()["received_bytes"] == upload["total_bytes"]

    finished = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    assert finished.status_code == 200, finished.json()
    body = finished.json()
    assert body["status"] == "completed" and body["expires_at"] is None
    artifact = ModelArtifact.objects.get(pk=body["artifact"]["id"])
    assert artifact.digest == manifest_digest(folder) == upload["manifest_digest"]
    assert artifact.name == "uploaded" and artifact.format == "hf-dir" and artifact.labels == ["safe", "unsafe"]
    stored = Path(settings.SAFESHRINK["ARTIFACT_ROOT"]) / artifact.digest
    assert (stored / "model.safetensors").read_bytes() == weights
    assert (stored / "added_tokens.json").read_bytes() == b""  # an empty file needs no chunk
    assert manifest_digest(stored) == artifact.digest
    event = LedgerEvent.objects.get(action="artifact.registered")
    assert json.loads(event.payload_json)["digest"] == artifact.digest
    assert not uploads.upload_dir(ArtifactUpload.objects.get()).exists()
    assert engineer_api.get(f"/api/artifacts/{artifact.pk}/").status_code == 200
    again = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    _error(again, 409, "upload_closed", "status")


def test_sha256_may_be_given_at_finish_instead(engineer_api, folder):
    declared = _declare(folder)
    bare = [{"path": f["path"], "size": f["size"]} for f in declared]
    upload = engineer_api.post("/api/uploads/", {"name": "late", "files": bare}, format="json").json()
    assert upload["manifest_digest"] == ""
    _send(engineer_api, upload, folder)
    _error(
        engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json"), 400, "manifest_mismatch", "files"
    )
    finished = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {"files": declared}, format="json")
    assert finished.status_code == 200, finished.json()
    assert finished.json()["artifact"]["digest"] == manifest_digest(folder)


def test_an_open_upload_is_found_by_its_manifest_digest(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    found = engineer_api.get(f"/api/uploads/?status=open&manifest_digest={upload['manifest_digest']}").json()
    assert [row["id"] for row in found["results"]] == [upload["id"]]
    assert "files" not in found["results"][0]  # list rows are summaries
    assert engineer_api.get("/api/uploads/?manifest_digest=" + "0" * 64).json()["results"] == []
    _error(engineer_api.get("/api/uploads/?status=bogus"), 400, "invalid", "status")


def test_the_body_is_read_in_pieces_never_whole(engineer, folder):
    upload = uploads.upload_create(actor=engineer, name="x", files=_declare(folder))
    data = (folder / "model.safetensors").read_bytes()
    uploads_piece = uploads.PIECE
    sizes = []

    class Body(io.BytesIO):
        def read(self, size=-1):
            sizes.append(size)
            return super().read(size)

    row = uploads.upload_chunk_receive(
        actor=engineer, upload_id=upload.pk, path="model.safetensors", offset=0, sha256=_sha(data),
        length=len(data), body=Body(data),
    )  # fmt: skip
    assert row.received == len(data)
    assert sizes and max(sizes) <= uploads_piece and min(sizes) > 0


def test_a_finished_upload_is_published_to_the_shared_storage(request, engineer, folder):
    from tests.compression.test_shared_storage import BUCKET

    s3 = request.getfixturevalue("bucket")  # moto's S3 as the shared artifact storage
    upload = uploads.upload_create(actor=engineer, name="shared", files=_declare(folder))
    for row in upload.files.all():
        data = (folder / row.path).read_bytes()
        if data:
            uploads.upload_chunk_receive(
                actor=engineer, upload_id=upload.pk, path=row.path, offset=0, sha256=_sha(data),
                length=len(data), body=io.BytesIO(data),
            )  # fmt: skip
    artifact = uploads.upload_finish(actor=engineer, upload_id=upload.pk).artifact
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"artifacts/{artifact.digest}.manifest.json"} | {
        f"artifacts/{artifact.digest}/{entry['path']}" for entry in artifact.manifest
    }
    published = s3.get_object(Bucket=BUCKET, Key=f"artifacts/{artifact.digest}.manifest.json")["Body"].read()
    assert json.loads(published) == artifact.manifest


# --- Bad input: a 4xx naming the field, nothing stored ------------------------------------------------------


def test_a_chunk_at_the_wrong_offset_is_409_and_changes_nothing(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    data = (folder / "model.safetensors").read_bytes()
    ahead = _put(engineer_api, upload["id"], "model.safetensors", 1000, data[1000:2000])
    assert "offset 0" in _error(ahead, 409, "chunk_offset", "offset")["details"]["offset"][0]
    assert _put(engineer_api, upload["id"], "model.safetensors", 0, data[:5000]).status_code == 200
    behind = _put(engineer_api, upload["id"], "model.safetensors", 0, data[:5000])  # sent twice
    _error(behind, 409, "chunk_offset", "offset")
    skipped = _put(engineer_api, upload["id"], "model.safetensors", 9000, data[9000:10000])  # out of order
    _error(skipped, 409, "chunk_offset", "offset")
    assert UploadFile.objects.get(path="model.safetensors").received == 5000
    on_disk = uploads.upload_dir(ArtifactUpload.objects.get()) / "model.safetensors"
    assert on_disk.read_bytes() == data[:5000]


def test_a_chunk_whose_bytes_do_not_match_its_sha256_is_400_and_not_kept(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    data = (folder / "model.safetensors").read_bytes()
    _put(engineer_api, upload["id"], "model.safetensors", 0, data[:1000])
    wrong = _put(engineer_api, upload["id"], "model.safetensors", 1000, data[1000:2000], sha256=_sha(b"other"))
    _error(wrong, 400, "chunk_digest_mismatch", "sha256")
    assert UploadFile.objects.get(path="model.safetensors").received == 1000
    on_disk = uploads.upload_dir(ArtifactUpload.objects.get()) / "model.safetensors"
    assert on_disk.read_bytes() == data[:1000]


def test_a_manifest_that_does_not_match_the_bytes_is_400_and_stores_nothing(engineer_api, folder):
    lie = {"tokenizer/vocab.txt": {"sha256": _sha(b"something else")}}
    upload = _create(engineer_api, folder, **lie).json()
    _send(engineer_api, upload, folder)  # every chunk is what its own sha256 says
    refused = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    index = [f["path"] for f in upload["files"]].index("tokenizer/vocab.txt")
    _error(refused, 400, "manifest_mismatch", f"files[{index}].sha256")
    _stored_nothing()
    status = engineer_api.get(f"/api/uploads/{upload['id']}/").json()
    assert status["status"] == "open"  # the rest stays; that file's bytes were dropped, to be sent again
    assert {f["path"]: f["received"] for f in status["files"]}["tokenizer/vocab.txt"] == 0
    assert {f["path"]: f["received"] for f in status["files"]}["model.safetensors"] == 300_000


@pytest.mark.parametrize(
    "field, entry, expected",
    [
        ("files[0].size", {"size": 1}, "Declared as"),
        ("files[0].sha256", {"sha256": "0" * 64}, "Declared as"),
        ("files[0].path", {"path": "extra.json"}, "not declared"),
    ],
)
def test_a_finish_manifest_that_differs_from_the_declared_files_is_400(engineer_api, folder, field, entry, expected):
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder)
    manifest = _declare(folder)
    manifest[0] = {**manifest[0], **entry}
    refused = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {"files": manifest}, format="json")
    assert expected in _error(refused, 400, "manifest_mismatch", field)["details"][field][0]
    left_out = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {"files": _declare(folder)[1:]}, format="json")
    _error(left_out, 400, "manifest_mismatch", "files")
    _stored_nothing()


def test_an_upload_over_the_limits_is_refused(engineer_api, folder, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_UPLOAD_MAX_BYTES": 1000, "MODEL_UPLOAD_CHUNK_BYTES": 500}
    _error(_create(engineer_api, folder), 400, "upload_too_large", "files")
    assert not ArtifactUpload.objects.exists()
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_UPLOAD_MAX_BYTES": 10**6}
    upload = _create(engineer_api, folder).json()
    data = (folder / "model.safetensors").read_bytes()
    _error(_put(engineer_api, upload["id"], "model.safetensors", 0, data[:501]), 413, "upload_too_large", "body")
    past_end = _put(engineer_api, upload["id"], "config.json", 0, data[:400])
    _error(past_end, 400, "invalid", "offset")
    assert not uploads.upload_dir(ArtifactUpload.objects.get()).exists()
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_UPLOAD_MAX_FILES": 2}
    _error(_create(engineer_api, folder), 400, "upload_too_large", "files")


@pytest.mark.parametrize(
    "path",
    [
        "../escape.json",
        "tokenizer/../../escape.json",
        "/etc/passwd.json",
        "C:/Windows/x.json",
        "tokenizer\\..\\x.json",
        "a//b.json",
        "./x.json",
        "tokenizer/",
        "x\x01.json",
    ],
)
def test_an_unsafe_path_in_the_manifest_is_400_and_stores_nothing(engineer_api, folder, path):
    files = _declare(folder) + [{"path": path, "size": 1, "sha256": _sha(b"x")}]
    refused = engineer_api.post("/api/uploads/", {"name": "x", "files": files}, format="json")
    body = _error(refused, 400, "upload_path_refused", f"files[{len(files) - 1}].path")
    assert repr(path) in body["message"]
    assert not ArtifactUpload.objects.exists() and not uploads.uploads_root().exists()


@pytest.mark.parametrize("link", [{"type": "symlink", "target": "/etc/passwd"}, {"target": "../other"}])
def test_a_link_in_the_manifest_is_refused(engineer_api, folder, link):
    files = _declare(folder) + [{"path": "weights.bin", "size": 10, **link}]
    refused = engineer_api.post("/api/uploads/", {"name": "x", "files": files}, format="json")
    _error(refused, 400, "upload_path_refused", f"files[{len(files) - 1}].type")
    assert not ArtifactUpload.objects.exists()


@pytest.mark.parametrize(
    "extra, code, field",
    [
        ({"path": "run.py", "size": 3}, "upload_format_refused", "files[4].path"),
        ({"path": "CONFIG.JSON", "size": 3}, "upload_path_refused", "files[4].path"),  # a clash on many disks
        ({"path": "config.json/x.json", "size": 3}, "upload_path_refused", "files[4].path"),
    ],
)
def test_disallowed_or_clashing_names_are_refused(engineer_api, folder, extra, code, field):
    files = _declare(folder) + [extra]
    _error(engineer_api.post("/api/uploads/", {"name": "x", "files": files}, format="json"), 400, code, field)


def test_a_folder_without_config_json_is_refused(engineer_api):
    files = [{"path": "model.safetensors", "size": 10}]
    _error(engineer_api.post("/api/uploads/", {"name": "x", "files": files}, format="json"), 400, "invalid", "files")


def test_a_format_the_settings_do_not_allow_is_refused_at_finish_and_removed(engineer_api, folder, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_UPLOAD_FORMATS": ["hf-dir"]}
    (folder / "recipe.json").write_text(json.dumps({"format": "torch-quantized"}))
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder)
    refused = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    _error(refused, 400, "upload_format_refused", "format")
    row = ArtifactUpload.objects.get()
    assert row.status == UploadStatus.REFUSED and row.failure_code == "upload_format_refused"
    assert not uploads.upload_dir(row).exists()
    _stored_nothing()


def test_finishing_an_incomplete_upload_is_409(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder, only="config.json")
    refused = engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")
    body = _error(refused, 409, "upload_incomplete", "files")
    assert any("model.safetensors" in line and "0 of 300,000" in line for line in body["details"]["files"])
    assert ArtifactUpload.objects.get().status == UploadStatus.OPEN
    _stored_nothing()


def test_another_engineers_upload_is_404_and_other_roles_403(engineer_api, folder, make_user, officer_api):
    upload = _create(engineer_api, folder).json()
    other = api_client_for(make_user("mallory", "engineer"))
    base = f"/api/uploads/{upload['id']}/"
    assert other.get(base).status_code == 404
    assert other.get("/api/uploads/").json()["results"] == []
    _error(_put(other, upload["id"], "config.json", 0, b"{}"), 404, "not_found", "id")
    _error(other.post(base + "finish/", {}, format="json"), 404, "not_found", "id")
    _error(other.post(base + "abort/"), 404, "not_found", "id")
    assert officer_api.get("/api/uploads/").status_code == 403
    assert ArtifactUpload.objects.get().status == UploadStatus.OPEN
    assert not uploads.upload_dir(ArtifactUpload.objects.get()).exists()


def test_chunk_requests_name_what_is_wrong(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    url = f"/api/uploads/{upload['id']}/chunks/"
    _error(_put(engineer_api, upload["id"], "nope.json", 0, b"{}"), 404, "not_found", "path")
    bad_offset = engineer_api.put(
        url + "?path=config.json&offset=-1&sha256=" + "0" * 64, b"x", content_type="application/octet-stream"
    )
    _error(bad_offset, 400, "invalid", "offset")
    bad_sha = engineer_api.put(
        url + "?path=config.json&offset=0&sha256=xyz", b"x", content_type="application/octet-stream"
    )
    _error(bad_sha, 400, "invalid", "sha256")
    _error(
        _put(engineer_api, upload["id"], "config.json", 0, b"{}", content_type="text/plain"),
        415,
        "unsupported_media_type",
        "Content-Type",
    )
    _error(_put(engineer_api, upload["id"], "config.json", 0, b""), 400, "invalid", "body")


def test_a_chunk_in_flight_for_the_same_file_is_409_busy(engineer, engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    target = uploads.upload_dir(ArtifactUpload.objects.get()) / "config.json"
    target.parent.mkdir(parents=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = (folder / "config.json").read_bytes()
        _error(_put(engineer_api, upload["id"], "config.json", 0, data), 409, "upload_busy", "path")
    finally:
        os.close(fd)
    assert _put(engineer_api, upload["id"], "config.json", 0, data).status_code == 200


def test_a_chunk_that_arrives_as_the_upload_is_aborted_is_not_kept(engineer, folder):
    upload = uploads.upload_create(actor=engineer, name="x", files=_declare(folder))
    data = (folder / "model.safetensors").read_bytes()[:1000]

    class AbortingBody(io.BytesIO):
        def read(self, size=-1):
            ArtifactUpload.objects.filter(pk=upload.pk).update(status=UploadStatus.ABORTED)
            return super().read(size)

    with pytest.raises(uploads.Conflict) as refused:
        uploads.upload_chunk_receive(
            actor=engineer, upload_id=upload.pk, path="model.safetensors", offset=0, sha256=_sha(data),
            length=len(data), body=AbortingBody(data),
        )  # fmt: skip
    assert refused.value.code == "upload_closed"
    assert UploadFile.objects.get(path="model.safetensors").received == 0
    assert (uploads.upload_dir(upload) / "model.safetensors").stat().st_size == 0


def test_a_chunk_that_lost_a_race_leaves_the_winners_bytes_alone(engineer, folder, monkeypatch):
    upload = uploads.upload_create(actor=engineer, name="x", files=_declare(folder))
    data = (folder / "model.safetensors").read_bytes()[:1000]
    locked = uploads._open_locked

    def another_request_commits_first(path, *, wait):
        path.write_bytes(data)  # the same chunk, sent twice at once: the other request got there first
        UploadFile.objects.filter(upload=upload, path="model.safetensors").update(received=len(data))
        return locked(path, wait=wait)

    monkeypatch.setattr(uploads, "_open_locked", another_request_commits_first)
    with pytest.raises(uploads.Conflict) as refused:
        uploads.upload_chunk_receive(
            actor=engineer, upload_id=upload.pk, path="model.safetensors", offset=0, sha256=_sha(data),
            length=len(data), body=io.BytesIO(data),
        )  # fmt: skip
    assert refused.value.code == "chunk_offset"
    assert (uploads.upload_dir(upload) / "model.safetensors").read_bytes() == data


# --- Abort and the sweep ------------------------------------------------------------------------------------


def test_abort_removes_the_bytes_and_closes_the_upload(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder, only="config.json")
    folder_on_server = uploads.upload_dir(ArtifactUpload.objects.get())
    assert folder_on_server.is_dir()
    aborted = engineer_api.post(f"/api/uploads/{upload['id']}/abort/")
    assert aborted.status_code == 200 and aborted.json()["status"] == "aborted"
    assert not folder_on_server.exists()
    assert engineer_api.post(f"/api/uploads/{upload['id']}/abort/").json()["status"] == "aborted"
    _error(_put(engineer_api, upload["id"], "config.json", 0, b"{}"), 409, "upload_closed", "status")
    _error(engineer_api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json"), 409, "upload_closed", "status")
    _stored_nothing()


def test_the_sweep_expires_abandoned_uploads_and_removes_leftover_folders(engineer, folder, settings):
    from compression.tasks import expire_uploads

    assert any(e["task"] == expire_uploads.name for e in settings.CELERY_BEAT_SCHEDULE.values())
    stale = uploads.upload_create(actor=engineer, name="stale", files=_declare(folder))
    fresh = uploads.upload_create(actor=engineer, name="fresh", files=_declare(folder))
    for upload in (stale, fresh):
        data = (folder / "config.json").read_bytes()
        uploads.upload_chunk_receive(
            actor=engineer, upload_id=upload.pk, path="config.json", offset=0, sha256=_sha(data),
            length=len(data), body=io.BytesIO(data),
        )  # fmt: skip
    hours = settings.SAFESHRINK["MODEL_UPLOAD_EXPIRY_SECONDS"] / 3600 + 1
    ArtifactUpload.objects.filter(pk=stale.pk).update(active_at=timezone.now() - dt.timedelta(hours=hours))
    leftover = uploads.uploads_root() / ("f" * 32)
    (leftover / "sub").mkdir(parents=True)
    assert expire_uploads() == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == UploadStatus.EXPIRED and stale.failure_code == "upload_expired"
    assert not uploads.upload_dir(stale).exists() and not leftover.exists()
    assert uploads.upload_dir(fresh).is_dir()
    assert ArtifactUpload.objects.get(pk=fresh.pk).status == UploadStatus.OPEN
    assert expire_uploads() == []


def test_open_uploads_per_engineer_are_limited(engineer_api, folder, settings):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "MODEL_UPLOAD_MAX_OPEN": 1}
    first = _create(engineer_api, folder).json()
    _error(_create(engineer_api, folder), 409, "too_many_uploads", "files")
    engineer_api.post(f"/api/uploads/{first['id']}/abort/")
    assert _create(engineer_api, folder).status_code == 201


# --- The whole-file sha256, kept as chunks arrive ------------------------------------------------------------


def _finish(api, upload: dict):
    return api.post(f"/api/uploads/{upload['id']}/finish/", {}, format="json")


def _no_file_read(monkeypatch):
    def refuse(path):
        raise AssertionError(f"{path} was read again at finish")

    monkeypatch.setattr(upload_digests, "file_sha256", refuse)


def test_finishing_reads_no_file_when_the_chunks_kept_its_sha256(engineer_api, folder, monkeypatch):
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder, chunk=70_001)
    rows = list(UploadFile.objects.filter(size__gt=0))
    assert rows and all(bytes(row.sha256_state) for row in rows)
    expected = {path: _sha((folder / path).read_bytes()) for path in (row.path for row in rows)}
    folder_received = uploads.upload_dir(ArtifactUpload.objects.get())
    kept = upload_digests.whole_file_digests(folder_received, rows)
    for row in rows:  # the fallback: no saved state, the file is read
        row.sha256_state = b""
    assert kept == upload_digests.whole_file_digests(folder_received, rows) == expected
    _no_file_read(monkeypatch)
    finished = _finish(engineer_api, upload)
    assert finished.status_code == 200, finished.json()
    assert ModelArtifact.objects.get().digest == manifest_digest(folder)


def test_without_a_saved_state_finishing_hashes_the_files_and_stores_the_same_artifact(
    engineer_api, folder, monkeypatch
):
    weights = (folder / "model.safetensors").read_bytes()
    upload = _create(engineer_api, folder).json()
    _put(engineer_api, upload["id"], "model.safetensors", 0, weights[:100_000])
    # A row whose state was lost (or written before it was kept): the next chunks cannot continue it.
    UploadFile.objects.filter(path="model.safetensors").update(sha256_state=b"\x00" * 10)
    _send(engineer_api, upload, folder, start={"model.safetensors": 100_000})
    assert bytes(UploadFile.objects.get(path="model.safetensors").sha256_state) == b""
    monkeypatch.setattr(uploads, "running_sha256", lambda row, offset: None)  # as without libcrypto
    UploadFile.objects.filter(path="config.json").update(received=0, sha256_state=b"")
    _send(engineer_api, upload, folder, only="config.json")
    assert bytes(UploadFile.objects.get(path="config.json").sha256_state) == b""
    read = []
    original = upload_digests.file_sha256
    monkeypatch.setattr(upload_digests, "file_sha256", lambda path: read.append(Path(path).name) or original(path))
    finished = _finish(engineer_api, upload)
    assert finished.status_code == 200, finished.json()
    assert sorted(read) == ["config.json", "model.safetensors"]  # the others kept their sha256
    assert ModelArtifact.objects.get().digest == manifest_digest(folder)


def test_a_chunk_with_a_wrong_sha256_leaves_the_saved_state_and_the_upload_resumes(engineer_api, folder, monkeypatch):
    weights = (folder / "model.safetensors").read_bytes()
    upload = _create(engineer_api, folder).json()
    _put(engineer_api, upload["id"], "model.safetensors", 0, weights[:1000])
    before = bytes(UploadFile.objects.get(path="model.safetensors").sha256_state)
    wrong = _put(engineer_api, upload["id"], "model.safetensors", 1000, weights[1000:5000], sha256=_sha(b"no"))
    _error(wrong, 400, "chunk_digest_mismatch", "sha256")
    row = UploadFile.objects.get(path="model.safetensors")
    assert (row.received, bytes(row.sha256_state)) == (1000, before)
    _send(engineer_api, upload, folder, start={"model.safetensors": 1000})
    _no_file_read(monkeypatch)
    assert _finish(engineer_api, upload).status_code == 200
    assert ModelArtifact.objects.get().digest == manifest_digest(folder)


def test_a_file_changed_on_disk_after_its_chunks_is_caught_before_it_is_stored(engineer_api, folder):
    upload = _create(engineer_api, folder).json()
    _send(engineer_api, upload, folder)
    on_disk = uploads.upload_dir(ArtifactUpload.objects.get()) / "model.safetensors"
    data = bytearray(on_disk.read_bytes())
    data[123] ^= 0xFF  # same size, one byte changed behind the server's back
    on_disk.write_bytes(bytes(data))
    refused = _finish(engineer_api, upload)
    _error(refused, 400, "corrupt_artifact", "files")
    _stored_nothing()
    assert ArtifactUpload.objects.get().status == UploadStatus.REFUSED
    assert not uploads.upload_dir(ArtifactUpload.objects.get()).exists()
