import threading

import pytest
from django.db import connection

from accounts.errors import Conflict, PermissionDenied, ValidationFailed
from governance.models import Decision, Release, ReleaseStatus
from governance.services.releases import release_decide
from ledger.models import LedgerEvent
from tests.conftest import require_service
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def release(engineer, base_artifact, demo_suite, demo_policy):
    return evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )


def _unchanged(release: Release) -> None:
    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.status, fresh.version) == (release.status, release.version)


def test_evaluated_release_awaits_a_decision_with_pinned_policy(release, demo_policy):
    assert release.status == ReleaseStatus.AWAITING_DECISION
    assert release.policy_id == demo_policy.pk and release.comparison_id is not None
    assert len(release.gate) == demo_policy.rules.count()


def test_four_eyes_for_high_risk(engineer, officer, officer2, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(
        engineer=engineer,
        base_artifact=base_artifact,
        suite=demo_suite,
        policy=demo_policy,
        risk_tier="high",
        force_zone="green",
    )
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="first")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION
    with pytest.raises(Conflict, match="already approved"):
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="again")
    release_decide(actor=officer2, release_id=release.pk, kind="approve", rationale="second")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert Decision.objects.filter(kind="approve").count() == 2


def test_red_gate_blocks_approval_but_allows_halt(engineer, officer, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="red"
    )
    with pytest.raises(Conflict) as refused:
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="ship it")
    assert refused.value.code == "gate_red"
    _unchanged(release)
    release_decide(actor=officer, release_id=release.pk, kind="halt", rationale="red zone")
    halted = Release.objects.get(pk=release.pk)
    assert (halted.status, halted.status_before_halt) == (ReleaseStatus.HALTED, ReleaseStatus.AWAITING_DECISION)


def test_separation_of_duties(release, engineer):
    engineer.role = "officer"  # promoted after running the experiment: still may not decide on it
    engineer.save()
    with pytest.raises(PermissionDenied) as refused:
        release_decide(actor=engineer, release_id=release.pk, kind="approve", rationale="my own")
    assert refused.value.code == "separation_of_duties"
    _unchanged(release)
    assert Decision.objects.count() == 0
    denied = LedgerEvent.objects.filter(action="access.denied").last()
    assert denied.actor_username == engineer.username and "separation_of_duties" in denied.payload_json


def test_refusals_change_nothing(release, officer, regulator):
    with pytest.raises(PermissionDenied):
        release_decide(actor=regulator, release_id=release.pk, kind="approve", rationale="x")
    with pytest.raises(ValidationFailed):
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="   ")
    with pytest.raises(Conflict) as stale:
        release_decide(
            actor=officer, release_id=release.pk, kind="reject", rationale="x", expected_version=release.version - 1
        )
    assert stale.value.code == "stale_version"
    _unchanged(release)
    assert Decision.objects.count() == 0


def test_halted_release_cannot_be_approved(release, officer, officer2):
    release_decide(actor=officer, release_id=release.pk, kind="halt", rationale="incident")
    with pytest.raises(Conflict):
        release_decide(actor=officer2, release_id=release.pk, kind="approve", rationale="x")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.HALTED


@pytest.mark.postgres
def test_concurrent_decisions_make_exactly_one_transition(release, officer, officer2, make_officer):
    require_service("postgres")
    officers = [officer, officer2] + [make_officer(f"officer{i}") for i in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(officers))

    def attempt(user, kind):
        try:
            barrier.wait()
            release_decide(
                actor=user, release_id=release.pk, kind=kind, rationale="race", expected_version=release.version
            )
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=(u, "approve" if i % 2 else "halt")) for i, u in enumerate(officers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * (len(officers) - 1) + ["ok"]
    assert Release.objects.get(pk=release.pk).version == release.version + 1
    assert Decision.objects.count() == 1


# Completion of a release's evaluation: driven by the last chunk, swept by beat, idempotent.


@pytest.fixture
def draft_release(settings, engineer, base_artifact, demo_suite, demo_policy):
    """A release ready to evaluate; evaluations in chunks of 50 (several chunks per run)."""
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create

    settings.SAFESHRINK = {**settings.SAFESHRINK, "EVAL_CHUNK_SIZE": 50}
    experiment = experiment_create(
        actor=engineer, name="completion", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    return release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )


def _no_start_attempt(monkeypatch) -> None:
    """Drop the one completion attempt enqueued when the evaluation starts."""
    from governance.tasks import complete_release_evaluation

    monkeypatch.setattr(complete_release_evaluation, "apply_async", lambda *args, **kwargs: None)


def _events(action: str, release) -> int:
    return LedgerEvent.objects.filter(action=action, object_type="release", object_id=str(release.pk)).count()


def _gated(release) -> Release:
    fresh = Release.objects.get(pk=release.pk)
    assert fresh.status in (ReleaseStatus.AWAITING_DECISION, ReleaseStatus.IN_REVIEW), fresh.failure_reason
    assert fresh.comparison_id and _events("release.gated", release) == 1
    return fresh


def test_beat_schedules_the_recovery_sweeps(settings):
    from config.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscover every tasks module
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"evaluations.requeue_orphaned_runs", "governance.complete_stuck_releases"} <= tasks
    assert tasks <= set(app.tasks), "a scheduled task name is not registered"


def test_the_last_chunk_completes_the_release(monkeypatch, draft_release, engineer):
    from governance.services.releases import release_start_evaluation

    _no_start_attempt(monkeypatch)
    release_start_evaluation(actor=engineer, release_id=draft_release.pk)  # eager: every chunk runs here
    release = _gated(draft_release)
    assert release.baseline_evaluation.chunks_total > 1


def test_sweep_completes_a_release_whose_completion_was_lost(monkeypatch, settings, draft_release, engineer):
    import datetime as dt

    from django.utils import timezone

    from governance.services.completion import releases_complete_stuck
    from governance.services.releases import release_start_evaluation

    _no_start_attempt(monkeypatch)
    monkeypatch.setattr("evaluations.services.runs._announce_finished", lambda run_id: None)
    release_start_evaluation(actor=engineer, release_id=draft_release.pk)
    release = Release.objects.get(pk=draft_release.pk)
    assert release.status == ReleaseStatus.EVALUATING
    assert release.baseline_evaluation.is_terminal and release.candidate_evaluation.is_terminal
    later = timezone.now() + dt.timedelta(seconds=settings.SAFESHRINK["SWEEP_SECONDS"] + 1)
    assert releases_complete_stuck(now=timezone.now() - dt.timedelta(days=1)) == []  # not stuck for long yet
    assert releases_complete_stuck(now=later) == [release.pk]
    version = _gated(release).version
    assert releases_complete_stuck(now=later) == []  # done once
    assert Release.objects.get(pk=release.pk).version == version and _events("release.gated", release) == 1


def test_completion_delivered_twice_does_its_work_once(monkeypatch, draft_release, engineer):
    from governance.services.releases import release_complete_evaluation, release_start_evaluation
    from governance.tasks import complete_release_evaluation, evaluation_finished

    release_start_evaluation(actor=engineer, release_id=draft_release.pk)
    release = _gated(draft_release)
    for _ in range(2):  # the announcement of each run and the start's attempt, delivered again
        evaluation_finished(release.baseline_evaluation_id)
        evaluation_finished(release.candidate_evaluation_id)
        complete_release_evaluation(release.pk)
        release_complete_evaluation(release_id=release.pk)
    fresh = _gated(release)
    assert (fresh.status, fresh.version) == (release.status, release.version)
    assert fresh.comparison_id == release.comparison_id
    assert LedgerEvent.objects.filter(action="comparison.computed").count() == 1


@pytest.mark.postgres
def test_concurrent_completions_gate_once(monkeypatch, draft_release, engineer):
    from governance.services.releases import release_complete_evaluation, release_start_evaluation

    require_service("postgres")
    _no_start_attempt(monkeypatch)
    monkeypatch.setattr("evaluations.services.runs._announce_finished", lambda run_id: None)
    release_start_evaluation(actor=engineer, release_id=draft_release.pk)
    version = Release.objects.get(pk=draft_release.pk).version
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def complete() -> None:
        try:
            barrier.wait()
            release_complete_evaluation(release_id=draft_release.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=complete) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _gated(draft_release).version == version + 1
    assert LedgerEvent.objects.filter(action="comparison.computed").count() == 1


def test_orphaned_chunks_are_requeued_and_the_last_completes_the_release(
    monkeypatch, settings, draft_release, engineer
):
    from evaluations.services import runs as runs_service
    from governance.services.releases import release_start_evaluation

    enqueue = runs_service._enqueue_chunks
    with monkeypatch.context() as patch:  # a killed worker lost each run's last chunk
        patch.setattr(runs_service, "_enqueue_chunks", lambda run_id, chunks: enqueue(run_id, list(chunks)[:-1]))
        release_start_evaluation(actor=engineer, release_id=draft_release.pk)
    release = Release.objects.get(pk=draft_release.pk)
    run_ids = sorted([release.baseline_evaluation_id, release.candidate_evaluation_id])
    assert release.status == ReleaseStatus.EVALUATING and not release.baseline_evaluation.is_terminal
    assert runs_service.evaluation_runs_requeue_orphaned() == []  # the lease has not expired
    settings.SAFESHRINK = {**settings.SAFESHRINK, "RUN_LEASE_SECONDS": 0}
    assert sorted(runs_service.evaluation_runs_requeue_orphaned()) == run_ids
    _gated(release)


def test_evaluations_whose_start_was_lost_are_started_again(monkeypatch, settings, draft_release, engineer):
    from evaluations.services.runs import evaluation_runs_requeue_orphaned
    from evaluations.tasks import start_evaluation_run
    from governance.services.releases import release_start_evaluation

    with monkeypatch.context() as patch:  # the start messages died with a worker
        patch.setattr(start_evaluation_run, "apply_async", lambda *args, **kwargs: None)
        release_start_evaluation(actor=engineer, release_id=draft_release.pk)
    release = Release.objects.get(pk=draft_release.pk)
    assert release.status == ReleaseStatus.EVALUATING and release.baseline_evaluation.status == "queued"
    assert evaluation_runs_requeue_orphaned() == []  # requested less than a lease ago
    settings.SAFESHRINK = {**settings.SAFESHRINK, "RUN_LEASE_SECONDS": 0}
    assert sorted(evaluation_runs_requeue_orphaned()) == sorted(
        [release.baseline_evaluation_id, release.candidate_evaluation_id]
    )
    _gated(release)
