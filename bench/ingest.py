"""Metric ingestion through MLflow's REST protocol: SafeShrink's /mlflow against a real MLflow tracking server, with
the same client script (bench/ingest_client.py: the real `MlflowClient`, mlflow-skinny from requirements.txt).

Servers, both on loopback with WORKERS worker processes and each on its own fresh PostgreSQL database on the
server DATABASE_URL names: SafeShrink under gunicorn (sync workers, config.settings.test, DEBUG off, ledger in
the deployment's "sealer" mode with one `manage.py ledger_sealer` process beside it, as docker/compose.yml runs it;
SAFESHRINK_BENCH_INGEST_SEALING=inline for the default of a bare install; database
`safeshrink_bench_ingest`, migrated, one engineer and their API token, sent as MLFLOW_TRACKING_TOKEN), and
`mlflow server` (full mlflow MLFLOW_VERSION in .bench-venv/mlflow, created by bench/servers.py on first use;
its default uvicorn front end; database `safeshrink_bench_ingest_mlflow`, migrated by MLflow at start).

Each server gets one experiment and one run created through the client. Then ROUNDS rounds, each measuring
SafeShrink then MLflow (interleaved, so load from elsewhere on the machine falls on both), of:
(a) log_batch: BATCH_PROCESSES client processes, one thread each, sending log_batch calls of 1,000 metrics (10
    keys x 100 steps) back to back for BATCH_SECONDS -> metrics/s (metrics in calls completed / time until the
    last one ended) and the per-call latency;
(b) log_metric: SINGLE_PROCESSES processes x SINGLE_THREADS threads (16 concurrent clients) sending single
    log_metric calls for SINGLE_SECONDS -> requests/s and p50/p99 latency (client side, call to return).
Every client thread makes two warm-up calls before the window opens. Medians over the rounds are reported,
with the CPU seconds the clients and the server processes (gunicorn and the ledger sealer; MLflow's server and its
workers; PostgreSQL's own backends are not counted for either) used in the window, and the server CPU per metric
and per request: client and server share this machine's cores, so a client that takes CPU takes it from the
server (both servers alike), and on 2 cores the MLflow client's own work per 1,000-metric call can cap the
throughput a fast server shows; the CPU ratios do not depend on that.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.databases import database_drop, database_recreate, postgres_server
from bench.servers import MLFLOW_VERSION, ROOT, free_port, mlflow_venv, start_gunicorn, start_mlflow, stop, wait_http

SAFESHRINK_DB = "safeshrink_bench_ingest"
MLFLOW_DB = "safeshrink_bench_ingest_mlflow"
WORKERS = int(os.environ.get("SAFESHRINK_BENCH_INGEST_WORKERS", "2"))
ROUNDS = int(os.environ.get("SAFESHRINK_BENCH_INGEST_ROUNDS", "3"))
BATCH_SIZE = 1000
BATCH_PROCESSES = int(os.environ.get("SAFESHRINK_BENCH_INGEST_BATCH_CLIENTS", "2"))
BATCH_SECONDS = float(os.environ.get("SAFESHRINK_BENCH_INGEST_BATCH_SECONDS", "6"))
SINGLE_PROCESSES, SINGLE_THREADS = 4, 4
SINGLE_SECONDS = float(os.environ.get("SAFESHRINK_BENCH_INGEST_SINGLE_SECONDS", "6"))
# The deployment's ledger mode (docker/compose.yml): writers only insert, one `ledger_sealer` process chains.
SEALING = os.environ.get("SAFESHRINK_BENCH_INGEST_SEALING", "sealer")
# Query options appended to SafeShrink's DATABASE_URL (django-environ reads e.g. "conn_max_age=60"); none by default:
# the settings as shipped.
DB_OPTIONS = os.environ.get("SAFESHRINK_BENCH_INGEST_DB_OPTIONS", "")
# The WSGI application gunicorn serves (another one on PYTHONPATH measures a change before it lands).
WSGI_APP = os.environ.get("SAFESHRINK_BENCH_INGEST_WSGI", "config.wsgi:application")
TARGET_BATCH_RATIO, TARGET_SINGLE_RATIO, TARGET_P99_MS = 5.0, 2.0, 50.0


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _clients(env: dict, config: dict, processes: int, seconds: float, server: list[int]) -> dict:
    """Start `processes` client processes, open the window when all are warm, gather their calls."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.ingest_client", json.dumps({**config, "process": i})],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"client did not start: {line}{proc.stderr.read()[-3000:]}")
        server_pids = [pid for root in server for pid in _descendants(root)]
        server_cpu = _cpu_seconds(server_pids)
        opened = time.monotonic()
        for proc in procs:
            proc.stdin.write(f"GO {seconds}\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"client failed: {err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        server_cpu = _cpu_seconds(server_pids) - server_cpu
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    calls = [tuple(c) for r in results for c in r["calls"]]
    latencies = [end - began for began, end in calls]
    elapsed = max(end for _, end in calls) - opened if calls else seconds
    return {
        "calls": len(calls),
        "elapsed_s": elapsed,
        "latencies": latencies,
        "failures": sum(r["failures"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:3],
        "client_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "server_cpu_s": round(server_cpu, 2),
    }


def _round(env: dict, run_id: str, server: list[int]) -> dict:
    batch = _clients(
        env,
        {"mode": "batch", "run_id": run_id, "threads": 1, "per_call": BATCH_SIZE},
        BATCH_PROCESSES,
        BATCH_SECONDS,
        server,
    )
    single = _clients(
        env, {"mode": "single", "run_id": run_id, "threads": SINGLE_THREADS}, SINGLE_PROCESSES, SINGLE_SECONDS, server
    )
    return {
        "log_batch": {
            "metrics_per_s": round(batch["calls"] * BATCH_SIZE / batch["elapsed_s"], 1),
            "calls": batch["calls"],
            "call_p50_ms": round(1000 * statistics.median(batch["latencies"]), 1) if batch["latencies"] else None,
            "failures": batch["failures"],
            "errors": batch["errors"],
            "client_cpu_s": batch["client_cpu_s"],
            "server_cpu_s": batch["server_cpu_s"],
            "server_cpu_us_per_metric": round(1e6 * batch["server_cpu_s"] / max(1, batch["calls"] * BATCH_SIZE), 1),
        },
        "log_metric": {
            "requests_per_s": round(single["calls"] / single["elapsed_s"], 1),
            "p50_ms": round(1000 * statistics.median(single["latencies"]), 1) if single["latencies"] else None,
            "p99_ms": round(1000 * _percentile(single["latencies"], 0.99), 1) if single["latencies"] else None,
            "failures": single["failures"],
            "errors": single["errors"],
            "client_cpu_s": single["client_cpu_s"],
            "server_cpu_s": single["server_cpu_s"],
            "server_cpu_ms_per_request": round(1e3 * single["server_cpu_s"] / max(1, single["calls"]), 2),
        },
    }


def _summary(rounds: list[dict]) -> dict:
    def median(phase: str, field: str) -> float:
        return round(statistics.median(r[phase][field] for r in rounds), 1)

    return {
        "log_batch_metrics_per_s": median("log_batch", "metrics_per_s"),
        "log_batch_call_p50_ms": median("log_batch", "call_p50_ms"),
        "log_metric_requests_per_s": median("log_metric", "requests_per_s"),
        "log_metric_p50_ms": median("log_metric", "p50_ms"),
        "log_metric_p99_ms": median("log_metric", "p99_ms"),
        "log_batch_cpu_s_client_server": [median("log_batch", "client_cpu_s"), median("log_batch", "server_cpu_s")],
        "log_metric_cpu_s_client_server": [median("log_metric", "client_cpu_s"), median("log_metric", "server_cpu_s")],
        "log_batch_server_cpu_us_per_metric": median("log_batch", "server_cpu_us_per_metric"),
        "log_metric_server_cpu_ms_per_request": round(
            statistics.median(r["log_metric"]["server_cpu_ms_per_request"] for r in rounds), 2
        ),
        "failed_calls": sum(r[p]["failures"] for r in rounds for p in ("log_batch", "log_metric")),
        "rounds": {
            f"round_{i}": f"log_batch {r['log_batch']['metrics_per_s']} metrics/s ({r['log_batch']['calls']} calls); "
            f"log_metric {r['log_metric']['requests_per_s']} req/s, p50 {r['log_metric']['p50_ms']} ms, "
            f"p99 {r['log_metric']['p99_ms']} ms"
            for i, r in enumerate(rounds, start=1)
        },
        "errors": [e for r in rounds for p in ("log_batch", "log_metric") for e in r[p]["errors"]][:3],
    }


def _safeshrink_setup(url: str) -> tuple[str, int]:
    """Migrate the fresh database, create an engineer and their experiment (on a base artifact row: no model file
    is opened); the engineer's API token and the experiment's id."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from compression.models import ModelArtifact
    from compression.services.experiments import experiment_create

    call_command("migrate", verbosity=0)
    engineer = User.objects.create_user(username="bench-engineer", password="x", role="engineer")
    token = Token.objects.create(user=engineer).key
    base = ModelArtifact.objects.create(
        name="bench base",
        digest="0" * 64,
        format="hf-dir",
        size_bytes=10,
        manifest=[{"path": "config.json", "sha256": "1" * 64, "size": 10}],
        labels=["normal", "offensive"],
        created_by=engineer,
    )
    experiment = experiment_create(
        actor=engineer, name="bench-ingest", base_artifact_id=base.pk, unsafe_labels=["offensive"]
    )
    connections.close_all()
    return token, experiment.pk


def _client_env(uri: str, token: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    return env


def _create_run(env: dict, experiment_id: int | None) -> str:
    """A run on the server `env` names (in `experiment_id`, else in a new experiment), through the same client (in
    a subprocess: the client reads its configuration from the environment)."""
    experiment = repr(str(experiment_id)) if experiment_id else "c.create_experiment('bench-ingest')"
    code = "from mlflow.tracking import MlflowClient; c = MlflowClient(); "
    code += f"print(c.create_run({experiment}).info.run_id)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating the run failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def run() -> dict:
    _, venv_created_s = mlflow_venv()
    # SIGTERM (a timeout) unwinds through the finally below, so no server is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()[0]
    server = postgres_server("ingest")
    safeshrink_url = database_recreate(server, SAFESHRINK_DB)
    mlflow_url = database_recreate(server, MLFLOW_DB)
    gunicorn = mlflow = sealer = None
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        try:
            token, experiment_id = _safeshrink_setup(safeshrink_url)
            ss_port, ml_port = free_port(), free_port()
            server_env = {
                **os.environ,
                "SAFESHRINK_LEDGER_SEALING": SEALING,
                "DATABASE_URL": safeshrink_url + (f"?{DB_OPTIONS}" if DB_OPTIONS else ""),
            }
            gunicorn = start_gunicorn(ss_port, server_env, WORKERS, app=WSGI_APP, log=work / "gunicorn.log")
            if SEALING == "sealer":
                sealer = subprocess.Popen(
                    [sys.executable, "manage.py", "ledger_sealer"],
                    cwd=ROOT,
                    env=server_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            mlflow = start_mlflow(
                ml_port,
                "postgresql+psycopg2://" + mlflow_url.split("://", 1)[1],
                work / "mlartifacts",
                WORKERS,
                log=work / "mlflow.log",
            )
            began = time.perf_counter()
            wait_http(f"http://127.0.0.1:{ml_port}/health", mlflow, timeout=300, log=work / "mlflow.log")
            mlflow_start_s = round(time.perf_counter() - began, 1)
            wait_http(f"http://127.0.0.1:{ss_port}/mlflow/", gunicorn, log=work / "gunicorn.log")
            targets = {
                "safeshrink": (
                    _client_env(f"http://127.0.0.1:{ss_port}/mlflow", token),
                    [gunicorn.pid] + ([sealer.pid] if sealer else []),
                ),
                "mlflow": (_client_env(f"http://127.0.0.1:{ml_port}", None), [mlflow.pid]),
            }
            runs = {
                name: _create_run(env, experiment_id if name == "safeshrink" else None)
                for name, (env, _) in targets.items()
            }
            rounds: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(ROUNDS):
                for name, (env, pid) in targets.items():
                    rounds[name].append(_round(env, runs[name], pid))
        finally:
            stop(gunicorn)
            stop(sealer)
            stop(mlflow)
            database_drop(server, SAFESHRINK_DB)
            database_drop(server, MLFLOW_DB)
    load_after = os.getloadavg()[0]
    ours, theirs = _summary(rounds["safeshrink"]), _summary(rounds["mlflow"])
    batch_ratio = round(ours["log_batch_metrics_per_s"] / theirs["log_batch_metrics_per_s"], 2)
    single_ratio = round(ours["log_metric_requests_per_s"] / theirs["log_metric_requests_per_s"], 2)
    clean = ours["failed_calls"] == 0 and theirs["failed_calls"] == 0
    return {
        "setup": {
            "client": "MlflowClient (mlflow-skinny from requirements.txt), bench/ingest_client.py, same for both",
            "mlflow_server": f"mlflow {MLFLOW_VERSION} (`mlflow server`, uvicorn), .bench-venv/mlflow",
            "safeshrink_server": f"gunicorn sync workers, config.settings.test, {WSGI_APP}",
            "safeshrink_ledger_sealing": SEALING
            + (" (+ one ledger_sealer process, its CPU counted)" if SEALING == "sealer" else ""),
            "safeshrink_database_url_options": DB_OPTIONS or "none (settings as shipped)",
            "workers_each": WORKERS,
            "database": "PostgreSQL, a fresh database per server",
            "rounds_interleaved": ROUNDS,
            "log_batch": f"{BATCH_PROCESSES} client processes x 1 thread, {BATCH_SIZE} metrics per call, "
            f"{BATCH_SECONDS:g} s per round",
            "log_metric": f"{SINGLE_PROCESSES} client processes x {SINGLE_THREADS} threads, {SINGLE_SECONDS:g} s "
            "per round",
            "mlflow_server_start_s": mlflow_start_s,
            "mlflow_venv_created_s": venv_created_s,
            # Other work on the machine takes CPU from both servers: the 1-minute load average before and after.
            "load_average_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        },
        "safeshrink": ours,
        "mlflow": theirs,
        "ratios": {
            "log_batch_metrics_per_s": batch_ratio,
            "log_metric_requests_per_s": single_ratio,
            # Independent of how much CPU the clients leave the server on this shared machine:
            "log_batch_server_cpu_per_metric_mlflow_over_safeshrink": round(
                theirs["log_batch_server_cpu_us_per_metric"] / max(0.1, ours["log_batch_server_cpu_us_per_metric"]), 2
            ),
            "log_metric_server_cpu_per_request_mlflow_over_safeshrink": round(
                theirs["log_metric_server_cpu_ms_per_request"]
                / max(0.01, ours["log_metric_server_cpu_ms_per_request"]),
                2,
            ),
        },
        "targets": {
            f"log_batch metrics/s >= {TARGET_BATCH_RATIO:g}x MLflow's": {
                "met": clean and batch_ratio >= TARGET_BATCH_RATIO,
                "value": f"{batch_ratio}x ({ours['log_batch_metrics_per_s']} vs {theirs['log_batch_metrics_per_s']})",
            },
            f"log_metric requests/s >= {TARGET_SINGLE_RATIO:g}x MLflow's (16 clients)": {
                "met": clean and single_ratio >= TARGET_SINGLE_RATIO,
                "value": f"{single_ratio}x ({ours['log_metric_requests_per_s']} vs "
                f"{theirs['log_metric_requests_per_s']})",
            },
            f"log_metric p99 <= {TARGET_P99_MS:g} ms (16 clients)": {
                "met": clean and ours["log_metric_p99_ms"] <= TARGET_P99_MS,
                "value": f"{ours['log_metric_p99_ms']} ms",
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
