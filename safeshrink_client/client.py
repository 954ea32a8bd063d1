import json
import time
import urllib.error
import urllib.request
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
    def __init__(self, base_url: str, *, token: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token
        if token is None and username is not None:
            self.token = self._request("POST", "/api/auth/token/", {"username": username, "password": password})["token"]

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
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

    def create_experiment(self, name: str, base_artifact: int, unsafe_labels: list[str], risk_tier: str = "medium",
                          description: str = "") -> dict:
        return self.post("/api/experiments/", {"name": name, "base_artifact": base_artifact, "risk_tier": risk_tier,
                                               "unsafe_labels": unsafe_labels, "description": description})

    def request_run(self, experiment: int, method: str, parameters: dict | None = None, seed: int = 0) -> dict:
        return self.post(f"/api/experiments/{experiment}/runs/", {"method": method, "parameters": parameters or {},
                                                                  "seed": seed})

    def create_release(self, compression_run: int, suite_version: int, policy: int) -> dict:
        return self.post("/api/releases/", {"compression_run": compression_run, "suite_version": suite_version,
                                            "policy": policy})

    def evaluate_release(self, release: dict) -> dict:
        return self.post(f"/api/releases/{release['id']}/evaluate/", {"expected_version": release["version"]})

    # Officers
    def decide(self, release: dict, kind: str, rationale: str) -> dict:
        return self.post(f"/api/releases/{release['id']}/decisions/",
                         {"kind": kind, "rationale": rationale, "expected_version": release["version"]})

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
