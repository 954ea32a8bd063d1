"""Worker pools by hardware class: routes, heartbeats, the request-time device check, and a real worker on
Redis and on RabbitMQ (issue 17, item 1)."""

import datetime as dt
import os
from contextlib import contextmanager
from importlib import metadata

import pytest
from django.utils import timezone

from compression.engine.cpu import cpu_instruction_sets
from compression.models import WorkerHeartbeat
from compression.services.workers import (
    device_worker_check,
    torch_build,
    worker_capabilities,
    worker_heartbeat_record,
    worker_heartbeat_stop,
    worker_is_live,
)
from governance.models import Release, ReleaseStatus
from tests.conftest import AMQP_URL, require_service


def _heartbeat(hostname: str, queues: list[str], *, seconds_ago: float = 0.0) -> WorkerHeartbeat:
    seen = timezone.now() - dt.timedelta(seconds=seconds_ago)
    return WorkerHeartbeat.objects.create(
        hostname=hostname, queues=queues, device="cuda", started_at=seen, last_seen=seen
    )


@pytest.fixture
def draft_release(engineer, base_artifact, demo_suite, demo_policy, django_capture_on_commit_callbacks):
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create

    experiment = experiment_create(
        actor=engineer, name="routing", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    with django_capture_on_commit_callbacks(execute=True):  # the run executes eagerly
        run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    return release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )


@pytest.fixture
def sent(monkeypatch):
    """The queue of every evaluation task enqueued (nothing runs)."""
    from evaluations.tasks import evaluate_chunk, start_evaluation_run
    from governance.tasks import complete_release_evaluation

    calls: list[tuple[str, str]] = []
    for task in (evaluate_chunk, start_evaluation_run, complete_release_evaluation):
        monkeypatch.setattr(
            task, "apply_async", lambda args, queue=None, _name=task.name, **kw: calls.append((_name, queue))
        )
    return calls


# --- routes -------------------------------------------------------------------------------------------------


def test_io_tasks_go_to_the_io_queue_and_the_rest_to_cpu():
    from config.celery import app

    app.loader.import_default_modules()
    route = app.amqp.router.route
    for name in ("exports.build", "governance.deliver_webhook", "evaluations.import_suite_file"):
        assert route({}, name)["queue"].name == "io", name
    for name in ("compression.execute_run", "evaluations.evaluate_chunk", "ledger.seal"):
        assert route({}, name)["queue"].name == "cpu", name
    assert sorted(app.amqp.queues.consume_from) == ["cpu", "io"]  # what a worker without -Q consumes


@pytest.mark.parametrize(("device", "queue"), [("cpu", "cpu"), ("cuda", "gpu"), ("cuda:1", "gpu")])
def test_every_task_of_an_evaluation_goes_to_its_device_queue(device, queue, engineer, base_artifact, demo_suite, sent):
    from evaluations.services.runs import (
        _enqueue_chunks,
        evaluation_config,
        evaluation_run_enqueue,
        evaluation_run_request,
    )

    config = evaluation_config(unsafe_labels=["hatespeech"], profile={"device": device})
    run = evaluation_run_request(actor=engineer, artifact=base_artifact, suite_version=demo_suite, config=config)
    evaluation_run_enqueue(run.pk)
    _enqueue_chunks(run.pk, range(3))
    assert sent == [("evaluations.start_run", queue)] + [("evaluations.evaluate_chunk", queue)] * 3


# --- the request-time check ---------------------------------------------------------------------------------


def test_cpu_is_never_checked_and_cuda_needs_a_live_gpu_worker(db, settings):
    from accounts.errors import ValidationFailed

    assert device_worker_check(device="cpu", field="profile.device") == "cpu"  # no worker at all
    _heartbeat("cpu-only", ["cpu", "io"])
    _heartbeat("stale-gpu", ["gpu"], seconds_ago=settings.SAFESHRINK["WORKER_LIVE_SECONDS"] + 5)
    stopped = _heartbeat("stopped-gpu", ["gpu"])
    worker_heartbeat_stop(hostname=stopped.hostname)
    with pytest.raises(ValidationFailed) as refused:
        device_worker_check(device="cuda", field="profile.device")
    assert refused.value.code == "no_worker_for_device" and "profile.device" in refused.value.details
    assert device_worker_check(device="cuda", field="profile.device", queue_anyway=True) == "gpu"
    _heartbeat("live-gpu", ["gpu"])
    assert device_worker_check(device="cuda:0", field="profile.device") == "gpu"


def test_a_device_no_queue_runs_is_refused_even_with_queue_anyway(db):
    from accounts.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        device_worker_check(device="mps", field="parameters.device", queue_anyway=True)
    assert refused.value.code == "no_worker_for_device" and "parameters.device" in refused.value.details


def test_evaluating_on_cuda_without_a_gpu_worker_is_a_400_unless_queued_anyway(engineer_api, draft_release, sent):
    url = f"/api/releases/{draft_release.pk}/evaluate/"
    r = engineer_api.post(url, {"profile": {"device": "cuda"}}, format="json")
    assert r.status_code == 400, r.json()
    body = r.json()
    assert body["code"] == "no_worker_for_device" and "profile.device" in body["details"], body
    assert Release.objects.get(pk=draft_release.pk).status == ReleaseStatus.DRAFT

    r = engineer_api.post(url, {"profile": {"device": "cuda"}, "queue_anyway": True}, format="json")
    assert r.status_code == 202, r.json()
    assert Release.objects.get(pk=draft_release.pk).status == ReleaseStatus.EVALUATING


def test_evaluating_on_cuda_with_a_live_gpu_worker_is_accepted(engineer_api, draft_release, sent):
    _heartbeat("gpu-1", ["gpu"])
    r = engineer_api.post(f"/api/releases/{draft_release.pk}/evaluate/", {"profile": {"device": "cuda"}}, format="json")
    assert r.status_code == 202, r.json()


# --- compression runs: the requested device picks the queue ---------------------------------------------------


@pytest.fixture
def experiment(engineer, base_artifact):
    from compression.services.experiments import experiment_create

    return experiment_create(
        actor=engineer, name="device", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )


@pytest.fixture
def sent_runs(monkeypatch):
    """The queue of every compression run enqueued (nothing runs)."""
    from compression.tasks import execute_compression_run

    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(
        execute_compression_run, "apply_async", lambda args, queue=None, **kw: calls.append((args[0], queue))
    )
    return calls


@pytest.mark.parametrize(("device", "queue"), [(None, "cpu"), ("cpu", "cpu"), ("cuda", "gpu"), ("cuda:1", "gpu")])
def test_a_compression_run_goes_to_its_devices_queue_and_the_sweep_sends_it_there_again(
    device, queue, engineer, experiment, sent_runs, django_capture_on_commit_callbacks
):
    from compression.models import CompressionRun, RunStatus
    from compression.services.runs import compression_run_request, compression_runs_requeue_orphaned

    with django_capture_on_commit_callbacks(execute=True):
        run = compression_run_request(
            actor=engineer, experiment_id=experiment.pk, method="dynamic_int8", device=device, queue_anyway=True
        )
    assert run.device == (device or "") and sent_runs == [(run.pk, queue)]
    # Its worker died mid-run: the orphan sweep re-delivers it to the same pool.
    CompressionRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=timezone.now() - dt.timedelta(days=1)
    )
    assert compression_runs_requeue_orphaned() == [run.pk]
    assert sent_runs == [(run.pk, queue), (run.pk, queue)]


def test_requesting_a_run_on_cuda_without_a_gpu_worker_is_a_400_unless_queued_anyway(
    engineer_api, experiment, sent_runs, django_capture_on_commit_callbacks
):
    from compression.models import CompressionRun

    url = f"/api/experiments/{experiment.pk}/runs/"

    def post(body: dict):
        with django_capture_on_commit_callbacks(execute=True):  # the enqueue happens on commit
            return engineer_api.post(url, body, format="json")

    r = post({"method": "dynamic_int8", "device": "cuda"})
    assert r.status_code == 400, r.json()
    body = r.json()
    assert body["code"] == "no_worker_for_device" and list(body["details"]) == ["device"], body
    assert not CompressionRun.objects.exists() and sent_runs == []

    r = post({"method": "dynamic_int8", "device": "cuda", "queue_anyway": True})
    assert r.status_code == 202, r.json()
    assert r.json()["device"] == "cuda" and sent_runs == [(r.json()["id"], "gpu")]

    _heartbeat("gpu-1", ["gpu"])
    r = post({"method": "dynamic_int8", "device": "cuda:0"})
    assert r.status_code == 202, r.json()
    assert sent_runs[-1] == (r.json()["id"], "gpu")


@pytest.mark.parametrize(("device", "code"), [("mps", "no_worker_for_device"), ("CUDA 0", "invalid"), ("", "invalid")])
def test_a_device_no_pool_runs_or_not_a_device_is_refused_naming_device(
    device, code, engineer_api, experiment, sent_runs
):
    from compression.models import CompressionRun

    r = engineer_api.post(
        f"/api/experiments/{experiment.pk}/runs/",
        {"method": "dynamic_int8", "device": device, "queue_anyway": True},
        format="json",
    )
    assert r.status_code == 400 and r.json()["code"] == code and "device" in r.json()["details"], r.json()
    assert not CompressionRun.objects.exists() and sent_runs == []


def test_the_worker_runs_the_requested_device_not_its_own(
    engineer, experiment, settings, django_capture_on_commit_callbacks
):
    from compression.services.runs import compression_run_request

    settings.SAFESHRINK = {**settings.SAFESHRINK, "DEVICE": "cuda"}  # this worker's own setting (no GPU here)
    with django_capture_on_commit_callbacks(execute=True):  # runs eagerly
        run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8", device="cpu")
    run.refresh_from_db()
    assert run.status == "succeeded", (run.failure_code, run.failure_reason)
    assert run.provenance["predicate"]["buildDefinition"]["internalParameters"]["device"] == "cpu"


def test_the_stuck_release_sweep_sends_a_gpu_release_to_the_gpu_pool_only_when_one_is_live(
    engineer, draft_release, sent
):
    from evaluations.models import EvaluationRun
    from governance.services.completion import releases_complete_stuck
    from governance.services.releases import release_start_evaluation

    release_start_evaluation(actor=engineer, release_id=draft_release.pk, profile={"device": "cuda"}, queue_anyway=True)
    draft_release.refresh_from_db()
    finished = timezone.now() - dt.timedelta(hours=1)
    EvaluationRun.objects.filter(
        pk__in=[draft_release.baseline_evaluation_id, draft_release.candidate_evaluation_id]
    ).update(status="failed", finished_at=finished)
    sent.clear()
    assert releases_complete_stuck() == [] and sent == []  # no gpu worker: nothing sent, nothing compared here
    _heartbeat("gpu-1", ["gpu"])
    assert releases_complete_stuck() == []
    assert sent == [("governance.complete_release_evaluation", "gpu")]
    assert Release.objects.get(pk=draft_release.pk).status == ReleaseStatus.EVALUATING  # the gpu worker completes it


# --- heartbeats and the admin page ----------------------------------------------------------------------------


def test_a_heartbeat_records_the_workers_capabilities_and_stays_live_until_stopped(db):
    facts = worker_capabilities(["cpu", "io"])
    worker_heartbeat_record(hostname="w1@here", queues=["io", "cpu"], facts=facts)
    row = WorkerHeartbeat.objects.get(hostname="w1@here")
    assert row.queues == ["cpu", "io"] and row.pid == os.getpid()
    assert row.cpu_isa == cpu_instruction_sets() and row.memory_bytes and row.memory_bytes > 0
    assert row.torch_version == metadata.version("torch")
    assert row.cuda_available is None  # not probed on a worker without the gpu queue
    assert worker_is_live(row)
    WorkerHeartbeat.objects.filter(pk=row.pk).update(last_seen=timezone.now() - dt.timedelta(days=1))
    worker_heartbeat_record(hostname="w1@here")  # a later beat touches last_seen
    assert worker_is_live(WorkerHeartbeat.objects.get(pk=row.pk))
    worker_heartbeat_stop(hostname="w1@here")
    assert not worker_is_live(WorkerHeartbeat.objects.get(pk=row.pk))


def test_torch_build_is_read_without_importing_torch_and_matches_torch():
    import torch

    assert torch_build() == (metadata.version("torch"), torch.version.cuda or "")


def test_the_admin_lists_heartbeats_read_only(client, db):
    from accounts.services import user_create

    admin = user_create(actor=None, username="ada", role="admin", password="ada-pass-1234", is_superuser=True)
    _heartbeat("gpu-box@lab", ["gpu"])
    client.force_login(admin)
    page = client.get("/admin/compression/workerheartbeat/")
    assert page.status_code == 200 and "gpu-box@lab" in page.content.decode()
    assert client.get("/admin/compression/workerheartbeat/add/").status_code == 403


# --- a real worker on Redis and on RabbitMQ ---------------------------------------------------------------------


@contextmanager
def _publishing_to(url: str):
    """The test process enqueues to `url` (not eagerly) for the duration."""
    from config.celery import app

    saved = (app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager)
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url  # Celery reads the variable before its setting
    app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager = url, {}, False
    app._after_fork()  # drop the connection and producer pools of the previous broker
    try:
        yield app
    finally:
        app.conf.broker_url, app.conf.broker_transport_options, app.conf.task_always_eager = saved
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app._after_fork()


def _broker_url(kind: str) -> str:
    require_service("postgres")
    require_service(kind)
    return os.environ["CELERY_BROKER_URL"] if kind == "redis" else AMQP_URL


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "broker", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]
)
def test_a_worker_on_each_broker_reports_its_pools_and_runs_an_evaluation(broker, settings, tmp_path, draft_release):
    from compression.tasks import expire_uploads
    from tests.test_worker import Celery, _wait_for

    url = _broker_url(broker)
    celery = Celery(settings, tmp_path)
    celery.env["CELERY_BROKER_URL"] = url
    celery.purge()
    hostname = f"routing-{broker}-{os.getpid()}@%h"
    try:
        _, log = celery._spawn(
            "worker",
            [
                "worker",
                "-Q",
                "cpu,io",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                hostname,
            ],
        )
        row = _wait_for(
            lambda: WorkerHeartbeat.objects.filter(hostname__startswith=f"routing-{broker}-").first(),
            timeout=120,
            what="the worker's heartbeat",
            log=log,
        )
        assert row.queues == ["cpu", "io"] and row.device == "cpu" and row.cpu_isa == cpu_instruction_sets()
        assert row.torch_version == metadata.version("torch") and worker_is_live(row)

        with _publishing_to(url):
            expire_uploads.delay()  # routed to io
            from governance.services.releases import release_start_evaluation

            release_start_evaluation(actor=draft_release.experiment.owner, release_id=draft_release.pk)
        final = _wait_for(
            lambda: (x := Release.objects.get(pk=draft_release.pk)).status != ReleaseStatus.EVALUATING and x,
            timeout=240,
            what="the release evaluation",
            log=log,
        )
        assert final.comparison_id, (final.failure_reason, log.read_text()[-3000:])
        text = log.read_text()
        assert "compression.expire_uploads" in text and "evaluations.evaluate_chunk" in text
    finally:
        celery.stop_all()
    stopped = WorkerHeartbeat.objects.get(pk=row.pk)
    assert stopped.stopped_at is not None and not worker_is_live(stopped)
