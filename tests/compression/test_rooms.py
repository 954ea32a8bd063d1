"""The compression app's rooms: one definition of each vocabulary, torch-free modules the web may import."""

import subprocess
import sys
from pathlib import Path

import compression.services.data
from compression.engine.formats import ARTIFACT_FORMATS
from compression.engine.methods import METHOD_DATA, SUPPORTED_METHODS
from compression.models import ArtifactFormat

ROOT = Path(__file__).resolve().parents[2]


def test_method_data_is_defined_once_for_every_method():
    assert set(METHOD_DATA) == set(SUPPORTED_METHODS)
    assert {m: f for m, f in METHOD_DATA.items() if f} == {"structured_prune": ("calibration",), "distill": ("train",)}
    assert not hasattr(compression.services.data, "METHOD_DATA")


def test_the_artifact_format_choices_are_the_engines_formats():
    assert sorted(ArtifactFormat.values) == sorted(ARTIFACT_FORMATS)


def test_the_modules_the_web_process_uses_import_no_torch():
    code = (
        "import sys, compression.engine, compression.engine.formats, compression.engine.capabilities, "
        "compression.engine.manifest, trust.canonical; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_dead_entry_points_are_gone():
    from compression.engine import quantize

    assert not hasattr(quantize, "compress")  # compression.engine.compress is the one entry point
    assert not (ROOT / "compression" / "engine" / "loading.py").read_text().count("def count_parameters")
