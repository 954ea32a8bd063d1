"""The end-to-end path through the API with a real `celery worker` process on Redis and PostgreSQL."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from compression.models import CompressionRun, ModelArtifact, RunStatus
from governance.models import Release, ReleaseStatus
from ledger.models import LedgerEvent
from ledger.services import ledger_verify
from tests.conftest import require_service

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]


def _wait_for(predicate, *, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


@pytest.fixture
def worker(settings, tmp_path):
    require_service("postgres")
    require_service("redis")
    from config.celery import app

    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SAFESHRINK_ARTIFACT_ROOT": str(settings.SAFESHRINK["ARTIFACT_ROOT"]),
        "PYTHONUNBUFFERED": "1",
        "SAFESHRINK_TASKS_EAGER": "false",
        "SAFESHRINK_SYSTEM_KEY": str(settings.SAFESHRINK["SYSTEM_KEY"]),
        "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(settings.SAFESHRINK["SYSTEM_PUBLIC_KEY"]),
    }
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    subprocess.run([*celery, "purge", "-f"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*celery, "worker", "--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-gossip",
             "--without-mingle", "--hostname", f"test-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    app.conf.task_always_eager = False
    try:
        _wait_for(lambda: "ready" in log.read_text(), timeout=60, what="the worker to start")
        yield log
    finally:
        app.conf.task_always_eager = True
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_pipeline_runs_on_a_real_worker_and_a_second_delivery_does_nothing(
    worker, engineer_api, tiny_model_dir, demo_suite, demo_policy
):
    from compression.tasks import execute_compression_run

    artifact = engineer_api.post("/api/artifacts/", {"name": "tiny", "path": str(tiny_model_dir)}, format="json").json()
    experiment = engineer_api.post("/api/experiments/", {"name": "on a worker", "base_artifact": artifact["id"],
                                                         "unsafe_labels": ["hatespeech", "offensive"]},
                                   format="json").json()
    r = engineer_api.post(f"/api/experiments/{experiment['id']}/runs/", {"method": "dynamic_int8"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    run_id = r.json()["id"]
    run = _wait_for(lambda: (x := CompressionRun.objects.get(pk=run_id)).is_terminal and x, timeout=120,
                    what="the compression run", log=worker)
    assert run.status == RunStatus.SUCCEEDED, (run.failure_code, run.failure_reason, worker.read_text()[-3000:])
    assert run.attempts == 1

    # The broker delivers the same task again (acks_late makes this possible): no duplicate work.
    execute_compression_run.delay(run_id)
    _wait_for(lambda: worker.read_text().count("compression.execute_run") >= 4, timeout=60,
              what="the second delivery to finish")
    assert ModelArtifact.objects.count() == 2
    assert LedgerEvent.objects.filter(action="run.succeeded", object_id=str(run_id)).count() == 1
    assert CompressionRun.objects.get(pk=run_id).attempts == 1

    release = engineer_api.post("/api/releases/", {"compression_run": run_id, "suite_version": demo_suite.pk,
                                                   "policy": demo_policy.pk}, format="json").json()
    r = engineer_api.post(f"/api/releases/{release['id']}/evaluate/", {}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "evaluating"
    final = _wait_for(
        lambda: (x := Release.objects.get(pk=release["id"])).status != ReleaseStatus.EVALUATING and x,
        timeout=180, what="the release evaluation", log=worker,
    )
    # Green or red: awaiting a decision; amber: in blind review first.
    assert final.status in (ReleaseStatus.AWAITING_DECISION, ReleaseStatus.IN_REVIEW), (
        final.failure_reason, worker.read_text()[-3000:])
    assert (final.status == ReleaseStatus.IN_REVIEW) == (final.gate_zone == "amber")
    assert final.gate_zone in ("green", "amber", "red") and final.comparison_id
    assert ledger_verify().ok
