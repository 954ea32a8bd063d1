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


def test_officer_approves_through_the_confirmation_page(client, officer, engineer, base_artifact, demo_suite,
                                                        demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                force_zone="green")
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

    blank = client.post(f"/releases/{release.pk}/decide/approve/", {"rationale": " ", "expected_version": release.version})
    assert blank.status_code == 400 and Decision.objects.count() == 0

    done = client.post(f"/releases/{release.pk}/decide/approve/",
                       {"rationale": "Within policy.", "expected_version": release.version})
    assert done.status_code == 302
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert LedgerEvent.objects.filter(action="release.approved", object_id=str(release.pk)).count() == 1


def test_stale_page_gets_a_clear_refusal_and_changes_nothing(client, officer, engineer, base_artifact, demo_suite,
                                                             demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                force_zone="green")
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
