"""Provenance facts about this process: code version, package versions, hardware."""

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from django.conf import settings

PACKAGES = ("torch", "transformers", "numpy", "django", "celery", "safetensors")


@functools.cache
def code_version() -> dict:
    """The git commit of the running code and whether the tree had uncommitted changes."""
    root = Path(settings.BASE_DIR)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("SAFESHRINK_CODE_VERSION", "unknown"), "dirty": None}
    return {"commit": commit, "dirty": dirty}


@functools.cache
def package_versions() -> dict:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware(device: str, threads: int) -> dict:
    from compression.engine.cpu import compute_platform

    return {
        "host": socket.gethostname(),
        # CPU model, kernel instruction sets and torch's quantized engine (compression/engine/cpu.py).
        **{k: v for k, v in compute_platform(device).items() if k != "device"},
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
    }


def provenance_statement(
    *,
    subject_name: str,
    subject_digest: str,
    build_type: str,
    external_parameters: dict,
    internal_parameters: dict,
    dependencies: list[dict],
    run_id: int,
    started_on: str,
    finished_on: str,
    byproducts: dict,
) -> dict:
    """An in-toto Statement v1 with an SLSA provenance v1 predicate (see DESIGN.md)."""
    code = code_version()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject_name, "digest": {"sha256": subject_digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": external_parameters,
                "internalParameters": internal_parameters,
                "resolvedDependencies": [
                    *dependencies,
                    {
                        "uri": "git+safeshrink",
                        "digest": {"gitCommit": code["commit"]},
                        "annotations": {"dirty": code["dirty"]},
                    },
                ],
            },
            "runDetails": {
                "builder": {"id": f"safeshrink-worker@{socket.gethostname()}"},
                "metadata": {
                    "invocationId": f"compression-run/{run_id}",
                    "startedOn": started_on,
                    "finishedOn": finished_on,
                },
                "byproducts": [{"name": "environment", "content": byproducts}],
            },
        },
    }


def torch_settings() -> tuple[str, int]:
    return settings.SAFESHRINK["DEVICE"], settings.SAFESHRINK["TORCH_THREADS"]


def sign_statement(statement: dict) -> dict | None:
    """The statement as a DSSE envelope signed with the system key (None when no key is configured;
    `setup_signing` creates one, and the exports refuse to run without it)."""
    from ledger.signing import system_key_available, system_private_key
    from trust.dsse import INTOTO_PAYLOAD_TYPE, dsse_sign_json

    if not system_key_available():
        return None
    return dsse_sign_json(statement, system_private_key(), INTOTO_PAYLOAD_TYPE)
