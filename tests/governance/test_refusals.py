"""Every refusal is recorded, and only refusals are (issue 10, section 4).

- the permission layer's refusals (HasRole) and anonymous refusals: tests/accounts/test_refusals.py;
- a refused transition is recorded as who was refused (permission_denied …), not as a stale version;
- a refused web action (exports app) is recorded too;
- GET /api/ledger/ filters by action, actor, object_type and time, and refuses bad values with a 400.
"""

import ast
import datetime as dt
import json
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.errors import Conflict, PermissionDenied
from governance.api.ledger import LEDGER_OBJECT_TYPES
from governance.models import Release, ReleaseStatus
from governance.services.releases import release_advance_rollout, release_decide, release_start_rollout
from ledger.models import LedgerEvent
from ledger.services import ledger_append
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _denied(**filters):
    return list(LedgerEvent.objects.filter(action="access.denied", **filters).order_by("id"))


def _payload(event) -> dict:
    return json.loads(event.payload_json)


# --- who before what: a refused actor is recorded as refused, not as stale ------------------------------------


@pytest.fixture
def release(engineer, base_artifact, demo_suite, demo_policy):
    return evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )


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
        release_start_rollout(
            actor=engineer2,
            release_id=release.pk,
            expected_version=stale,
            stages=[{"percent": 100, "starts_at": "2026-01-01T00:00:00+00:00"}],
        )
    assert refused.value.code == "permission_denied"
    codes = [(e.actor_username, _payload(e)["code"]) for e in _denied(object_type="release")]
    assert codes == [
        ("ed", "permission_denied"),
        ("nora", "outside_authority"),
        ("nora", "outside_authority"),
        ("ed", "permission_denied"),
    ]
    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.status, fresh.version) == (ReleaseStatus.AWAITING_DECISION, release.version)
    # An actor who may decide, with a stale version, is still told the page is stale.
    with pytest.raises(Conflict) as refused:
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="x", expected_version=stale)
    assert refused.value.code == "stale_version"


def test_a_refused_start_of_evaluation_is_recorded(engineer, base_artifact, demo_suite, demo_policy, make_user):
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create, release_start_evaluation

    # A draft of its own run: a run's candidate is proposed once per suite version (release_exists).
    experiment = experiment_create(
        actor=engineer, name="draft", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    draft = release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )
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
        "role": "regulator",
        "method": "POST",
        "path": f"/releases/{release.pk}/grants/",
        "reason": "permission_denied",
        "message": "",
    }


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
    for app in ("accounts", "compression", "evaluations", "tracking", "governance", "exports", "ledger"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts or "engine" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "object_type" and isinstance(node.value, ast.Constant):
                    written.add(node.value.value)
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Constant)
                    and any(isinstance(t, ast.Name) and t.id == "OBJECT_TYPE" for t in node.targets)
                ):
                    written.add(node.value.value)
    return written


@pytest.mark.parametrize(
    ("query", "parameter", "allowed"),
    [
        ("action=release.bogus", "action", "access.denied"),
        ("object_type=bogus", "object_type", "release"),
        ("since=yesterday", "since", None),
        ("until=2026-13-01", "until", None),
        ("since=2026-02-01&until=2026-01-01", "until", None),
        ("actor=" + "x" * 151, "actor", None),
    ],
)
def test_bad_ledger_filters_are_a_400_naming_the_parameter(officer_api, query, parameter, allowed):
    response = _get(officer_api, query)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message", "details"} and parameter in body["details"]
    assert parameter in body["message"]
    if allowed:
        assert allowed in body["message"] and allowed in " ".join(body["details"][parameter])
