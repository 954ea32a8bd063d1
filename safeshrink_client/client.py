import http.client
import json
import mimetypes
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from .uploads import hash_files, manifest_digest, missing_chunks, read_ahead, scan_folder

# Default bytes per chunk (the server may accept less: its upload says `chunk_bytes`).
UPLOAD_CHUNK_BYTES = 32 * 1024 * 1024
# Refusals worth resuming from: the server's view of the upload moved on (another attempt's chunk
# landed, or one is still in flight). Every other refusal is final.
RESUMABLE_CODES = ("chunk_offset", "upload_busy")
CONNECTION_ERRORS = (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError)


class ApiError(Exception):
    """The API refused a request; `code`, `message` and `details` come from its error body."""

    def __init__(self, status: int, body: dict):
        self.status = status
        self.code = body.get("code", "error")
        self.message = body.get("message", "")
        self.details = body.get("details", {})
        super().__init__(f"{status} {self.code}: {self.message} {self.details or ''}".strip())


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token
        if token is None and username is not None:
            credentials = {"username": username, "password": password}
            self.token = self._request("POST", "/api/auth/token/", credentials)["token"]

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> Any:
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {"message": exc.reason}
            raise ApiError(exc.code, payload) from None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: dict | None = None) -> Any:
        return self._request("POST", path, body or {})

    # Engineers
    def register_artifact(self, name: str, path: str, parent: int | None = None) -> dict:
        return self.post("/api/artifacts/", {"name": name, "path": path, "parent": parent})

    def create_experiment(
        self,
        name: str,
        base_artifact: int,
        unsafe_labels: list[str] | None = None,
        risk_tier: str = "medium",
        description: str = "",
        generation: dict | None = None,
    ) -> dict:
        """An experiment on ``base_artifact``: a classifier names its ``unsafe_labels``; a chat model may give
        its ``generation`` settings (system_prompt, max_new_tokens, stop_strings) instead."""
        body: dict = {"name": name, "base_artifact": base_artifact, "risk_tier": risk_tier, "description": description}
        if unsafe_labels is not None:
            body["unsafe_labels"] = unsafe_labels
        if generation is not None:
            body["generation"] = generation
        return self.post("/api/experiments/", body)

    def request_run(
        self,
        experiment: int,
        method: str,
        parameters: dict | None = None,
        seed: int = 0,
        device: str | None = None,
        queue_anyway: bool = False,
    ) -> dict:
        body: dict = {"method": method, "parameters": parameters or {}, "seed": seed}
        if device is not None:  # run on this device's worker pool ('cpu', 'cuda'); omitted: the cpu pool
            body["device"] = device
        if queue_anyway:
            body["queue_anyway"] = True
        return self.post(f"/api/experiments/{experiment}/runs/", body)

    def create_release(self, compression_run: int, suite_version: int, policy: int) -> dict:
        return self.post(
            "/api/releases/", {"compression_run": compression_run, "suite_version": suite_version, "policy": policy}
        )

    def upload_suite(
        self,
        path: str | os.PathLike,
        suite: str,
        unsafe_labels: list[str],
        safe_labels: list[str] | None = None,
        mapping: dict | None = None,
        format: str | None = None,
        default_slice: str | None = None,
        wait: bool = True,
        timeout: float = 1800,
        interval: float = 1.0,
        on_progress=None,
    ) -> dict:
        """Upload a CSV or JSONL suite file (streamed from disk). The server answers 202 and imports it on
        a worker; with `wait`, poll its status URL until it succeeded or failed and return the import
        (`suite_version` when it succeeded, `error` {code, message, details} when it failed)."""
        fields: list[tuple[str, str]] = [
            ("suite", suite),
            *(("unsafe_labels", x) for x in unsafe_labels),
            *(("safe_labels", x) for x in safe_labels or ()),
        ]
        if mapping is not None:
            fields.append(("mapping", json.dumps(mapping)))
        if format:
            fields.append(("format", format))
        if default_slice:
            fields.append(("default_slice", default_slice))
        boundary = uuid.uuid4().hex
        name = os.path.basename(os.fspath(path)).replace('"', "")
        head = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
                + value.encode()
                + b"\r\n"
                for key, value in fields
            )
            + (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: {mimetypes.guess_type(name)[0] or 'application/octet-stream'}\r\n\r\n"
            ).encode()
        )
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = os.path.getsize(path)

        def body():
            yield head
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk
            yield tail

        request = urllib.request.Request(self.base_url + "/api/suites/import/", data=body(), method="POST")
        request.add_header("Accept", "application/json")
        request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
        request.add_header("Content-Length", str(len(head) + size + len(tail)))
        job = self._open(request)
        if not wait:
            return job
        return self.wait(
            job["url"],
            done=lambda j: j["status"] in ("succeeded", "failed"),
            timeout=timeout,
            interval=interval,
            on_progress=on_progress,
        )

    def evaluate_release(self, release: dict, profile: dict | None = None) -> dict:
        """Start the release's evaluation, under ``profile`` (deployment-profile fields such as
        {"batching": "single"}; omitted: the policy's required profile, then the server's defaults)."""
        body: dict = {"expected_version": release["version"]}
        if profile is not None:
            body["profile"] = profile
        return self.post(f"/api/releases/{release['id']}/evaluate/", body)

    def upload_folder(
        self,
        path: str | os.PathLike,
        name: str,
        on_progress: Callable[[dict], None] | None = None,
        *,
        parent: int | None = None,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
        retries: int = 5,
        retry_wait: float = 1.0,
        include_hidden: bool = False,
        finish_timeout: float = 1800,
    ) -> dict:
        """Upload a model folder and return the artifact it became (as GET /api/artifacts/{id}/ shows it).

        Hashes every file (its manifest digest is the artifact's digest to be), resumes an open upload of the
        same folder if there is one (from an interrupted call, on this or another machine) or opens one,
        asks which bytes the server holds and sends only the missing chunks, each with its offset and
        sha256, then finishes. A dropped connection or a chunk that raced another is retried `retries`
        times, each time from the server's status. Symlinks in the folder are refused before anything is
        sent; files and folders whose name starts with '.' (.git, .cache) are left out unless
        `include_hidden`. `on_progress(event)` gets {"stage": "hashing" | "uploading" | "finishing" | "done",
        "done": bytes, "total": bytes, "file": path or None}."""
        files = scan_folder(path, include_hidden=include_hidden)
        total = sum(f.size for f in files)
        progress = _Progress(on_progress, total)
        progress.stage("hashing")
        hash_files(files, on_bytes=progress.add, chunk_bytes=chunk_bytes)
        digest = manifest_digest(files)
        upload = self._open_upload(digest, name, files, parent)
        failures, finishing_since = 0, None
        while True:
            try:
                status = self.get(f"/api/uploads/{upload['id']}/")
                if status["status"] == "completed":
                    progress.stage("done", done=total)
                    return status["artifact"]
                if status["status"] == "finishing":  # an earlier finish (its answer lost) is still storing it
                    finishing_since = finishing_since or time.monotonic()
                    if time.monotonic() - finishing_since > finish_timeout:
                        break
                    time.sleep(retry_wait)
                    continue
                self._send_missing(status, files, min(chunk_bytes, status["chunk_bytes"]), progress)
                progress.stage("finishing", done=total)
                done = self.post(f"/api/uploads/{upload['id']}/finish/")
                progress.stage("done", done=total)
                return done["artifact"]
            except ApiError as exc:
                if exc.code not in RESUMABLE_CODES:
                    raise
                failures += 1
                if failures > retries:
                    raise
            except CONNECTION_ERRORS:
                failures += 1
                if failures > retries:
                    raise
            time.sleep(retry_wait * min(failures, 5))
        raise TimeoutError(f"upload {upload['id']} is still finishing after {finish_timeout} s")

    def _open_upload(self, digest: str, name: str, files: list, parent: int | None) -> dict:
        """This folder's open upload (same manifest digest and name), or a new one."""
        query = urllib.parse.urlencode({"status": "open", "manifest_digest": digest})
        for upload in self.get(f"/api/uploads/?{query}")["results"]:
            if upload["name"] == name and upload["parent"] == parent:
                return upload
        body: dict = {"name": name, "files": [f.entry() for f in files]}
        if parent is not None:
            body["parent"] = parent
        return self.post("/api/uploads/", body)

    def _send_missing(self, status: dict, files: list, chunk_bytes: int, progress: "_Progress") -> None:
        received = {f["path"]: f["received"] for f in status["files"]}
        progress.stage("uploading", done=sum(received.values()))
        for chunk in read_ahead(missing_chunks(files, received, chunk_bytes)):
            query = urllib.parse.urlencode({"path": chunk.path, "offset": chunk.offset, "sha256": chunk.sha256})
            url = f"{self.base_url}/api/uploads/{status['id']}/chunks/?{query}"
            request = urllib.request.Request(url, data=chunk.data, method="PUT")
            request.add_header("Accept", "application/json")
            request.add_header("Content-Type", "application/octet-stream")
            self._open(request)
            progress.add(len(chunk.data), file=chunk.path)

    # Officers
    def decide(self, release: dict, kind: str, rationale: str) -> dict:
        return self.post(
            f"/api/releases/{release['id']}/decisions/",
            {"kind": kind, "rationale": rationale, "expected_version": release["version"]},
        )

    def wait(self, path: str, *, done, timeout: float = 600, interval: float = 1.0, on_progress=None) -> dict:
        """Poll `path` until `done(obj)` is true; call `on_progress(obj)` on each poll."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(path)
            if on_progress:
                on_progress(obj)
            if done(obj):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not done after {timeout} s")
            time.sleep(interval)


class _Progress:
    """Calls on_progress with the stage and the bytes done so far (hashing counts the folder once, then
    uploading counts it again from what the server already holds)."""

    def __init__(self, callback: Callable[[dict], None] | None, total: int):
        self.callback, self.total = callback, total
        self.current, self.done = "", 0

    def stage(self, name: str, done: int = 0) -> None:
        self.current, self.done = name, done
        self._emit(None)

    def add(self, count: int, file: str | None = None) -> None:
        self.done += count
        self._emit(file)

    def _emit(self, file: str | None) -> None:
        if self.callback:
            self.callback({"stage": self.current, "done": self.done, "total": self.total, "file": file})
