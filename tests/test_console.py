"""What a new user sees on the console: no import noise from torch, torchao or triton."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (
    "import django; django.setup(); import torchao; from torchao.quantization import quantize_; "
    "import compression.engine.quantize; print('imported')"
)
NOISE = ("Failed to load", "Detected no triton", "is an Enum subclass")


def _import_torchao(level: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DJANGO_LOG_LEVEL": level}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert "imported" in result.stdout
    return result.stdout + result.stderr


def test_torch_import_warnings_stay_off_the_console():
    output = _import_torchao("INFO")
    assert not [line for line in output.splitlines() if any(n in line for n in NOISE)], output


def test_torch_import_warnings_are_logged_once_at_debug_level():
    lines = [line for line in _import_torchao("DEBUG").splitlines() if any(n in line for n in NOISE)]
    assert len(lines) == len(set(lines)), lines
    if importlib.util.find_spec("triton") is None:  # CPU machines: torchao says so at import
        assert sum("Detected no triton" in line for line in lines) == 1, lines
