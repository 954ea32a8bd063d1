"""Issue 13 §1: the Python client and the `safeshrink` command line upload a model folder to a live server,
resume after a dropped connection (sending only what the server lacks), and refuse links."""

import hashlib
import http.client
import json
import os
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from compression.engine.manifest import manifest_digest
from compression.models import ArtifactUpload, ModelArtifact, UploadStatus
from safeshrink_client import ApiError, Client
from safeshrink_client import uploads as client_uploads
from safeshrink_client.cli import main
from safeshrink_client.uploads import UploadRefused, hash_files, missing_chunks, read_ahead, scan_folder
from safeshrink_client.uploads import manifest_digest as client_manifest_digest

pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = 64 * 1024


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "my model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": {"0": "a", "1": "b"}}))
    (root / "model.safetensors").write_bytes(os.urandom(10 * CHUNK + 123))
    (root / "tokenizer" / "vocab.txt").write_text("ünïcode\n")
    (root / "empty.json").write_bytes(b"")
    return root


@pytest.fixture
def token(engineer) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=engineer)[0].key


class CountingClient(Client):
    """Counts the chunk bytes it sends; fails the request after `fail_after` chunks (once) as a dropped
    connection would."""

    def __init__(self, *args, fail_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent, self.chunks, self.fail_after = 0, 0, fail_after

    def _open(self, request):
        if request.get_method() == "PUT":
            if self.fail_after is not None and self.chunks == self.fail_after:
                self.fail_after = None
                raise ConnectionResetError("connection dropped (test)")
            self.chunks += 1
            self.sent += len(request.data)
        return super()._open(request)


def test_the_client_manifest_digest_is_the_servers(folder):
    files = scan_folder(folder)
    from safeshrink_client.uploads import hash_files

    hash_files(files)
    assert client_manifest_digest(files) == manifest_digest(folder)


def test_one_pass_over_each_file_gives_its_sha256_and_its_chunks_so_sending_hashes_nothing(folder, monkeypatch):
    files = scan_folder(folder)
    hash_files(files, chunk_bytes=3 * CHUNK)
    for local in files:
        data = Path(local.full).read_bytes()
        assert local.sha256 == hashlib.sha256(data).hexdigest()
        expected = {
            (offset, len(data[offset : offset + 3 * CHUNK])): hashlib.sha256(
                data[offset : offset + 3 * CHUNK]
            ).hexdigest()
            for offset in range(0, len(data), 3 * CHUNK)
        }
        assert local.chunk_sha256 == expected
    plan = list(missing_chunks(files, {}, 3 * CHUNK))
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(client_uploads.hashlib, "sha256", lambda data=b"": hashed.append(len(data)) or real(data))
    sent = list(read_ahead(plan))
    assert not hashed  # every chunk's sha256 came from hash_files
    assert all(chunk.sha256 == real(chunk.data).hexdigest() for chunk in sent)
    # The server takes smaller chunks than were hashed: those are hashed as they are read.
    sent = list(read_ahead(missing_chunks(files, {}, CHUNK)))
    assert hashed and all(chunk.sha256 == real(chunk.data).hexdigest() for chunk in sent)


def test_upload_folder_stores_the_folder_and_reports_progress(live_server, token, folder):
    events = []
    api = CountingClient(live_server.url, token=token)
    artifact = api.upload_folder(folder, "client model", on_progress=events.append, chunk_bytes=CHUNK)
    assert artifact["digest"] == manifest_digest(folder) and artifact["name"] == "client model"
    assert ModelArtifact.objects.get(pk=artifact["id"]).format == "hf-dir"
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert api.sent == total and api.chunks == 11 + 1 + 1  # weights, config, vocab; the empty file needs none
    stages = [e["stage"] for e in events]
    assert stages[0] == "hashing" and stages[-1] == "done" and "uploading" in stages and "finishing" in stages
    uploading = [e["done"] for e in events if e["stage"] == "uploading"]
    assert uploading == sorted(uploading) and uploading[-1] == total
    # The same folder again: same bytes, same artifact (content-addressed), a new upload.
    assert api.upload_folder(folder, "client model", chunk_bytes=CHUNK)["id"] == artifact["id"]


def test_an_interrupted_upload_resumes_sending_only_the_missing_chunks(live_server, token, folder):
    first = CountingClient(live_server.url, token=token, fail_after=4)
    with pytest.raises(ConnectionResetError):
        first.upload_folder(folder, "resumed", chunk_bytes=CHUNK, retries=0)
    upload = ArtifactUpload.objects.get()
    assert upload.status == UploadStatus.OPEN
    held = sum(f.received for f in upload.files.all())
    assert held == first.sent == len((folder / "config.json").read_bytes()) + 3 * CHUNK  # 4 chunks arrived
    second = CountingClient(live_server.url, token=token)  # a new process: finds the open upload by digest
    artifact = second.upload_folder(folder, "resumed", chunk_bytes=CHUNK)
    assert second.sent == upload.total_bytes - held
    assert artifact["digest"] == manifest_digest(folder)
    assert ArtifactUpload.objects.get().status == UploadStatus.COMPLETED


def test_a_dropped_connection_inside_one_call_is_retried_from_the_servers_status(live_server, token, folder):
    api = CountingClient(live_server.url, token=token, fail_after=3)
    artifact = api.upload_folder(folder, "retried", chunk_bytes=CHUNK, retries=2, retry_wait=0.01)
    assert artifact["digest"] == manifest_digest(folder)
    assert api.sent == ArtifactUpload.objects.get().total_bytes  # nothing was sent twice


def test_a_body_cut_off_mid_chunk_keeps_nothing_of_it_and_the_upload_resumes(live_server, token, folder):
    """A real dropped connection: the server reads a short body, keeps none of it, and the client resumes."""
    api = Client(live_server.url, token=token)
    files = scan_folder(folder)
    from safeshrink_client.uploads import hash_files

    hash_files(files)
    upload = api.post("/api/uploads/", {"name": "cut", "files": [f.entry() for f in files]})
    data = (folder / "model.safetensors").read_bytes()[:CHUNK]
    query = urlencode({"path": "model.safetensors", "offset": 0, "sha256": hashlib.sha256(data).hexdigest()})
    host = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    conn.putrequest("PUT", f"/api/uploads/{upload['id']}/chunks/?{query}")
    for header, value in (
        ("Authorization", f"Token {token}"),
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(data))),
    ):
        conn.putheader(header, value)
    conn.endheaders()
    conn.send(data[: len(data) // 2])
    conn.sock.shutdown(2)  # the connection drops halfway through the body
    conn.close()
    status = api.get(f"/api/uploads/{upload['id']}/")
    assert {f["path"]: f["received"] for f in status["files"]}["model.safetensors"] == 0
    artifact = api.upload_folder(folder, "cut", chunk_bytes=CHUNK)
    assert artifact["digest"] == manifest_digest(folder)


def test_a_symlink_in_the_folder_is_refused_before_anything_is_sent(live_server, token, folder, tmp_path):
    (tmp_path / "secret.txt").write_text("not for the server")
    os.symlink(tmp_path / "secret.txt", folder / "notes.txt")
    with pytest.raises(UploadRefused, match="notes.txt is a symbolic link"):
        Client(live_server.url, token=token).upload_folder(folder, "linked")
    assert not ArtifactUpload.objects.exists()


def test_hidden_files_are_left_out_unless_asked_for(live_server, token, folder):
    manifest = manifest_digest(folder)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD.json").write_text("ref")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    api = Client(live_server.url, token=token)
    artifact = api.upload_folder(folder, "checkout", chunk_bytes=CHUNK)
    assert artifact["digest"] == manifest and not any(e["path"].startswith(".") for e in artifact["manifest"])
    with pytest.raises(ApiError) as refused:  # asked for: .gitattributes has no accepted ending
        api.upload_folder(folder, "checkout", include_hidden=True)
    assert refused.value.code == "upload_format_refused" and ".gitattributes" in refused.value.message


def test_a_refusal_by_the_server_is_an_api_error_naming_the_file(live_server, token, folder):
    (folder / "train.py").write_text("print('hi')\n")
    with pytest.raises(ApiError) as refused:
        Client(live_server.url, token=token).upload_folder(folder, "with code")
    assert refused.value.status == 400 and refused.value.code == "upload_format_refused"
    assert list(refused.value.details) == ["files[4].path"]
    assert not ArtifactUpload.objects.exists()


def test_the_command_line_uploads_with_a_progress_bar(live_server, token, folder, capsys):
    code = main(
        ["--url", live_server.url, "--token", token, "upload", str(folder), "--name", "cli", "--chunk-mib", "1"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["digest"] == manifest_digest(folder)
    assert "hashing" in err and "uploading" in err and "100.0%" in err and "[#####" in err
    refused = main(["--url", live_server.url, "--token", "wrong", "upload", str(folder), "--name", "cli"])
    assert refused == 1 and "refused (401" in capsys.readouterr().err


def test_the_command_line_explains_itself(capsys):
    with pytest.raises(SystemExit) as done:
        main(["upload", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--name" in text and "resumed" in text and "SafeShrink artifact" in text


def test_the_safeshrink_command_uploads_from_a_shell(live_server, token, folder):
    """bin/safeshrink, as an engineer runs it: a separate process with nothing but the standard library."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHON": sys.executable, "SAFESHRINK_TOKEN": token}
    done = subprocess.run(
        [str(root / "bin" / "safeshrink"), "--url", live_server.url, "upload", str(folder), "--name", "shell"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == manifest_digest(folder)
    assert ModelArtifact.objects.filter(digest=manifest_digest(folder)).exists()
