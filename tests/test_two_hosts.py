"""Several hosts (issue 17, item 4): two worker "hosts", each its own process group with its own artifact
folder, share PostgreSQL, the broker (Redis) and a real S3-compatible server process (moto's standalone
server). A compression runs on host A and its release's evaluation on host B, which fetches every artifact
from the bucket and verifies its digest; then host B is killed mid-evaluation and host A, through the run
lease and beat's sweep, finishes the work.

Which host takes a task is steered the way an operator would, by which queues each worker consumes (Celery's
remote control: add_consumer / cancel_consumer); the code routes by device as always (both hosts are cpu).
Host B reserves 4 messages ahead (--prefetch-multiplier 4; chunks of the tiny model take a tenth of a second, so
a worker holding one at a time would often die holding none): when it dies, the chunks it held are unacknowledged
for the broker's visibility timeout (an hour), and only the lease and the sweep bring them back.
"""

import hashlib
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compression.engine.manifest import manifest_digest
from compression.models import CompressionRun, ModelArtifact, RunStatus, WorkerHeartbeat
from governance.models import Release, ReleaseStatus
from ledger.models import LedgerEvent
from ledger.verification import ledger_verify
from tests.conftest import _reachable, require_service
from tests.test_worker import Celery, _wait_for

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
BUCKET = "safeshrink-two-hosts"
PREFIX = "artifacts"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
# A short lease and sweep period so that the recovery is quick, the lease long enough that it does not lapse
# between two chunks on a busy machine (then the sweep would re-send chunks before the kill); 8 examples a chunk.
LEASE, SWEEP, CHUNK = 6, 1, 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_server(tmp_path, monkeypatch, settings):
    """moto's standalone S3 server as a subprocess, with an empty bucket; this process (the web) uses it as
    the shared artifact storage. Yields (endpoint URL, boto3 client)."""
    import boto3

    require_service("postgres")  # first: the hosts share this process's database and broker
    require_service("redis")
    port = _free_port()
    log = tmp_path / "moto.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(
            lambda: server.poll() is not None or _reachable("127.0.0.1", port), timeout=60, what="moto_server", log=log
        )
        assert server.poll() is None, f"moto_server exited\n{log.read_text()[-3000:]}"
        for name, value in AWS_ENV.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {
            **settings.STORAGES,
            "artifacts": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "endpoint_url": endpoint,
                    "region_name": "us-east-1",
                    "location": PREFIX,
                },
            },
        }
        settings.SAFESHRINK = {**settings.SAFESHRINK, "ARTIFACT_STORAGE": "artifacts"}
        yield endpoint, client
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


class Host:
    """One worker host: a `celery worker` in its own process group with its own artifact folder, sharing the
    database, the broker and the bucket (its settings come from the environment, as on a real machine)."""

    def __init__(
        self, name: str, settings, tmp_path: Path, endpoint: str, *, queues: str, beat: bool, prefetch: int = 1
    ):
        self.folder = tmp_path / name
        self.folder.mkdir()
        self.root = self.folder / "artifacts"
        self.hostname = f"{name}-{os.getpid()}@{socket.gethostname()}"
        self.celery = Celery(settings, self.folder)
        self.celery.env.update(
            {
                **AWS_ENV,
                "SAFESHRINK_ARTIFACT_ROOT": str(self.root),
                "SAFESHRINK_ARTIFACT_S3_BUCKET": BUCKET,
                "SAFESHRINK_ARTIFACT_S3_ENDPOINT_URL": endpoint,
                "SAFESHRINK_ARTIFACT_S3_REGION": "us-east-1",
                "SAFESHRINK_ARTIFACT_S3_PREFIX": PREFIX,
                "SAFESHRINK_RUN_LEASE_SECONDS": str(LEASE),
                "SAFESHRINK_SWEEP_SECONDS": str(SWEEP),
                "SAFESHRINK_EVAL_CHUNK_SIZE": str(CHUNK),
            }
        )
        self.args = ["worker", "-Q", queues, "--pool=prefork", "--concurrency=1", "--loglevel=INFO"]
        self.args += ["--without-gossip", "--without-mingle", "--hostname", self.hostname]
        self.args += ["--prefetch-multiplier", str(prefetch)]
        if beat:  # beat inside this host's process group (its sweeps go to the cpu queue)
            self.args += ["--beat", "--schedule", str(self.folder / "beat-schedule")]

    def start(self) -> None:
        self.process, self.log = self.celery._spawn("worker", self.args)

    def text(self) -> str:
        return self.log.read_text()

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.hostname} exited\n{self.text()[-3000:]}")
        return " ready." in self.text()

    def consume(self, queue: str, *, start: bool) -> None:
        """Start or stop consuming `queue` (Celery's remote control, answered by this worker)."""
        from config.celery import app

        command = app.control.add_consumer if start else app.control.cancel_consumer
        replies = command(queue, destination=[self.hostname], reply=True, timeout=10)
        assert [list(r) for r in replies] == [[self.hostname]], (queue, start, replies)

    def succeeded(self, task: str) -> int:
        return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] succeeded", self.text()))


def _objects(client) -> set[str]:
    keys, token = set(), None
    while True:
        page = client.list_objects_v2(Bucket=BUCKET, **({"ContinuationToken": token} if token else {}))
        keys |= {item["Key"] for item in page.get("Contents", [])}
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def _published(client, artifact: ModelArtifact) -> bool:
    keys = _objects(client)
    files = {f"{PREFIX}/{artifact.digest}/{entry['path']}" for entry in artifact.manifest}
    return f"{PREFIX}/{artifact.digest}.manifest.json" in keys and files <= keys


def _fetched_and_verified(host: Host, artifact: ModelArtifact) -> None:
    """The host fetched the artifact from the bucket (its store's receipt, written only after the digest
    check passed) and its copy still hashes to the digest (checked again here, independently)."""
    from compression.services.artifacts import artifact_fetch_receipt

    receipt = _on_machine(host.root, lambda: artifact_fetch_receipt(artifact.digest))
    assert receipt is not None, f"{host.hostname} has no fetch receipt for {artifact.name}"
    assert receipt["digest"] == artifact.digest and receipt["files"] == len(artifact.manifest)
    assert manifest_digest(host.root / artifact.digest) == artifact.digest


def _on_machine(root: Path, read):
    """Run `read` in this process as if on the machine whose store is `root`."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(SAFESHRINK={**settings.SAFESHRINK, "ARTIFACT_ROOT": root}):
        return read()


@pytest.fixture
def small_suite(engineer, data_dir):
    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, demo_suite_rows
    from evaluations.services.suites import ExampleRow, suite_version_import

    rows = [ExampleRow(**r) for r in demo_suite_rows(data_dir, routine=24, edge=16, adversarial=8, seed=3)]
    return suite_version_import(
        actor=engineer, suite_name="two hosts", rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )


def test_a_compression_on_one_host_is_evaluated_on_another_which_dies_and_the_first_finishes(
    s3_server, settings, tmp_path, engineer, engineer_api, tiny_model_dir, small_suite, demo_policy
):
    from compression.services.artifacts import artifact_fetch_receipt, artifact_register
    from compression.services.blobs import blob_read
    from compression.services.experiments import experiment_create
    from config.celery import app
    from evaluations.models import EvaluationRun, Prediction
    from evaluations.services.prediction_files import evaluation_predictions
    from evaluations.services.runs import evaluation_config, evaluation_run_enqueue, evaluation_run_request
    from governance.services.releases import release_create, release_start_evaluation

    endpoint, client = s3_server
    started = time.monotonic()
    examples = small_suite.example_count
    chunks = math.ceil(examples / CHUNK)
    assert chunks >= 4, "too few chunks to stop part-way through"

    # This process is the web: it registers the base model, which is published to the bucket.
    base = artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))
    assert _published(client, base)
    experiment = experiment_create(
        actor=engineer, name="two hosts", base_artifact_id=base.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    app.conf.task_always_eager = False
    a = b = None
    try:
        a = Host("host-a", settings, tmp_path, endpoint, queues="cpu,io", beat=True)
        b = Host("host-b", settings, tmp_path, endpoint, queues="io", beat=False, prefetch=4)  # cpu when told
        a.celery.purge()
        a.start()
        b.start()
        _wait_for(lambda: a.ready() and b.ready(), timeout=180, what="both hosts to start", log=a.log)
        _wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=60, what="both heartbeats", log=b.log)
        assert {r.hostname: r.queues for r in WorkerHeartbeat.objects.all()} == {
            a.hostname: ["cpu", "io"],
            b.hostname: ["io"],
        }

        # 1. The compression runs on host A (the only cpu worker): it fetches the base and publishes its output.
        r = engineer_api.post(
            f"/api/experiments/{experiment.pk}/runs/", {"method": "dynamic_int8", "device": "cpu"}, format="json"
        )
        assert r.status_code == 202, r.json()
        run = _wait_for(
            lambda: (x := CompressionRun.objects.get(pk=r.json()["id"])).is_terminal and x,
            timeout=120,
            what="the compression run on host A",
            log=a.log,
        )
        assert run.status == RunStatus.SUCCEEDED, (run.failure_code, run.failure_reason, a.text()[-3000:])
        assert run.device == "cpu" and a.succeeded("compression.execute_run") == 1
        assert b.succeeded("compression.execute_run") == 0
        candidate = run.output_artifact
        _fetched_and_verified(a, base)
        assert _on_machine(a.root, lambda: artifact_fetch_receipt(candidate.digest)) is None  # made on A
        assert manifest_digest(a.root / candidate.digest) == candidate.digest
        assert _published(client, candidate)

        # 2. Host B takes the cpu queue over; the release's evaluations and comparison run there.
        a.consume("cpu", start=False)
        b.consume("cpu", start=True)
        a_chunks = a.succeeded("evaluations.evaluate_chunk")
        release = release_create(
            actor=engineer, compression_run_id=run.pk, suite_version_id=small_suite.pk, policy_id=demo_policy.pk
        )
        release_start_evaluation(actor=engineer, release_id=release.pk)
        gated = _wait_for(
            lambda: (x := Release.objects.get(pk=release.pk)).status != ReleaseStatus.EVALUATING and x,
            timeout=180,
            what="the release evaluated on host B",
            log=b.log,
        )
        assert gated.comparison_id and gated.gate_zone in ("green", "amber", "red"), (gated.failure_reason, b.text())
        assert b.succeeded("evaluations.evaluate_chunk") >= 2 * chunks  # more if a lapsed lease re-sent one
        assert a.succeeded("evaluations.evaluate_chunk") == a_chunks == 0
        for artifact in (base, candidate):  # every artifact host B used came from the bucket, digest verified
            _fetched_and_verified(b, artifact)
        print(f"compressed on A, evaluated on B: {time.monotonic() - started:.1f} s")

        # 3. A second evaluation, on host B alone; B's whole process group is killed once a chunk is done.
        config = evaluation_config(unsafe_labels=experiment.unsafe_labels, stability_seed=7)
        evaluation = evaluation_run_request(
            actor=engineer, artifact=candidate, suite_version=small_suite, config=config
        )
        evaluation_run_enqueue(evaluation.pk)
        part_way = _wait_for(
            lambda: (x := EvaluationRun.objects.get(pk=evaluation.pk)).chunks_done and x,
            timeout=120,
            what="host B to finish a chunk",
            log=b.log,
            interval=0.05,
        )
        b.celery.kill(b.process)
        killed_at, done_on_b = time.monotonic(), EvaluationRun.objects.get(pk=evaluation.pk).chunks_done
        done_at_kill = len(done_on_b)
        assert part_way.chunks_total == chunks and 0 < done_at_kill < chunks, done_at_kill
        a_chunks = a.succeeded("evaluations.evaluate_chunk")
        a.consume("cpu", start=True)  # host A is free again: the queued chunks, then what the sweep re-sends

        final = _wait_for(
            lambda: (x := EvaluationRun.objects.get(pk=evaluation.pk)).is_terminal and x,
            timeout=LEASE + SWEEP + 120,
            what="host A to finish the evaluation",
            log=a.log,
        )
        recovered_in = time.monotonic() - killed_at
        assert final.status == RunStatus.SUCCEEDED, (final.failure_code, final.failure_reason, a.text()[-3000:])
        assert sorted(final.chunks_done) == list(range(chunks)) and sorted(map(int, final.chunk_timings)) == list(
            range(chunks)
        )
        assert final.metrics and final.metrics["overall"]["n"] == examples, final.metrics.get("overall")
        # The predictions are Parquet blobs: one per chunk, merged into one for the run, all in the bucket.
        data = blob_read(final.predictions_digest)  # fetched from the bucket by this process, hash checked
        assert hashlib.sha256(data).hexdigest() == final.predictions_digest
        ids = evaluation_predictions(final, ["example_id"]).column("example_id").to_pylist()
        assert final.predictions_rows == examples == len(ids) == len(set(ids)), (final.predictions_rows, ids)
        assert sorted(map(int, final.chunk_files)) == list(range(chunks)), final.chunk_files
        assert not Prediction.objects.filter(run=final).exists()
        keys = _objects(client)
        for chunk, entry in final.chunk_files.items():
            assert f"{PREFIX}/blobs/{entry['digest']}" in keys, (chunk, entry)
        for chunk in done_on_b:  # host A merged the files host B wrote: fetched from the bucket, hash checked
            digest = final.chunk_files[str(chunk)]["digest"]
            assert hashlib.sha256((a.root / "blobs" / digest).read_bytes()).hexdigest() == digest, chunk
        assert LedgerEvent.objects.filter(action="evaluation.succeeded", object_id=str(final.pk)).count() == 1
        # Host A did the rest, including the chunk that died with host B, which only the sweep re-sent.
        done_on_a = a.succeeded("evaluations.evaluate_chunk") - a_chunks
        assert done_on_a >= chunks - done_at_kill, (done_on_a, done_at_kill, a.text()[-3000:])
        sweep = r"evaluations\.requeue_orphaned_runs\[[^\]]+\] succeeded in [\d.]+s: \[([\d, ]+)\]"
        resent = {host.hostname: re.findall(sweep, host.text()) for host in (a, b)}
        assert any(str(final.pk) in found.split(", ") for found in resent[a.hostname]), resent
        verified = ledger_verify()
        assert verified.ok, verified
        print(f"host B killed after {done_at_kill}/{chunks} chunks; host A finished {recovered_in:.1f} s later")
        print(f"whole test: {time.monotonic() - started:.1f} s")
    finally:
        app.conf.task_always_eager = True
        for host in (a, b):
            if host is not None:
                host.celery.stop_all()
