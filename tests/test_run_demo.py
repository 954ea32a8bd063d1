"""`make run` (bin/run-demo) ends with a running server whatever happens to the demo, and keeps earlier logs.

The demo is made to give up at once (SAFESHRINK_DEMO_TIMEOUT=1: no compression finishes in a second), which is
the harshest outcome: the script must still print the URL and the logins and keep serving."""

import os
import selectors
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """Collect the script's output until `marker` appears (or the script exits, or time runs out)."""
    out, deadline = "", time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while marker not in out and time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            if process.poll() is not None:
                break
            continue
        chunk = os.read(process.stdout.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        out += chunk
    return out


def test_run_demo_keeps_serving_when_the_demo_does_not_complete(tmp_path, data_dir):
    var = tmp_path / "var"
    (var / "log").mkdir(parents=True)
    (var / "log" / "web.log").write_text("line from an earlier run\n")
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "CELERY_", "SAFESHRINK_", "DJANGO_SETTINGS"))
    }
    env.update(
        {
            "SAFESHRINK_VAR_DIR": str(var),
            "SAFESHRINK_DATA_DIR": str(data_dir),
            "SAFESHRINK_DEMO_MODEL": "tiny",
            "SAFESHRINK_DEMO_TIMEOUT": "1",
            "PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = subprocess.Popen(
        [str(ROOT / "bin" / "run-demo")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = _read_until(process, "Press Ctrl-C", timeout=480)
        assert "Press Ctrl-C" in out, out[-4000:]
        assert "the demo pipeline did not complete" in out
        assert "Traceback" not in out
        assert f"SafeShrink is running at http://127.0.0.1:{port}/" in out and "officer / officer-demo-pass" in out
        time.sleep(1.0)
        assert process.poll() is None, "the script stopped after the demo"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=30) as response:
            assert response.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    web_log = (var / "log" / "web.log").read_text()
    assert web_log.startswith("line from an earlier run\n") and "===== " in web_log
    assert (var / "safeshrink.sqlite3").is_file()
    exchanges = sorted(p.name for p in (var / "broker" / "control").glob("*.exchange"))
    assert "cpu.exchange" in exchanges, f"kombu's exchange tables live with the broker: {exchanges}"
