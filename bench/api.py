"""API list endpoints under gunicorn on loopback, with PostgreSQL: requests/s and latency percentiles for
CLIENTS concurrent clients, and one client's latency for comparison.

Creates and drops its own database `safeshrink_bench_api` on the server DATABASE_URL names, fills it with
RELEASES releases (each with a full gate table of GATE_RULES rules and two decisions), their experiments, runs,
artifacts and escalations (rows written directly, no model is trained), starts gunicorn (WORKERS sync workers,
config.settings.test, DEBUG off) on a free loopback port, and for each endpoint: WARMUP seconds of load, then
DURATION seconds measured with CLIENTS threads, each with its own connection (reopened after every response:
gunicorn's sync workers close it) and an officer's token, each request timed from send to the last byte of
the body. The clients run on the same machine as the server and take CPU from it: the figures are a floor
for a machine where they do not.
"""

import datetime as dt
import hashlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.databases import database_drop, database_recreate, postgres_server

DB_NAME = "safeshrink_bench_api"
CLIENTS = 16
WORKERS = int(os.environ.get("SAFESHRINK_BENCH_API_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
RELEASES = 50
GATE_RULES = 9
WARMUP = 2.0
DURATION = 8.0
SEQUENTIAL_REQUESTS = 100
ENDPOINTS = ("/api/releases/", "/api/runs/", "/api/escalations/", "/api/experiments/", "/api/artifacts/")
ROOT = Path(__file__).resolve().parents[1]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _seed() -> tuple[str, int]:
    """Rows for the list endpoints, written directly (no services: nothing here is under test).
    The officer's token and one release's id."""
    from django.core.management import call_command
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from compression.models import CompressionRun, Experiment, ModelArtifact, RunStatus
    from evaluations.models import Suite, SuiteVersion
    from governance.models import (
        Decision,
        Escalation,
        EscalationTrigger,
        Release,
        ReleaseStatus,
        ThresholdPolicy,
        ThresholdRule,
    )

    call_command("migrate", verbosity=0)
    engineer = User.objects.create_user(username="bench-engineer", password="x", role="engineer")
    officer = User.objects.create_user(username="bench-officer", password="x", role="officer")
    policy = ThresholdPolicy.objects.create(name="bench policy", version=1, created_by=officer)
    rules = [
        ThresholdRule(
            policy=policy,
            code=f"rule-{i}",
            title=f"Rule {i}",
            metric="recall",
            group="overall",
            kind="delta",
            bound="ci_low",
            higher_is_better=True,
            green_limit=-0.01,
            red_limit=-0.05,
        )
        for i in range(GATE_RULES)
    ]
    ThresholdRule.objects.bulk_create(rules)
    suite = Suite.objects.create(name="bench suite")
    version = SuiteVersion.objects.create(
        suite=suite, number=1, digest=_digest("suite"), unsafe_labels=["x"], example_count=1000, created_by=engineer
    )
    now = timezone.now()
    for i in range(RELEASES):
        base = ModelArtifact.objects.create(
            name=f"base {i}",
            digest=_digest(f"base {i}"),
            format="hf-dir",
            size_bytes=10**8,
            parameter_count=10**7,
            labels=["safe", "unsafe"],
            manifest=[{"path": f"f{j}", "sha256": _digest(f"{i}-{j}"), "size": 1} for j in range(6)],
            created_by=engineer,
        )
        candidate = ModelArtifact.objects.create(
            name=f"candidate {i}",
            digest=_digest(f"cand {i}"),
            format="torch-quantized",
            size_bytes=4 * 10**7,
            parent=base,
            labels=["safe", "unsafe"],
            manifest=[],
            created_by=engineer,
        )
        experiment = Experiment.objects.create(
            name=f"experiment {i}", owner=engineer, base_artifact=base, unsafe_labels=["unsafe"]
        )
        run = CompressionRun.objects.create(
            experiment=experiment,
            method="dynamic_int8",
            requested_by=engineer,
            status=RunStatus.SUCCEEDED,
            output_artifact=candidate,
            provenance={
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": candidate.digest}}],
            },
        )
        gate = [
            {
                "rule": f"rule-{j}",
                "title": f"Rule {j}",
                "metric": "recall",
                "group": "overall",
                "value": -0.004 * j,
                "ci_low": -0.006 * j,
                "ci_high": 0.001,
                "zone": "green" if j < 6 else "amber",
                "green_limit": -0.01,
                "red_limit": -0.05,
                "n": 1000,
            }
            for j in range(GATE_RULES)
        ]
        release = Release.objects.create(
            experiment=experiment,
            compression_run=run,
            candidate=candidate,
            candidate_digest=candidate.digest,
            suite_version=version,
            policy=policy,
            status=ReleaseStatus.AWAITING_DECISION,
            gate_zone="amber",
            gate=gate,
            created_by=engineer,
        )
        Escalation.objects.create(
            release=release,
            trigger=EscalationTrigger.RED_ZONE,
            summary="bench",
            level=1,
            owner_role="officer",
            deadline=now + dt.timedelta(days=1),
        )
        for kind in ("halt", "resume"):
            Decision.objects.create(
                release=release,
                actor=officer,
                actor_role="officer",
                kind=kind,
                rationale="bench",
                evidence={"gate": _digest(str(gate))},
                candidate_digest=candidate.digest,
                release_version=1,
                experiment_owner=engineer,
                run_requester=engineer,
            )
    return Token.objects.create(user=officer).key, release.pk


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(conn: http.client.HTTPConnection, path: str, token: str) -> int:
    conn.request("GET", path, headers={"Authorization": f"Token {token}", "Host": "127.0.0.1"})
    response = conn.getresponse()
    response.read()
    return response.status


def _wait_ready(port: int, token: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.stderr.read().decode()[-3000:]}")
        try:
            if _get(http.client.HTTPConnection("127.0.0.1", port, timeout=5), ENDPOINTS[0], token) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _load(port: int, path: str, token: str, seconds: float) -> tuple[list[float], int]:
    """CLIENTS threads requesting `path` back to back for `seconds`; (latencies in s, non-200 count)."""
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors = [0] * CLIENTS
    start_barrier = threading.Barrier(CLIENTS + 1)
    stop_at: list[float] = []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start_barrier.wait()
        while time.monotonic() < stop_at[0]:
            began = time.perf_counter()
            try:
                status = _get(conn, path, token)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            latencies[index].append(time.perf_counter() - began)
            errors[index] += status != 200
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds)
    start_barrier.wait()
    for thread in threads:
        thread.join()
    return [x for per_client in latencies for x in per_client], sum(errors)


def _measure(port: int, path: str, token: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sequential = []
    for _ in range(SEQUENTIAL_REQUESTS):
        began = time.perf_counter()
        assert _get(conn, path, token) == 200
        sequential.append(time.perf_counter() - began)
    conn.close()
    _load(port, path, token, WARMUP)
    latencies, errors = _load(port, path, token, DURATION)
    return {
        "requests_per_s": round(len(latencies) / DURATION, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "non_200": errors,
        "one_client_p50_ms": round(1000 * statistics.median(sequential), 1),
        "one_client_p99_ms": round(1000 * _percentile(sequential, 0.99), 1),
    }


def run() -> dict:
    server = postgres_server("api")
    url = database_recreate(server, DB_NAME)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    gunicorn = None
    try:
        token, release_id = _seed()
        from django.db import connections

        connections.close_all()
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        gunicorn = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(WORKERS),
                "--worker-class",
                "sync",
                "--log-level",
                "warning",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_ready(port, token, gunicorn)
        figures = {path: _measure(port, path, token) for path in ENDPOINTS}
        figures["/api/releases/{id}/ (detail: full gate and decisions)"] = _measure(
            port, f"/api/releases/{release_id}/", token
        )
        return {
            "clients": CLIENTS,
            "gunicorn_workers": WORKERS,
            "releases": RELEASES,
            "rows_per_page": 50,
            "seconds_measured_per_endpoint": DURATION,
            "endpoints": figures,
        }
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            try:
                gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        from django.db import connections

        connections.close_all()
        database_drop(server, DB_NAME)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
