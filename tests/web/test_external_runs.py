"""External-run pages (list, detail, create a release from a run) and the release page of an external candidate,
for each role, with Django's test client."""

import pytest

from governance.models import Release, ReleaseStatus
from tests.governance.external import evaluated_external_release, experiment_for, external_run, int8_output

pytestmark = pytest.mark.django_db(transaction=True)


def test_engineer_lists_filters_and_reads_their_runs(client, engineer, make_user, base_artifact, demo_suite, tmp_path):
    experiment = experiment_for(engineer, base_artifact)
    other_experiment = experiment_for(engineer, base_artifact, name="second")
    output = int8_output(engineer, base_artifact, tmp_path)
    done = external_run(engineer, experiment, output=output, metrics={"loss": [0.9, 0.5, 0.25]})
    running = external_run(engineer, other_experiment, finish=False)
    client.force_login(engineer)
    page = client.get("/external-runs/").content.decode()
    assert f"External run #{done.pk}" in page and f"External run #{running.pk}" in page
    assert "Reported — not verified by SafeShrink" in page and 'href="/external-runs/"' in page  # in the navigation
    finished_only = client.get("/external-runs/?status=finished").content.decode()
    assert f"External run #{done.pk}" in finished_only and f"External run #{running.pk}" not in finished_only
    by_experiment = client.get(f"/external-runs/?experiment={other_experiment.pk}").content.decode()
    assert f"External run #{running.pk}" in by_experiment and f"External run #{done.pk}" not in by_experiment
    refused = client.get("/external-runs/?status=bogus")
    assert refused.status_code == 400 and "Unknown status" in refused.content.decode()
    empty = client.get("/external-runs/?status=killed").content.decode()
    assert "No external runs match these filters" in empty

    detail = client.get(f"/external-runs/{done.pk}/").content.decode()
    assert 'id="reported-badge"' in detail and done.run_uuid in detail
    assert "<polyline" in detail and "min 0.25 · max 0.9" in detail  # one chart per reported metric key
    assert "None attached" in detail or "none attached" in detail
    assert 'id="release-form"' in detail  # finished with an output: the owner may release it
    assert 'id="release-form"' not in client.get(f"/external-runs/{running.pk}/").content.decode()

    stranger = make_user("oscar", "engineer")
    client.force_login(stranger)
    assert client.get(f"/external-runs/{done.pk}/").status_code == 404
    assert "No external runs recorded yet" in client.get("/external-runs/").content.decode()


def test_officer_and_regulator_views(client, engineer, officer, regulator, base_artifact, tmp_path):
    run = external_run(engineer, experiment_for(engineer, base_artifact))
    client.force_login(officer)
    assert f"External run #{run.pk}" in client.get("/external-runs/").content.decode()
    detail = client.get(f"/external-runs/{run.pk}/").content.decode()
    assert 'id="reported-badge"' in detail and 'id="release-form"' not in detail  # officers do not propose
    client.force_login(regulator)
    # A role that reads no runs at all is refused before any look-up (403, as /runs/), present or not.
    assert client.get("/external-runs/").status_code == 403
    assert client.get(f"/external-runs/{run.pk}/").status_code == 403
    assert client.get("/external-runs/999999/").status_code == 403


def test_owner_creates_a_release_from_the_run_page_and_the_release_shows_it_reported(
    client, engineer, officer, base_artifact, demo_suite, demo_policy, tmp_path
):
    experiment = experiment_for(engineer, base_artifact)
    run = external_run(
        engineer, experiment, output=int8_output(engineer, base_artifact, tmp_path), inputs=[base_artifact]
    )
    client.force_login(engineer)
    before = Release.objects.count()
    bad = client.post(f"/external-runs/{run.pk}/release/", {"suite_version": "x", "policy": demo_policy.pk})
    assert bad.status_code == 302 and Release.objects.count() == before
    response = client.post(
        f"/external-runs/{run.pk}/release/", {"suite_version": demo_suite.pk, "policy": demo_policy.pk}
    )
    release = Release.objects.get(external_run=run)
    assert response.status_code == 302 and response["Location"] == f"/releases/{release.pk}/"
    assert release.status != ReleaseStatus.DRAFT and release.candidate_evaluation is not None

    client.force_login(officer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="candidate-source"' in page and "Reported — not verified by SafeShrink" in page
    assert "external · reported" in page and "judged only SafeShrink" in page
    assert "external · reported" in client.get("/").content.decode()


def test_release_page_of_an_own_run_has_no_reported_section(
    client, engineer, officer, base_artifact, demo_suite, demo_policy, tmp_path
):
    from tests.factories import evaluated_release

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="candidate-source"' not in page and "dynamic_int8" in page


def test_regulator_reads_the_release_of_an_external_candidate(
    client, engineer, officer, regulator, base_artifact, demo_suite, demo_policy, tmp_path
):
    import datetime as dt

    from django.utils import timezone

    from governance.models import RegulatorGrant

    release = evaluated_external_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, tmp_path=tmp_path
    )
    RegulatorGrant.objects.create(
        regulator=regulator,
        release=release,
        granted_by=officer,
        reason="audit",
        valid_from=timezone.now() - dt.timedelta(days=1),
        valid_until=timezone.now() + dt.timedelta(days=30),
    )
    client.force_login(regulator)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Reported — not verified by SafeShrink" in page and release.external_run.method in page
    # The run's own page stays with engineers and officers; the release page carries what the regulator needs.
    assert client.get(f"/external-runs/{release.external_run_id}/").status_code == 403
