"""Refusals by the accounts layer are recorded, and only refusals are (issue 10, section 4); moved here from
tests/governance/test_refusals.py so that tests/ mirrors the code (accounts.api.permissions, accounts.services).

- a signed-in user refused by the permission layer (HasRole): exactly one `access.denied` event with role,
  method, path and reason; DRF's "could this user also POST?" checks (browsable API forms, OPTIONS) record nothing;
- anonymous refusals: counted per window, at most one `access.denied_anonymous` event per window, with the count.
"""

import datetime as dt
import json

import pytest
from django.core.cache import cache

import accounts.services as account_services
from ledger.models import LedgerEvent
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


def _denied(**filters):
    return list(LedgerEvent.objects.filter(action="access.denied", **filters).order_by("id"))


def _payload(event) -> dict:
    return json.loads(event.payload_json)


# --- authenticated refusals by the permission layer ----------------------------------------------------------

REFUSED = [
    # (role, method, path): the role may not use the endpoint at all, or may read but not write it.
    ("engineer", "post", "/api/releases/1/decisions/", "role_not_allowed"),
    ("regulator", "get", "/api/comparisons/1/", "role_not_allowed"),
    ("reviewer", "get", "/api/releases/", "role_not_allowed"),
    ("officer", "post", "/api/releases/", "role_may_not_write"),
    ("engineer", "get", "/api/ledger/", "role_not_allowed"),
]


@pytest.mark.parametrize(("role", "method", "path", "reason"), REFUSED)
def test_each_permission_refusal_writes_exactly_one_access_denied(make_user, role, method, path, reason):
    user = make_user(f"u-{role}", role)
    api = api_client_for(user)
    response = api.post(path, {}, format="json") if method == "post" else api.get(path)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    events = _denied()
    assert len(events) == 1
    event = events[0]
    assert (event.actor_username, event.actor_role, event.object_type) == (user.username, role, "endpoint")
    assert _payload(event) | {"message": ""} == {
        "role": role,
        "method": method.upper(),
        "path": path,
        "reason": reason,
        "message": "",
    }


def test_only_the_request_sent_is_recorded_not_drf_s_what_if_checks(make_user):
    """The browsable API asks "may this officer also POST here?" to draw forms, and OPTIONS asks it for the
    metadata: those are not requests the user sent, so they record nothing. The real refused POST records one."""
    officer = make_user("olive", "officer")
    api = api_client_for(officer)
    assert api.get("/api/releases/", HTTP_ACCEPT="text/html").status_code == 200
    assert api.options("/api/releases/").status_code == 200
    assert _denied() == []
    assert api.post("/api/releases/", {}, format="json").status_code == 403
    assert len(_denied(actor_username="olive")) == 1


def test_an_allowed_request_records_no_refusal_and_an_admin_is_never_refused(make_user):
    engineer, admin = make_user("ella", "engineer"), make_user("adam", "admin")
    assert api_client_for(engineer).get("/api/artifacts/").status_code == 200
    assert api_client_for(admin).get("/api/ledger/").status_code == 200
    assert api_client_for(engineer).get("/api/ledger/").status_code == 403
    assert [e.actor_username for e in _denied()] == ["ella"]


# --- anonymous refusals: counted, not recorded one by one -----------------------------------------------------

T0 = 60 * 31_666_666  # the start of a 60 s window (2030-03-17)


@pytest.fixture
def anonymous_clock(monkeypatch, settings):
    """A clock the test moves, a known window, and no counts left over from other tests in this process."""
    settings.SAFESHRINK = {**settings.SAFESHRINK, "ANONYMOUS_REFUSAL_WINDOW_SECONDS": 60}
    now = {"t": float(T0)}
    monkeypatch.setattr(account_services, "_now", lambda: now["t"])
    cache.clear()
    account_services._anon_pending.clear()
    yield now
    cache.clear()
    account_services._anon_pending.clear()


def _anonymous_events():
    return list(LedgerEvent.objects.filter(action__in=("access.denied", "access.denied_anonymous")).order_by("id"))


def test_anonymous_refusals_are_one_summary_event_per_window_with_the_count(anonymous_clock, client):
    n = 25
    for i in range(n):
        path = "/api/releases/" if i % 2 else "/api/ledger/"
        # no credentials, or a token that is not one (refused before the role check runs): both are counted
        headers = {"HTTP_AUTHORIZATION": "Token not-a-token"} if i % 5 == 0 else {}
        assert client.get(path, **headers).status_code == 401
        anonymous_clock["t"] += 1  # all within the same 60 s window
    assert _anonymous_events() == []  # a flood writes nothing while its window is open

    anonymous_clock["t"] = T0 + 60 + 5  # the next window: its first anonymous refusal flushes the last
    assert client.post("/api/releases/", {}, content_type="application/json").status_code == 401
    events = _anonymous_events()
    assert len(events) == 1
    event = events[0]
    assert (event.action, event.actor_username, event.object_type) == ("access.denied_anonymous", "system", "endpoint")
    payload = _payload(event)
    assert payload["count"] == n and payload["window_seconds"] == 60 and payload["status"] == 401
    start = dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    assert payload["window_start"] == start.isoformat()
    assert payload["window_end"] == (start + dt.timedelta(seconds=60)).isoformat()

    for _ in range(3):  # more refusals in the second window: still nothing new until it closes
        assert client.get("/api/runs/").status_code == 401
    assert len(_anonymous_events()) == 1
    anonymous_clock["t"] += 3600
    assert account_services.anonymous_refusals_flush() == 1
    assert account_services.anonymous_refusals_flush() == 0
    assert [_payload(e)["count"] for e in _anonymous_events()] == [n, 4]


def test_a_window_is_summarised_once_even_if_two_flushes_race(anonymous_clock):
    for _ in range(5):
        account_services.anonymous_refusal_count(method="GET", path="/api/releases/")
    anonymous_clock["t"] += 120
    window = T0 // 60
    account_services._anon_pending.add(window)  # as if a second process had counted into the same window
    assert account_services.anonymous_refusals_flush() == 1
    account_services._anon_pending.add(window)
    assert account_services.anonymous_refusals_flush() == 0
    assert [_payload(e)["count"] for e in _anonymous_events()] == [5]


def test_a_summary_that_cannot_be_written_is_kept_for_the_next_flush(anonymous_clock, monkeypatch):
    for _ in range(3):
        account_services.anonymous_refusal_count(method="GET", path="/api/runs/")
    anonymous_clock["t"] += 60

    def broken(**kwargs):
        raise RuntimeError("database unavailable")

    real = account_services.ledger_append
    monkeypatch.setattr(account_services, "ledger_append", broken)
    assert account_services.anonymous_refusals_flush() == 0  # logged, not raised: the 401 still goes out
    monkeypatch.setattr(account_services, "ledger_append", real)
    assert account_services.anonymous_refusals_flush() == 1
    assert [_payload(e)["count"] for e in _anonymous_events()] == [3]
