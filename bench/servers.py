"""HTTP servers for the benchmarks: SafeShrink under gunicorn, and a real MLflow tracking server (full `mlflow`,
pinned, in its own virtualenv .bench-venv/mlflow, created here on first use from the package index pip is
configured with; nothing of it enters SafeShrink's own virtualenv)."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_VERSION = "3.17.2"  # the same release as the mlflow-skinny client in requirements.txt
MLFLOW_VENV = ROOT / ".bench-venv" / "mlflow"
# The driver MLflow's SQLAlchemy store uses, named in the URI (postgresql+psycopg2://): SQLAlchemy 2.1 would
# otherwise pick psycopg 3 for postgresql://.
MLFLOW_REQUIREMENTS = (f"mlflow=={MLFLOW_VERSION}", "psycopg2-binary==2.9.13")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_file(log: Path | None):
    """Where a server's stderr goes: a file (a pipe nobody reads would fill and stall the server)."""
    return open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed by the child's exit


def start_gunicorn(
    port: int, env: dict, workers: int, *, app: str = "config.wsgi:application", log: Path | None = None
) -> subprocess.Popen:
    """gunicorn (sync workers, warnings only) serving SafeShrink on 127.0.0.1:port from this virtualenv;
    stderr to `log` when given."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=_log_file(log),
    )


def wait_http(url: str, server: subprocess.Popen, *, timeout: float = 60, log: Path | None = None) -> None:
    """Until `url` answers at all (any HTTP status); fails if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{server.args[0]} exited with {server.returncode}:\n{tail}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(server: subprocess.Popen | None) -> None:
    """Terminate a server and, when it leads its own process group (the MLflow server and the job consumers it
    starts), the whole group."""
    if server is None:
        return
    group = server.poll() is None and os.getpgid(server.pid) == server.pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig) if group else server.send_signal(sig)

    send(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        server.wait()
    if group:  # anything in the group that outlived its parent
        send(signal.SIGKILL)


def mlflow_venv() -> tuple[Path, float | None]:
    """The MLflow server's virtualenv (its python), and the seconds spent creating it (None: it existed)."""
    python = MLFLOW_VENV / "bin" / "python"
    marker = MLFLOW_VENV / "installed.txt"
    wanted = "\n".join(MLFLOW_REQUIREMENTS)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python, None
    began = time.perf_counter()
    shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
    MLFLOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *MLFLOW_REQUIREMENTS],
        check=True,
    )
    marker.write_text(wanted)
    return python, round(time.perf_counter() - began, 1)


def start_mlflow(port: int, backend_uri: str, artifacts: Path, workers: int, *, log: Path) -> subprocess.Popen:
    """`mlflow server` (its default uvicorn front end) with `workers` processes on 127.0.0.1:port; stderr to
    `log`."""
    python, _ = mlflow_venv()
    artifacts.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=artifacts,
        env={k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "MLFLOW_"))},
        start_new_session=True,  # its own process group: stop() ends the job consumers it starts too
        stdout=subprocess.DEVNULL,
        stderr=_log_file(log),
    )
