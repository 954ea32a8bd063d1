"""An export is refused while the release's evidence is still being produced (the page hides the button; the API
and the service answer 409 and record nothing)."""

import pytest

from exports.models import Export
from governance.models import ReleaseStatus
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.governance.light import light_release

pytestmark = pytest.mark.django_db


def test_an_export_of_a_release_being_evaluated_is_a_409_that_records_nothing(engineer, officer, demo_policy):
    release = light_release(engineer=engineer, policy=demo_policy, status=ReleaseStatus.EVALUATING)
    events = LedgerEvent.objects.count()
    response = api_client_for(officer).post(f"/api/releases/{release.pk}/exports/", {}, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "release_evaluating"
    assert f"Release #{release.pk}" in response.json()["message"]
    assert not Export.objects.exists()
    assert LedgerEvent.objects.count() == events


def test_an_export_of_a_release_awaiting_a_decision_is_accepted(engineer, officer, demo_policy):
    release = light_release(engineer=engineer, policy=demo_policy, status=ReleaseStatus.AWAITING_DECISION)
    response = api_client_for(officer).post(f"/api/releases/{release.pk}/exports/", {}, format="json")
    assert response.status_code in (201, 202), response.content
    assert Export.objects.filter(release=release).count() == 1
