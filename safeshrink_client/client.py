import json
import mimetypes
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any


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
        self, name: str, base_artifact: int, unsafe_labels: list[str], risk_tier: str = "medium", description: str = ""
    ) -> dict:
        return self.post(
            "/api/experiments/",
            {
                "name": name,
                "base_artifact": base_artifact,
                "risk_tier": risk_tier,
                "unsafe_labels": unsafe_labels,
                "description": description,
            },
        )

    def request_run(self, experiment: int, method: str, parameters: dict | None = None, seed: int = 0) -> dict:
        return self.post(
            f"/api/experiments/{experiment}/runs/", {"method": method, "parameters": parameters or {}, "seed": seed}
        )

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
