"""Every refusal is recorded, and only refusals are (issue 10, section 4).

- a signed-in user refused by the permission layer (HasRole): exactly one `access.denied` event with role,
  method, path and reason; DRF's "could this user also POST?" checks (browsable API forms, OPTIONS) record nothing;
- anonymous refusals: counted per window, at most one `access.denied_anonymous` event per window, with the count;
- a refused transition is recorded as who was refused (permission_denied …), not as a stale version;
- a refused web action (exports app) is recorded too;
- GET /api/ledger/ filters by action, actor, object_type and time, and refuses bad values with a 400.
"""

import ast
import datetime as dt
import json
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

import accounts.services as account_services
from accounts.errors import Conflict, PermissionDenied
from governance.api.ledger import LEDGER_OBJECT_TYPES
from governance.models import Release, ReleaseStatus
from governance.services.releases import release_advance_rollout, release_decide, release_start_rollout
from ledger.models import LedgerEvent
from ledger.services import ledger_append
from tests.conftest import api_client_for
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


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
    assert _payload(event) | {"message": ""} == {"role": role, "method": method.upper(), "path": path,
                                                "reason": reason, "message": ""}


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


# --- who before what: a refused actor is recorded as refused, not as stale ------------------------------------

@pytest.fixture
def release(engineer, base_artifact, demo_suite, demo_policy):
    return evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                             force_zone="green")


def test_a_refused_actor_with_a_stale_version_is_recorded_as_refused(release, make_user, make_officer, officer):
    stale = release.version - 1
    engineer2 = make_user("ed", "engineer")
    with pytest.raises(PermissionDenied) as refused:
        release_decide(actor=engineer2, release_id=release.pk, kind="approve", rationale="x", expected_version=stale)
    assert refused.value.code == "permission_denied"
    outsider = make_officer("nora", level=0)
    with pytest.raises(PermissionDenied) as refused:
        release_decide(actor=outsider, release_id=release.pk, kind="reject", rationale="x", expected_version=stale)
    assert refused.value.code == "outside_authority"
    with pytest.raises(PermissionDenied) as refused:
        release_advance_rollout(actor=outsider, release_id=release.pk, expected_version=stale)
    assert refused.value.code == "outside_authority"
    with pytest.raises(PermissionDenied) as refused:
        release_start_rollout(actor=engineer2, release_id=release.pk, expected_version=stale,
                              stages=[{"percent": 100, "starts_at": "2026-01-01T00:00:00+00:00"}])
    assert refused.value.code == "permission_denied"
    codes = [(e.actor_username, _payload(e)["code"]) for e in _denied(object_type="release")]
    assert codes == [("ed", "permission_denied"), ("nora", "outside_authority"), ("nora", "outside_authority"),
                     ("ed", "permission_denied")]
    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.status, fresh.version) == (ReleaseStatus.AWAITING_DECISION, release.version)
    # An actor who may decide, with a stale version, is still told the page is stale.
    with pytest.raises(Conflict) as refused:
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="x", expected_version=stale)
    assert refused.value.code == "stale_version"


def test_a_refused_start_of_evaluation_is_recorded(engineer, base_artifact, demo_suite, demo_policy, make_user):
    from governance.services.releases import release_create, release_start_evaluation

    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                force_zone="green")
    draft = release_create(actor=engineer, compression_run_id=release.compression_run_id,
                           suite_version_id=release.suite_version_id, policy_id=release.policy_id)
    with pytest.raises(PermissionDenied):
        release_start_evaluation(actor=make_user("ed", "engineer"), release_id=draft.pk)
    assert [(e.actor_username, str(e.object_id)) for e in _denied(object_type="release")] == [("ed", str(draft.pk))]
    assert Release.objects.get(pk=draft.pk).status == ReleaseStatus.DRAFT




# --- web actions --------------------------------------------------------------------------------------------

def test_a_refused_web_action_is_recorded(release, regulator, client):
    client.force_login(regulator)
    response = client.post(f"/releases/{release.pk}/grants/", {"regulator": regulator.pk, "days": 3, "reason": "x"})
    assert response.status_code == 302  # back to the page, with the refusal as a message
    events = _denied(actor_username=regulator.username)
    assert len(events) == 1
    assert _payload(events[0]) | {"message": ""} == {
        "role": "regulator", "method": "POST", "path": f"/releases/{release.pk}/grants/",
        "reason": "permission_denied", "message": ""}


# --- GET /api/ledger/ filters -------------------------------------------------------------------------------

@pytest.fixture
def ledger_world(officer, make_user):
    eng = make_user("erin", "engineer")
    with transaction.atomic():
        ledger_append(actor=eng, action="access.denied", object_type="endpoint", object_id="/api/x/", payload={})
        ledger_append(actor=officer, action="release.approved", object_type="release", object_id=7, payload={})
        ledger_append(actor=eng, action="release.created", object_type="release", object_id=7, payload={})
    return eng


def _get(api, query: str):
    return api.get(f"/api/ledger/?{query}")


def _q(**params) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def test_ledger_filters_by_action_actor_object_type_and_time(officer_api, officer, ledger_world):
    def ids(query):
        response = _get(officer_api, query)
        assert response.status_code == 200, response.json()
        return [(r["action"], r["actor_username"]) for r in response.json()["results"]]

    assert ids("action=access.denied") == [("access.denied", "erin")]
    assert ids("actor=erin") == [("access.denied", "erin"), ("release.created", "erin")]
    assert ids("object_type=release&actor=olga") == [("release.approved", "olga")]
    assert ids("object_type=release&object_id=7&action=release.created") == [("release.created", "erin")]
    everything = ids("")
    first = LedgerEvent.objects.filter(action="access.denied").get()
    assert ids(_q(since=first.occurred_at.isoformat(), action="access.denied")) == [("access.denied", "erin")]
    assert ids(_q(until=first.occurred_at.isoformat(), action="access.denied")) == []
    later = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
    assert ids(_q(since=later)) == []
    assert len(ids(_q(until=later))) == len(everything)
    assert ids("since=2000-01-01&until=2000-01-02") == []
    # Every object_type the code writes is a value ?object_type= accepts (a new one must be added to
    # LEDGER_OBJECT_TYPES, or its events could not be found).
    written = _object_types_in_source()
    assert "release" in written and written - set(LEDGER_OBJECT_TYPES) == set()
    for object_type in sorted(written):
        assert _get(officer_api, _q(object_type=object_type)).status_code == 200


def _object_types_in_source() -> set[str]:
    written = set()
    for app in ("accounts", "compression", "evaluations", "governance", "exports", "ledger"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts or "engine" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "object_type" and isinstance(node.value, ast.Constant):
                    written.add(node.value.value)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                        isinstance(t, ast.Name) and t.id == "OBJECT_TYPE" for t in node.targets):
                    written.add(node.value.value)
    return written


@pytest.mark.parametrize(("query", "parameter", "allowed"), [
    ("action=release.bogus", "action", "access.denied"),
    ("object_type=bogus", "object_type", "release"),
    ("since=yesterday", "since", None),
    ("until=2026-13-01", "until", None),
    ("since=2026-02-01&until=2026-01-01", "until", None),
    ("actor=" + "x" * 151, "actor", None),
])
def test_bad_ledger_filters_are_a_400_naming_the_parameter(officer_api, query, parameter, allowed):
    response = _get(officer_api, query)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message", "details"} and parameter in body["details"]
    assert parameter in body["message"]
    if allowed:
        assert allowed in body["message"] and allowed in " ".join(body["details"][parameter])
