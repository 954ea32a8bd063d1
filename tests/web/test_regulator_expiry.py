"""Issue 16 (the web): a regulator sees on every page when their access ends (a line in the header), and a
warning banner while a grant ends within seven days (governance.selectors.regulator_access, the template tags in
governance/templatetags/regulator_access.py). Other roles see neither."""

import datetime as dt

import pytest
from django.utils import timezone

from exports.services.exports import regulator_grant, regulator_grant_revoke
from governance.models import RegulatorGrant, ReleaseStatus
from governance.selectors import ACCESS_EXPIRY_WARNING, regulator_access
from tests.governance.light import light_release

pytestmark = pytest.mark.django_db

PAGES = ("/", "/policies/", "/taxonomy/")


@pytest.fixture
def release(engineer, demo_policy):
    return light_release(engineer=engineer, policy=demo_policy, flips=4, status=ReleaseStatus.AWAITING_DECISION)


def _grant(release, regulator, officer, *, ends_in: dt.timedelta) -> RegulatorGrant:
    now = timezone.now()
    return RegulatorGrant.objects.create(
        regulator=regulator,
        release=release,
        granted_by=officer,
        reason="audit",
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + ends_in,
    )


def _pages(client, user, release) -> dict[str, str]:
    client.force_login(user)
    pages = {}
    for path in (*PAGES, f"/releases/{release.pk}/"):
        response = client.get(path)
        assert response.status_code == 200, path
        pages[path] = response.content.decode()
    return pages


def _line(page: str) -> str:
    return page.split('id="access-expiry">')[1].split("</span>")[0]


def test_every_page_says_when_the_access_ends_without_a_warning_while_far_off(client, release, regulator, officer):
    grant = regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=release.pk, days=30, reason="audit")
    ends = timezone.localtime(grant.valid_until).strftime("%Y-%m-%d %H:%M")

    for path, page in _pages(client, regulator, release).items():
        assert _line(page).startswith(f"Access to release #{release.pk} until"), path
        assert f"{ends} UTC" in _line(page), path
        assert "access-warning" not in page, path


def test_a_grant_ending_within_seven_days_warns_on_every_page(client, release, regulator, officer):
    grant = _grant(release, regulator, officer, ends_in=dt.timedelta(days=3))
    ends = timezone.localtime(grant.valid_until).strftime("%Y-%m-%d %H:%M")

    for path, page in _pages(client, regulator, release).items():
        banner = page.split(f'id="access-warning-{release.pk}">')[1].split("</div>")[0]
        assert f"Your access to release #{release.pk} ends in 2" in banner, path  # "2 days, 23 hours"
        assert f"on {ends} UTC" in banner, path
        assert f"{ends} UTC" in _line(page), path


def test_a_scheduled_revocation_before_the_end_is_the_end_shown(release, regulator, officer):
    grant = _grant(release, regulator, officer, ends_in=dt.timedelta(days=60))
    revoke_at = timezone.now() + dt.timedelta(days=2)
    RegulatorGrant.objects.filter(pk=grant.pk).update(revoked_at=revoke_at)

    (access,) = regulator_access(regulator)

    assert access.ends_at == revoke_at and access.ending_soon


def test_several_grants_soonest_first_and_only_the_ending_one_warns(client, release, regulator, officer, engineer):
    other = light_release(
        engineer=engineer, policy=release.policy, flips=2, status=ReleaseStatus.AWAITING_DECISION, name="other"
    )
    _grant(release, regulator, officer, ends_in=dt.timedelta(days=40))
    _grant(other, regulator, officer, ends_in=dt.timedelta(days=5))

    assert [a.release_id for a in regulator_access(regulator)] == [other.pk, release.pk]
    client.force_login(regulator)
    page = client.get("/").content.decode()
    line = _line(page)
    assert line.index(f"release #{other.pk}") < line.index(f"release #{release.pk}")
    assert f'id="access-warning-{other.pk}"' in page and f'id="access-warning-{release.pk}"' not in page


def test_the_warning_starts_seven_days_before_the_end(release, regulator, officer):
    grant = _grant(release, regulator, officer, ends_in=dt.timedelta(days=30))
    just_outside = grant.valid_until - ACCESS_EXPIRY_WARNING - dt.timedelta(seconds=1)
    at_the_edge = grant.valid_until - ACCESS_EXPIRY_WARNING

    assert [a.ending_soon for a in regulator_access(regulator, now=just_outside)] == [False]
    assert [a.ending_soon for a in regulator_access(regulator, now=at_the_edge)] == [True]
    assert regulator_access(regulator, now=grant.valid_until) == []  # ended: not active, nothing to announce


def test_a_regulator_without_an_active_grant_is_told_so(client, release, regulator, officer):
    grant = regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=release.pk, days=3, reason="audit")
    regulator_grant_revoke(actor=officer, grant_id=grant.pk)
    client.force_login(regulator)
    page = client.get("/").content.decode()
    assert _line(page) == "No active access grant" and "access-warning" not in page


def test_other_roles_see_no_access_line(client, release, regulator, officer, engineer):
    _grant(release, regulator, officer, ends_in=dt.timedelta(days=3))
    for user in (officer, engineer):
        client.force_login(user)
        page = client.get("/").content.decode()
        assert 'id="access-expiry"' not in page and "access-warning" not in page
