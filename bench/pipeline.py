"""How long the demo pipeline of `make run` takes, on the embedded default (SQLite + filesystem broker).

Runs bin/run-demo in a fresh temporary state folder (cold: the tiny model is built too) and reads the
timings it prints.
"""

import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="safeshrink-bench-") as tmp:
        state = Path(tmp)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{state / 'db.sqlite3'}",
            "SAFESHRINK_BROKER_DIR": str(state / "broker"),
            "SAFESHRINK_LOG_DIR": str(state / "log"),
            "SAFESHRINK_ARTIFACT_ROOT": str(state / "artifacts"),
            "SAFESHRINK_MODEL_CACHE": str(state / "models"),
            "PORT": str(_free_port()),
            "SAFESHRINK_DEMO_EXIT": "1",
        }
        env.pop("CELERY_BROKER_URL", None)
        started = time.perf_counter()
        result = subprocess.run([str(ROOT / "bin" / "run-demo")], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=1800)
        total = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"bin/run-demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    match = re.search(r"demo pipeline done in ([\d.]+) s \(compression ([\d.]+) s, evaluation and gate ([\d.]+) s\)",
                      result.stdout)
    assert match, result.stdout
    build = re.search(r"tiny model: val accuracy ([\d.]+) on HateXplain val, ([\d.]+) s", result.stdout)
    return {
        "make_run_to_awaiting_decision_s": round(total, 2),
        "pipeline_api_s": float(match.group(1)),
        "compression_s": float(match.group(2)),
        "evaluation_and_gate_s": float(match.group(3)),
        "tiny_model_build_s": float(build.group(2)) if build else None,
        "tiny_model_val_accuracy": float(build.group(1)) if build else None,
        "gate": re.search(r"gate (GREEN|AMBER|RED)", result.stdout).group(1),
    }
