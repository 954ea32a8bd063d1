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
            # The teacher build (minutes, once) is cached and measured by `build_teacher`; the
            # pipeline figure is what a returning user waits for.
            "SAFESHRINK_MODEL_CACHE": str(ROOT / "var" / "models"),
            "PORT": str(_free_port()),
            "SAFESHRINK_DEMO_EXIT": "1",
        }
        env.pop("CELERY_BROKER_URL", None)
        started = time.perf_counter()
        result = subprocess.run(
            [str(ROOT / "bin" / "run-demo")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
        )
        total = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"bin/run-demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    match = re.search(
        r"demo pipeline done in ([\d.]+) s \(compression ([\d.]+) s, evaluation and gate ([\d.]+) s\)", result.stdout
    )
    assert match, result.stdout
    teacher = re.search(r"teacher (\(cached\) )?at .*: accuracy ([\d.]+), macro-F1 ([\d.]+)", result.stdout)
    return {
        "make_run_to_gate_s": round(total, 2),
        "pipeline_api_s": float(match.group(1)),
        "compression_s": float(match.group(2)),
        "evaluation_and_gate_s": float(match.group(3)),
        "base_model": "MiniLM reference teacher" if teacher else "tiny",
        "teacher_was_cached": bool(teacher and teacher.group(1)),
        "teacher_test_accuracy": float(teacher.group(2)) if teacher else None,
        "teacher_test_macro_f1": float(teacher.group(3)) if teacher else None,
        "gate": re.search(r"gate (GREEN|AMBER|RED)", result.stdout).group(1),
    }
