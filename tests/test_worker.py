"""The end-to-end path through the API with a real `celery worker` process on Redis and PostgreSQL."""

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from compression.models import CompressionRun, ModelArtifact, RunStatus
from governance.models import Release, ReleaseStatus
from governance.selectors import review_pool
from ledger.models import LedgerEvent
from ledger.verification import ledger_verify
from tests.conftest import require_service

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
CELERY = [sys.executable, "-m", "celery", "-A", "config"]


def _wait_for(predicate, *, timeout: float, what: str, log: Path | None = None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text()[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


class Celery:
    """Real `celery worker` and `celery beat` subprocesses, each in its own process group (so a test
    can kill a worker's parent and pool children together); all stopped at teardown."""

    def __init__(self, settings, tmp_path: Path):
        db = connection.settings_dict
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "SAFESHRINK_ARTIFACT_ROOT": str(settings.SAFESHRINK["ARTIFACT_ROOT"]),
            "PYTHONUNBUFFERED": "1",
            "SAFESHRINK_TASKS_EAGER": "false",
            "SAFESHRINK_SYSTEM_KEY": str(settings.SAFESHRINK["SYSTEM_KEY"]),
            "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(settings.SAFESHRINK["SYSTEM_PUBLIC_KEY"]),
        }
        self.processes: list[subprocess.Popen] = []
        self.started = 0

    def purge(self) -> None:
        subprocess.run([*CELERY, "purge", "-f"], cwd=ROOT, env=self.env, check=True, capture_output=True, timeout=120)

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        self.started += 1
        log = self.tmp_path / f"{name}-{self.started}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [*CELERY, *args], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process, log

    def worker(self) -> tuple[subprocess.Popen, Path]:
        process, log = self._spawn(
            "worker",
            [
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test-{os.getpid()}-{self.started + 1}@%h",
            ],
        )
        _wait_for(lambda: "ready" in log.read_text(), timeout=120, what="the worker to start", log=log)
        return process, log

    def beat(self) -> tuple[subprocess.Popen, Path]:
        return self._spawn(
            "beat",
            [
                "beat",
                "--loglevel=INFO",
                "--max-interval=1",
                "--schedule",
                str(self.tmp_path / f"beat-schedule-{self.started + 1}"),
            ],
        )

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the whole process group: the worker's parent and its pool children, mid-task."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


@pytest.fixture
def celery(settings, tmp_path):
    require_service("postgres")
    require_service("redis")
    from config.celery import app

    processes = Celery(settings, tmp_path)
    processes.purge()
    app.conf.task_always_eager = False
    try:
        yield processes
    finally:
        app.conf.task_always_eager = True
        processes.stop_all()


@pytest.fixture
def worker(celery):
    return celery.worker()[1]


def test_pipeline_runs_on_a_real_worker_and_a_second_delivery_does_nothing(
    worker, engineer_api, tiny_model_dir, demo_suite, demo_policy, settings
):
    from compression.tasks import execute_compression_run

    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_ROOTS": [tiny_model_dir.parent]}  # the API imports only there
    artifact = engineer_api.post("/api/artifacts/", {"name": "tiny", "path": str(tiny_model_dir)}, format="json").json()
    experiment = engineer_api.post(
        "/api/experiments/",
        {"name": "on a worker", "base_artifact": artifact["id"], "unsafe_labels": ["hatespeech", "offensive"]},
        format="json",
    ).json()
    r = engineer_api.post(f"/api/experiments/{experiment['id']}/runs/", {"method": "dynamic_int8"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    run_id = r.json()["id"]
    run = _wait_for(
        lambda: (x := CompressionRun.objects.get(pk=run_id)).is_terminal and x,
        timeout=120,
        what="the compression run",
        log=worker,
    )
    assert run.status == RunStatus.SUCCEEDED, (run.failure_code, run.failure_reason, worker.read_text()[-3000:])
    assert run.attempts == 1

    # The broker delivers the same task again (acks_late makes this possible): no duplicate work.
    execute_compression_run.delay(run_id)
    _wait_for(
        lambda: worker.read_text().count("compression.execute_run") >= 4,
        timeout=60,
        what="the second delivery to finish",
    )
    assert ModelArtifact.objects.count() == 2
    assert LedgerEvent.objects.filter(action="run.succeeded", object_id=str(run_id)).count() == 1
    assert CompressionRun.objects.get(pk=run_id).attempts == 1

    release = engineer_api.post(
        "/api/releases/",
        {"compression_run": run_id, "suite_version": demo_suite.pk, "policy": demo_policy.pk},
        format="json",
    ).json()
    r = engineer_api.post(f"/api/releases/{release['id']}/evaluate/", {}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "evaluating"
    final = _wait_for(
        lambda: (x := Release.objects.get(pk=release["id"])).status != ReleaseStatus.EVALUATING and x,
        timeout=180,
        what="the release evaluation",
        log=worker,
    )
    # Green or red: awaiting a decision; amber: in blind review first, when a flip holds to be reviewed.
    assert final.status in (ReleaseStatus.AWAITING_DECISION, ReleaseStatus.IN_REVIEW), (
        final.failure_reason,
        worker.read_text()[-3000:],
    )
    reviewable = bool(review_pool(final.comparison)[0])
    assert (final.status == ReleaseStatus.IN_REVIEW) == (final.gate_zone == "amber" and reviewable)
    assert final.gate_zone in ("green", "amber", "red") and final.comparison_id
    assert ledger_verify().ok


def test_killed_worker_mid_evaluation_is_recovered_by_beat(celery, engineer, base_artifact, demo_suite, demo_policy):
    """Kill a worker's whole process group mid-evaluation and lose every queued message: the restarted
    worker and beat re-enqueue the orphaned chunks once the lease expires, the last chunk completes the
    release, and nobody sends anything by hand."""
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from config.celery import app
    from evaluations.models import EvaluationRun, Prediction
    from evaluations.services.prediction_files import evaluation_predictions
    from governance.services.releases import release_create, release_start_evaluation

    lease, period, chunk_size = 4, 1, 20  # short lease and period so that the test is quick
    examples = demo_suite.examples.count()
    chunks = math.ceil(examples / chunk_size)
    assert chunks >= 4, "the suite is too small to be part-way through"
    celery.env.update(
        {
            "SAFESHRINK_RUN_LEASE_SECONDS": str(lease),
            "SAFESHRINK_SWEEP_SECONDS": str(period),
            "SAFESHRINK_EVAL_CHUNK_SIZE": str(chunk_size),
        }
    )
    # Compression runs here (eagerly); only the evaluation runs on the worker.
    app.conf.task_always_eager = True
    experiment = experiment_create(
        actor=engineer, name="killed", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    app.conf.task_always_eager = False
    assert CompressionRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    release = release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )

    first, first_log = celery.worker()
    release_start_evaluation(actor=engineer, release_id=release.pk)  # enqueued on commit, to Redis
    release.refresh_from_db()
    run_ids = (release.baseline_evaluation_id, release.candidate_evaluation_id)

    def mid_run():  # two chunks short at least, so that one more finishing before the kill changes nothing
        return any(0 < len(r.chunks_done) < r.chunks_total - 1 for r in EvaluationRun.objects.filter(pk__in=run_ids))

    _wait_for(mid_run, timeout=180, what="an evaluation to be part-way through", log=first_log, interval=0.05)
    celery.kill(first)
    # The chunk in flight died with the worker (acks_late: it stays unacknowledged for the broker's
    # visibility timeout, an hour). Losing every queued message too (the remaining chunks, maybe the
    # second run's start, the first completion attempt) leaves nothing but the beat sweeps to finish.
    celery.purge()
    runs = list(EvaluationRun.objects.filter(pk__in=run_ids))
    assert not all(r.is_terminal for r in runs), "the evaluations finished before the kill"
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.EVALUATING

    killed_at = time.monotonic()
    _, log = celery.worker()
    _, beat_log = celery.beat()
    # Within the lease (the orphaned runs' heartbeats expire) plus one beat period, the chunks are
    # re-enqueued; the allowance on top is for starting the processes and predicting on a busy machine.
    final = _wait_for(
        lambda: (x := Release.objects.get(pk=release.pk)).status != ReleaseStatus.EVALUATING and x,
        timeout=lease + period + 180,
        what="the release to leave evaluating",
        log=log,
    )
    recovered_in = time.monotonic() - killed_at
    assert final.status in (ReleaseStatus.AWAITING_DECISION, ReleaseStatus.IN_REVIEW), (
        final.failure_reason,
        log.read_text()[-3000:],
    )
    assert final.comparison_id and final.gate_zone in ("green", "amber", "red")
    requeued = re.findall(
        r"evaluations\.requeue_orphaned_runs\[[^\]]+\] succeeded in [\d.]+s: \[(\d[\d, ]*)\]", log.read_text()
    )
    assert requeued, f"the recovery did not come from the beat sweep\n{log.read_text()[-3000:]}"
    assert "evaluations.requeue_orphaned_runs" in beat_log.read_text()
    for evaluation in EvaluationRun.objects.filter(pk__in=run_ids):
        assert evaluation.status == RunStatus.SUCCEEDED, (evaluation.failure_code, evaluation.failure_reason)
        assert evaluation.chunks_total == chunks and sorted(evaluation.chunks_done) == list(range(chunks))
        assert not Prediction.objects.filter(run=evaluation).exists()  # a Parquet file per chunk, merged
        ids = evaluation_predictions(evaluation, ["example_id"]).column("example_id").to_pylist()
        assert evaluation.predictions_rows == examples == len(ids) == len(set(ids))
        assert sorted(evaluation.chunk_files) == sorted(str(c) for c in range(chunks))
    assert LedgerEvent.objects.filter(action="release.gated", object_id=str(release.pk)).count() == 1
    assert ledger_verify().ok
    print(f"recovered {recovered_in:.1f} s after the kill (lease {lease} s, beat period {period} s)")
