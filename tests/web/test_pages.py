"""Officer pages with Django's test client (the browser walk-through is in test_browser.py)."""

import pytest

from governance.models import Decision, Release, ReleaseStatus
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard_shows_empty_state_to_a_new_officer(client, officer):
    client.force_login(officer)
    page = client.get("/").content.decode()
    assert "No releases yet" in page


def test_officer_approves_through_the_confirmation_page(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    dashboard = client.get("/").content.decode()
    assert f"Release #{release.pk}" in dashboard and "awaiting a decision" in dashboard
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="zone-table"' in page and "Flip set" in page and "<svg" in page
    # Columns follow the headers whatever order the database returns JSON keys in.
    adversarial = page.split("<tr><td><code>slice:adversarial</code></td>")[1].split("</tr>")[0]
    cells = adversarial.split('<td class="num">')[3:6]
    assert "n/a" not in cells[1] and "n/a" in cells[2]  # recall defined, benign FPR undefined (all unsafe)
    confirm = client.get(f"/releases/{release.pk}/decide/approve/").content.decode()
    assert "Approve release?" in confirm and release.candidate_digest in confirm

    blank = client.post(
        f"/releases/{release.pk}/decide/approve/", {"rationale": " ", "expected_version": release.version}
    )
    assert blank.status_code == 400 and Decision.objects.count() == 0

    done = client.post(
        f"/releases/{release.pk}/decide/approve/", {"rationale": "Within policy.", "expected_version": release.version}
    )
    assert done.status_code == 302
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert LedgerEvent.objects.filter(action="release.approved", object_id=str(release.pk)).count() == 1


def test_stale_page_gets_a_clear_refusal_and_changes_nothing(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    r = client.post(f"/releases/{release.pk}/decide/halt/", {"rationale": "x", "expected_version": release.version - 1})
    assert r.status_code == 400 and "changed since you loaded it" in r.content.decode()
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION


def test_engineers_see_only_their_own_releases(client, make_user, engineer, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    other = make_user("frank", "engineer")
    client.force_login(other)
    assert client.get(f"/releases/{release.pk}/").status_code == 404
    client.force_login(engineer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Approve…" not in page  # engineers never see decision buttons


def test_dashboard_lists_open_escalations_and_reviewer_gets_blind_form(
    client, officer, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from governance.models import ReviewTask
    from governance.services.escalations import incident_report

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    incident_report(
        actor=officer,
        release_id=release.pk,
        severity=2,
        title="Missed slurs in canary",
        description="Reports from moderators.",
    )
    client.force_login(officer)
    page = client.get("/").content.decode()
    assert 'id="escalations"' in page and "Incident (severity 2): Missed slurs in canary" in page
    for path in ("/taxonomy/", "/policies/"):
        assert client.get(path).status_code == 200

    task = ReviewTask.objects.filter(reviewer=reviewers[0]).first()
    if task is None:
        return  # the tiny model's gate was not amber: no review tasks to show
    client.force_login(reviewers[0])
    assert client.get("/").status_code == 302  # reviewers land on their queue
    form = client.get(f"/reviews/{task.pk}/").content.decode()
    assert "Output A" in form and "candidate" not in form and "baseline" not in form


def test_unknown_filter_values_on_pages_are_refused_with_the_allowed_values(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    dashboard = client.get("/?status=bogus")
    text = dashboard.content.decode()
    assert dashboard.status_code == 400 and "Unknown status “bogus”" in text and "awaiting_decision" in text
    assert f"Release #{release.pk}" in text  # the bogus filter is not applied: everything is shown
    page = client.get(f"/releases/{release.pk}/?direction=bogus&slice=routine")
    assert page.status_code == 400 and "Unknown direction “bogus”" in page.content.decode()
    assert client.get(f"/releases/{release.pk}/?slice=routine").status_code == 200
    assert client.get("/?status=awaiting_decision").status_code == 200
