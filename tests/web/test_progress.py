"""Live progress (issue 16): a release's stages with the jobs' own progress, the dashboard's "Running now", the
fragment the release page polls with htmx (and stops polling once nothing moves), role scoping, the API field,
and, in a real browser, the card updating in place without a reload."""

import hashlib
from pathlib import Path

import pytest
from django.conf import settings

from compression.models import CompressionRun, RunStatus
from compression.services.experiments import experiment_create
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun
from governance.models import Release, ReleaseStatus
from governance.progress import (
    STAGE_WEIGHTS,
    JobKind,
    ProgressStage,
    StageStatus,
    release_progress,
    running_jobs_visible_to,
)
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.factories import evaluated_release
from tests.web.browser import SCREENSHOTS, sign_in

UNSAFE = ["hatespeech", "offensive"]
WEIGHT = sum(STAGE_WEIGHTS.values())


def _experiment(owner, base_artifact, name="exp"):
    return experiment_create(
        actor=owner, name=name, base_artifact_id=base_artifact.pk, risk_tier="medium", unsafe_labels=UNSAFE
    )


def _mallory(make_user, tiny_model_dir):
    """Another engineer, who registered the same base model (her experiments use it too)."""
    from compression.services.artifacts import artifact_register

    mallory = make_user("mallory", "engineer")
    artifact_register(actor=mallory, name="tiny", path=str(tiny_model_dir))
    return mallory


def _run(experiment, status=RunStatus.RUNNING, percent=0, stage=""):
    return CompressionRun.objects.create(
        experiment=experiment,
        method="dynamic_int8",
        requested_by=experiment.owner,
        status=status,
        progress_percent=percent,
        progress_stage=stage,
    )


def _evaluation(artifact, suite, tag, *, status=RunStatus.RUNNING, done=(), total=4, percent=0, stage=""):
    return EvaluationRun.objects.create(
        artifact=artifact,
        suite_version=suite,
        config={"tag": tag},
        config_digest=tag * 8,
        requested_by=artifact.created_by,
        status=status,
        chunks_done=list(done),
        chunks_total=total,
        progress_percent=percent,
        progress_stage=stage,
    )


def _evaluating_release(engineer, base_artifact, suite, policy, *, name="exp"):
    """A release evaluating: its baseline 1 of 4 chunks in (25%), its candidate queued. Rows written directly (no
    worker): the run's output is the base artifact itself, which is all the progress reads need."""
    experiment = _experiment(engineer, base_artifact, name)
    run = _run(experiment, status=RunStatus.SUCCEEDED, percent=100, stage="done")
    baseline = _evaluation(base_artifact, suite, f"b{name}", done=[0], percent=25, stage="1 of 4 chunks")
    candidate = _evaluation(base_artifact, suite, f"c{name}", status=RunStatus.QUEUED, total=0)
    return Release.objects.create(
        experiment=experiment,
        compression_run=run,
        candidate=base_artifact,
        candidate_digest=base_artifact.digest,
        suite_version=suite,
        policy=policy,
        status=ReleaseStatus.EVALUATING,
        baseline_evaluation=baseline,
        candidate_evaluation=candidate,
        created_by=engineer,
    )


def _finish(release: Release, zone="green") -> None:
    """Both evaluations succeeded, compared and gated, as the completion task leaves a release."""
    EvaluationRun.objects.filter(pk__in=[release.baseline_evaluation_id, release.candidate_evaluation_id]).update(
        status=RunStatus.SUCCEEDED,
        chunks_done=[0, 1, 2, 3],
        chunks_total=4,
        progress_percent=100,
        progress_stage="done",
    )
    comparison = Comparison.objects.create(
        baseline_run_id=release.baseline_evaluation_id,
        candidate_run_id=release.candidate_evaluation_id,
        status=ComparisonStatus.DONE,
        results={"groups": {}},
    )
    Release.objects.filter(pk=release.pk).update(
        comparison=comparison, gate_zone=zone, gate=[], status=ReleaseStatus.AWAITING_DECISION
    )


def _stages(progress) -> dict:
    return {s.stage: s for s in progress.stages}


# ---- the selector, at each stage of a release that really went through the pipeline


@pytest.mark.django_db(transaction=True)
def test_release_progress_at_each_stage(engineer, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    done = release_progress(release)
    assert done.finished and not done.active and done.current is None and done.overall_percent == 100
    assert [s.stage for s in done.stages] == list(ProgressStage.values)
    assert {s.status for s in done.stages} == {StageStatus.SUCCEEDED}
    assert _stages(done)["gate"].zone == release.gate_zone != ""
    evaluation = release.candidate_evaluation
    assert _stages(done)["candidate_evaluation"].chunks_done == evaluation.chunks_total == len(evaluation.chunks_done)

    # Rewind: the evaluations gone back to a draft that was never evaluated.
    baseline_id, candidate_id = release.baseline_evaluation_id, release.candidate_evaluation_id
    Release.objects.filter(pk=release.pk).update(
        status=ReleaseStatus.DRAFT, baseline_evaluation=None, candidate_evaluation=None, comparison=None, gate_zone=""
    )
    draft = release_progress(Release.objects.get(pk=release.pk))
    stages = _stages(draft)
    assert (
        stages["compression"].status == StageStatus.SUCCEEDED
        and stages["compression"].object_id == release.compression_run_id
    )
    assert stages["baseline_evaluation"].status == StageStatus.PENDING
    assert stages["baseline_evaluation"].progress_percent is None
    assert draft.current.stage == ProgressStage.BASELINE_EVALUATION
    assert draft.overall_percent == STAGE_WEIGHTS[ProgressStage.COMPRESSION] * 100 // WEIGHT
    assert not draft.active and not draft.finished

    # Evaluating: the baseline 3 of 8 chunks in, the candidate still queued.
    EvaluationRun.objects.filter(pk=baseline_id).update(
        status=RunStatus.RUNNING,
        chunks_total=8,
        chunks_done=[0, 2, 5],
        progress_percent=38,
        progress_stage="3 of 8 chunks",
    )
    EvaluationRun.objects.filter(pk=candidate_id).update(
        status=RunStatus.QUEUED, chunks_total=0, chunks_done=[], progress_percent=0, progress_stage=""
    )
    Release.objects.filter(pk=release.pk).update(
        status=ReleaseStatus.EVALUATING, baseline_evaluation_id=baseline_id, candidate_evaluation_id=candidate_id
    )
    running = release_progress(Release.objects.get(pk=release.pk))
    stages = _stages(running)
    base = stages["baseline_evaluation"]
    assert (base.status, base.chunks_done, base.chunks_total, base.progress_percent) == ("running", 3, 8, 38)
    assert base.progress_stage == "3 of 8 chunks" and base.object_id == baseline_id
    assert stages["candidate_evaluation"].status == StageStatus.QUEUED
    assert stages["comparison"].status == stages["gate"].status == StageStatus.PENDING
    assert running.current.stage == ProgressStage.BASELINE_EVALUATION and running.active
    expected = (
        STAGE_WEIGHTS[ProgressStage.COMPRESSION] * 100 + STAGE_WEIGHTS[ProgressStage.BASELINE_EVALUATION] * 38
    ) // WEIGHT
    assert running.overall_percent == expected

    # Both evaluations done: the completion task is comparing and judging the gate (no percent of its own).
    EvaluationRun.objects.filter(pk__in=[baseline_id, candidate_id]).update(
        status=RunStatus.SUCCEEDED, progress_percent=100
    )
    comparing = release_progress(Release.objects.get(pk=release.pk))
    comparison = _stages(comparing)["comparison"]
    assert comparison.status == StageStatus.RUNNING and comparison.progress_percent is None and comparison.moving
    assert comparing.current.stage == ProgressStage.COMPARISON and comparing.active and not comparing.finished
    done_weight = sum(STAGE_WEIGHTS[s] for s in list(ProgressStage)[:3])  # compression and both evaluations
    assert comparing.overall_percent == done_weight * 100 // WEIGHT

    # The candidate's evaluation failed: the release fell back to draft with the reason.
    EvaluationRun.objects.filter(pk=candidate_id).update(
        status=RunStatus.FAILED, failure_reason="worker ran out of memory", progress_percent=50
    )
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.DRAFT, failure_reason="evaluation failed")
    failed = release_progress(Release.objects.get(pk=release.pk))
    candidate = _stages(failed)["candidate_evaluation"]
    assert candidate.status == StageStatus.FAILED and candidate.failure_reason == "worker ran out of memory"
    assert _stages(failed)["comparison"].status == StageStatus.PENDING
    assert failed.current.stage == ProgressStage.CANDIDATE_EVALUATION and not failed.active and not failed.finished


@pytest.mark.django_db
def test_an_external_candidates_compression_stage_is_reported(
    engineer, base_artifact, demo_suite, demo_policy, tmp_path
):
    from tests.governance.external import experiment_for, external_run, int8_output

    experiment = experiment_for(engineer, base_artifact)
    run = external_run(
        engineer, experiment, output=int8_output(engineer, base_artifact, tmp_path), inputs=[base_artifact]
    )
    release = Release.objects.create(
        experiment=experiment,
        external_run=run,
        candidate=run.output_artifact,
        candidate_digest=run.output_artifact.digest,
        suite_version=demo_suite,
        policy=demo_policy,
        created_by=engineer,
    )
    stage = _stages(release_progress(release))["compression"]
    assert (stage.status, stage.progress_percent, stage.object_id) == (StageStatus.REPORTED, 100, run.pk)


# ---- running jobs: the dashboard, role scoping


@pytest.mark.django_db
def test_dashboard_shows_a_running_run_with_its_percent_when_there_are_no_releases(
    client, engineer, make_user, base_artifact, tiny_model_dir
):
    mine = _run(_experiment(engineer, base_artifact), percent=50, stage="quantizing linear layers")
    mallory = _mallory(make_user, tiny_model_dir)
    theirs = _run(_experiment(mallory, base_artifact, name="theirs"), percent=30)
    client.force_login(engineer)
    page = client.get("/").content.decode()
    assert "No releases yet" in page and "Running now" in page and "1 job running now" in page
    row = page.split(f'id="running-compression_run-{mine.pk}"')[1].split("</tr>")[0]
    assert '<progress max="100" value="50">50%</progress> 50%' in row and "quantizing linear layers" in row
    assert f'href="/runs/{mine.pk}/"' in row
    assert f"running-compression_run-{theirs.pk}" not in page  # another engineer's run
    assert 'hx-get="/running/"' in page and 'hx-trigger="every 2s"' in page


@pytest.mark.django_db
def test_running_jobs_are_scoped_by_role(
    engineer, officer, regulator, make_user, base_artifact, demo_suite, demo_policy, tiny_model_dir
):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    mallory = _mallory(make_user, tiny_model_dir)
    theirs = _run(_experiment(mallory, base_artifact, name="theirs"), status=RunStatus.QUEUED)
    _run(_experiment(engineer, base_artifact, name="done"), status=RunStatus.SUCCEEDED, percent=100)

    def keys(user):
        return {(j.kind, j.id) for j in running_jobs_visible_to(user)}

    evaluations = {
        (JobKind.EVALUATION, release.baseline_evaluation_id),
        (JobKind.EVALUATION, release.candidate_evaluation_id),
    }
    assert keys(engineer) == evaluations  # the base artifact is eve's: her experiments use it
    assert keys(mallory) == {(JobKind.COMPRESSION_RUN, theirs.pk)} | evaluations  # hers too
    assert keys(officer) == {(JobKind.COMPRESSION_RUN, theirs.pk)} | evaluations
    assert keys(regulator) == set()
    baseline = next(j for j in running_jobs_visible_to(engineer) if j.id == release.baseline_evaluation_id)
    assert (baseline.chunks_done, baseline.chunks_total, baseline.progress_percent) == (1, 4, 25)
    assert baseline.releases == ((release.pk, "baseline"),)
    # mallory may see the evaluations (they run on an artifact her experiment uses) but not eve's release
    assert next(j for j in running_jobs_visible_to(mallory) if j.kind == JobKind.EVALUATION).releases == ()


@pytest.mark.django_db
def test_a_comparison_under_way_is_a_running_job(engineer, officer, regulator, base_artifact, demo_suite, demo_policy):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    EvaluationRun.objects.filter(pk__in=[release.baseline_evaluation_id, release.candidate_evaluation_id]).update(
        status=RunStatus.SUCCEEDED
    )
    for user in (engineer, officer):
        assert [(j.kind, j.id, j.progress_percent) for j in running_jobs_visible_to(user)] == [
            (JobKind.COMPARISON, release.pk, None)
        ]
    assert running_jobs_visible_to(regulator) == []
    _finish(release)
    assert running_jobs_visible_to(officer) == []


@pytest.mark.django_db
def test_running_fragment_stops_polling_when_nothing_runs(client, engineer, base_artifact):
    run = _run(_experiment(engineer, base_artifact), percent=10)
    client.force_login(engineer)
    moving = client.get("/running/").content.decode()
    assert moving.strip().startswith("<section") and "<html" not in moving
    assert 'hx-trigger="every 2s"' in moving and f"running-compression_run-{run.pk}" in moving
    CompressionRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, progress_percent=100)
    still = client.get("/running/").content.decode()
    assert "hx-trigger" not in still and "Nothing is running any more" in still


@pytest.mark.django_db
def test_dashboard_without_running_jobs_and_for_regulators(client, engineer, regulator):
    client.force_login(engineer)
    page = client.get("/").content.decode()
    assert "Nothing is running now" in page and "hx-trigger" not in page and "job running now" not in page
    client.force_login(regulator)
    assert 'id="running"' not in client.get("/").content.decode()


# ---- the release page's card and the fragment it polls


@pytest.mark.django_db
def test_release_page_includes_the_progress_card_and_htmx_from_local_static(
    client, engineer, base_artifact, demo_suite, demo_policy
):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(engineer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="release-progress"' in page
    assert f'hx-get="/releases/{release.pk}/progress/"' in page and 'hx-trigger="every 2s"' in page
    assert '<script src="/static/js/htmx.min.js" defer></script>' in page and "cdn" not in page.lower()
    assert f'<a href="/releases/{release.pk}/" id="release-progress-refresh">Refresh</a>' in page
    row = page.split('id="progress-baseline_evaluation"')[1].split("</tr>")[0]
    assert "1 of 4" in row and 'value="25"' in row and f"evaluation #{release.baseline_evaluation_id}" in row
    assert f'href="/runs/{release.compression_run_id}/"' in page


@pytest.mark.django_db
def test_fragment_polls_while_running_and_not_once_done(client, engineer, base_artifact, demo_suite, demo_policy):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(engineer)
    running = client.get(f"/releases/{release.pk}/progress/")
    html = running.content.decode()
    assert running.status_code == 200 and html.strip().startswith("<section") and "<html" not in html
    assert 'hx-trigger="every 2s"' in html and 'hx-swap="outerHTML"' in html
    assert "Baseline evaluation" in html and "Refresh the page" not in html

    _finish(release, zone="amber")
    done = client.get(f"/releases/{release.pk}/progress/").content.decode()
    assert "hx-trigger" not in done and "hx-get" not in done
    assert "Every stage has finished" in done and "Refresh the page" in done and "zone-amber" in done
    # the full page of a finished release neither polls nor asks for a refresh
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="release-progress"' in page and "hx-trigger" not in page and "Refresh the page" not in page


@pytest.mark.django_db
def test_fragment_is_scoped_and_a_regulators_card_does_not_poll(
    client, engineer, officer, regulator, make_user, base_artifact, demo_suite, demo_policy
):
    from exports.services.exports import regulator_grant

    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(make_user("mallory", "engineer"))
    assert client.get(f"/releases/{release.pk}/progress/").status_code == 404
    client.force_login(regulator)
    assert client.get(f"/releases/{release.pk}/progress/").status_code == 404
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=release.pk, days=3, reason="audit")
    viewed = LedgerEvent.objects.filter(action="access.viewed", actor_id=regulator.pk)
    before = viewed.count()
    card = client.get(f"/releases/{release.pk}/progress/").content.decode()
    assert 'id="release-progress"' in card and "hx-trigger" not in card  # each poll would be a ledger event
    assert "Refresh" in card and f'href="/runs/{release.compression_run_id}/"' not in card
    assert viewed.count() == before + 1


@pytest.mark.django_db
def test_fragment_answers_get_only(client, engineer, base_artifact, demo_suite, demo_policy):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(engineer)
    assert client.post(f"/releases/{release.pk}/progress/").status_code == 405
    client.logout()
    assert client.get(f"/releases/{release.pk}/progress/").status_code == 302  # to the sign-in page
    # htmx polling after the session ended: reload the whole page (which signs in) rather than swap the form in
    for path in (f"/releases/{release.pk}/progress/", "/running/"):
        poll = client.get(path, headers={"HX-Request": "true"})
        assert (poll.status_code, poll["HX-Refresh"], poll.content) == (204, "true", b"")


# ---- the API


@pytest.mark.django_db
def test_release_api_exposes_the_same_progress(engineer, base_artifact, demo_suite, demo_policy):
    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    body = api_client_for(engineer).get(f"/api/releases/{release.pk}/").json()
    progress = body["progress"]
    assert progress["current_stage"] == "baseline_evaluation" and progress["active"] and not progress["finished"]
    assert progress["overall_percent"] == release_progress(release).overall_percent
    stages = {s["stage"]: s for s in progress["stages"]}
    assert list(stages) == list(ProgressStage.values)
    assert stages["baseline_evaluation"] == {
        "stage": "baseline_evaluation",
        "title": "Baseline evaluation",
        "status": "running",
        "progress_stage": "1 of 4 chunks",
        "progress_percent": 25,
        "chunks_done": 1,
        "chunks_total": 4,
        "object_id": release.baseline_evaluation_id,
        "failure_reason": "",
        "zone": "",
    }
    assert stages["comparison"]["progress_percent"] is None and stages["comparison"]["status"] == "pending"
    _finish(release, zone="red")
    done = api_client_for(engineer).get(f"/api/releases/{release.pk}/").json()["progress"]
    assert done["finished"] and done["current_stage"] is None and done["overall_percent"] == 100
    assert done["stages"][-1]["zone"] == "red"


@pytest.mark.django_db
def test_openapi_documents_the_progress_object():
    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert schemas["ReleaseOutput"]["properties"]["progress"]["allOf"] == [
        {"$ref": "#/components/schemas/ReleaseProgressOutput"}
    ]
    progress = schemas["ReleaseProgressOutput"]
    assert set(progress["required"]) == {"overall_percent", "current_stage", "active", "finished", "stages"}
    stage = schemas["StageProgressOutput"]["properties"]
    assert stage["chunks_done"]["nullable"] and stage["progress_percent"]["maximum"] == 100


def test_htmx_is_vendored_with_its_licence():
    folder = Path(settings.BASE_DIR) / "static" / "js"
    script = (folder / "htmx.min.js").read_bytes()
    assert script.startswith(b"var htmx=function(){")
    # htmx.org 2.0.11's dist/htmx.min.js, as published on npm (tarball sha512 checked when it was vendored)
    assert hashlib.sha256(script).hexdigest() == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert (folder / "htmx.LICENSE").read_text().startswith("Zero-Clause BSD")


# ---- a real browser: the card changes in place, without a reload


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_release_page_updates_progress_without_a_reload(
    browser,  # tests/web/conftest.py: headless Chromium
    live_server,
    engineer,
    base_artifact,
    demo_suite,
    demo_policy,
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    release = _evaluating_release(engineer, base_artifact, demo_suite, demo_policy)
    sign_in(browser, live_server, "eve", "eve-pass-123")
    browser.get(f"{live_server.url}/releases/{release.pk}/")
    assert "1 of 4" in browser.find_element(By.ID, "progress-baseline_evaluation").text
    browser.execute_script("window.progressMarker = 'same page';")  # gone if the page reloads

    EvaluationRun.objects.filter(pk=release.baseline_evaluation_id).update(
        chunks_done=[0, 1, 2], progress_percent=75, progress_stage="3 of 4 chunks"
    )
    WebDriverWait(browser, 20).until(lambda b: "3 of 4" in b.find_element(By.ID, "progress-baseline_evaluation").text)
    assert browser.execute_script("return window.progressMarker") == "same page"
    assert (
        browser.find_element(By.ID, "progress-baseline_evaluation")
        .find_element(By.TAG_NAME, "progress")
        .get_attribute("value")
        == "75"
    )
    browser.save_screenshot(str(SCREENSHOTS / "release-progress-running.png"))

    _finish(release)
    WebDriverWait(browser, 20).until(
        lambda b: "Every stage has finished" in b.find_element(By.ID, "release-progress").text
    )
    card = browser.find_element(By.ID, "release-progress")
    assert card.get_attribute("hx-trigger") is None  # polling has stopped
    assert "Refresh the page" in card.text
    assert browser.execute_script("return window.progressMarker") == "same page"
    browser.save_screenshot(str(SCREENSHOTS / "release-progress-done.png"))
