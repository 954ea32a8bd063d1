"""Model upload throughput on loopback through gunicorn, and the web processes' peak memory.

A folder of SIZE_MB (env SAFESHRINK_BENCH_UPLOAD_MB, default 500; the issue's target is for 500 MB: a
config.json, a few tokenizer files and one model.safetensors of random bytes) is uploaded REPEAT times
with the project's own client (`Client.upload_folder`: hash the folder, open an upload, PUT chunks of
CHUNK_MIB MiB with their sha256, finish) to gunicorn (WORKERS sync workers, config.settings.test, DEBUG
off) on a free loopback port. Each repetition changes config.json, so each is a new artifact and runs
the whole path: per-chunk checks, whole-file checks at finish, the move into the artifact store.

Throughput is the folder's bytes over the wall time from the first byte hashed to the artifact returned
(median of REPEAT); the phases (client hashing, chunks, finish) are timed apart from the client's progress
events, and the CPU seconds of the client and of the gunicorn processes are recorded beside them (a busy
machine inflates wall time, not CPU time). Peak memory is the largest VmHWM (the kernel's high-water mark
of resident memory) of any gunicorn process after the uploads, beside their resident memory when idle
before them, so nothing between two samples can be missed. Client and server share this machine's CPUs.

Database: a fresh PostgreSQL database `safeshrink_bench_uploads` when DATABASE_URL names PostgreSQL,
otherwise SQLite in the temporary folder (an upload writes a handful of rows; the bytes go to disk).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SIZE_MB = int(os.environ.get("SAFESHRINK_BENCH_UPLOAD_MB", "500"))
REPEAT = int(os.environ.get("SAFESHRINK_BENCH_UPLOAD_REPEAT", "3"))
WORKERS = int(os.environ.get("SAFESHRINK_BENCH_UPLOAD_WORKERS", "2"))
CHUNK_MIB = int(os.environ.get("SAFESHRINK_BENCH_UPLOAD_CHUNK_MIB", "32"))
TARGET_MB_PER_S = 200
TARGET_PEAK_MIB = 200
DB_NAME = "safeshrink_bench_uploads"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_folder(folder: Path) -> int:
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "tokenizer" / "vocab.txt").write_text("\n".join(f"token{i}" for i in range(30_000)))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    block = 16 << 20
    with open(folder / "model.safetensors", "wb") as out:
        left = SIZE_MB * 1_000_000
        while left:
            out.write(os.urandom(min(block, left)))
            left -= min(block, left)
    _write_config(folder, 0)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _write_config(folder: Path, repetition: int) -> None:
    config = {"model_type": "bert", "id2label": {"0": "safe", "1": "unsafe"}, "bench_repetition": repetition}
    (folder / "config.json").write_text(json.dumps(config))


def _processes(master: int) -> list[int]:
    """gunicorn's master and its workers (children, read from /proc)."""
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry))
    return pids


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (from /proc/<pid>/stat), in seconds."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _setup(env: dict) -> str:
    """Migrate, create an engineer and return their token (in this process, with the server's settings)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from accounts.models import User

    call_command("migrate", verbosity=0)
    engineer = User.objects.create_user(username="bench-engineer", password="x", role="engineer")
    token = Token.objects.create(user=engineer).key
    from django.db import connections

    connections.close_all()
    return token


def _wait_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.stderr.read().decode()[-3000:]}")
        try:
            urllib.request.urlopen(url + "/api/schema/", timeout=5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


def _upload_once(client, folder: Path, size: int, repetition: int, server: list[int]) -> dict:
    _write_config(folder, repetition)
    marks: dict[str, float] = {}

    def progress(event: dict) -> None:
        marks.setdefault(event["stage"], time.perf_counter())

    server_cpu, client_cpu = _cpu_seconds(server), time.process_time()
    began = time.perf_counter()
    artifact = client.upload_folder(folder, f"bench {repetition}", on_progress=progress, chunk_bytes=CHUNK_MIB << 20)
    ended = time.perf_counter()
    assert artifact["size_bytes"] == size
    return {
        "seconds": ended - began,
        "server_cpu_s": _cpu_seconds(server) - server_cpu,
        "client_cpu_s": time.process_time() - client_cpu,
        "hashing_s": marks["uploading"] - marks["hashing"],
        "chunks_s": marks["finishing"] - marks["uploading"],
        "finish_s": ended - marks["finishing"],
    }


def run() -> dict:
    from bench.databases import database_drop, database_recreate, postgres_server

    work = Path(tempfile.mkdtemp(prefix="safeshrink-bench-uploads-"))
    server_url = os.environ.get("DATABASE_URL", "")
    postgres = server_url.startswith("postgres")
    pg_server = postgres_server("uploads") if postgres else None
    database = database_recreate(pg_server, DB_NAME) if postgres else f"sqlite:///{work / 'db.sqlite3'}"
    env = {
        "DATABASE_URL": database,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DJANGO_LOG_LEVEL": "WARNING",
        "SAFESHRINK_VAR_DIR": str(work / "var"),
        "SAFESHRINK_ARTIFACT_ROOT": str(work / "artifacts"),
        "SAFESHRINK_UPLOAD_ROOT": str(work / "uploads"),
        "SAFESHRINK_MODEL_UPLOAD_MAX_BYTES": str(SIZE_MB * 1_000_000 + (64 << 20)),
    }
    gunicorn = None
    try:
        size = _make_folder(work / "model")
        token = _setup(env)
        port = _free_port()
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
                "300",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, gunicorn)
        idle = {pid: _memory_kib(pid, "VmRSS") for pid in _processes(gunicorn.pid)}
        from safeshrink_client import Client

        client = Client(url, token=token, timeout=300)
        server = _processes(gunicorn.pid)
        runs = [_upload_once(client, work / "model", size, n, server) for n in range(1, REPEAT + 1)]
        peaks = {pid: _memory_kib(pid, "VmHWM") for pid in _processes(gunicorn.pid)}
        median = statistics.median(r["seconds"] for r in runs)
        throughput = round(size / 1e6 / median, 1)
        peak_mib = round(max(peaks.values()) / 1024, 1)
        return {
            "folder_bytes": size,
            "repetitions": REPEAT,
            "gunicorn_workers": WORKERS,
            "chunk_mib": CHUNK_MIB,
            "database": "postgresql" if postgres else "sqlite",
            "seconds_median": round(median, 3),
            "upload_MB_per_s_median": throughput,
            "phases_s_median": {
                phase: round(statistics.median(r[phase] for r in runs), 3)
                for phase in ("hashing_s", "chunks_s", "finish_s")
            },
            # CPU time spent, which a busy machine does not inflate as it does wall time.
            "cpu_s_median": {
                side: round(statistics.median(r[side] for r in runs), 3) for side in ("client_cpu_s", "server_cpu_s")
            },
            "chunks_MB_per_s_median": round(size / 1e6 / statistics.median(r["chunks_s"] for r in runs), 1),
            "web_rss_idle_MiB_max": round(max(idle.values()) / 1024, 1),
            "web_peak_rss_MiB_max": peak_mib,
            "targets": {
                f"upload >= {TARGET_MB_PER_S} MB/s ({SIZE_MB} MB folder)": {
                    "met": throughput >= TARGET_MB_PER_S,
                    "value": f"{throughput} MB/s",
                },
                f"peak web-process memory <= {TARGET_PEAK_MIB} MiB": {
                    "met": peak_mib <= TARGET_PEAK_MIB,
                    "value": f"{peak_mib} MiB",
                },
            },
        }
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            try:
                gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        if postgres:
            from django.db import connections

            connections.close_all()
            database_drop(pg_server, DB_NAME)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
