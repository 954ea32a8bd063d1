"""The authorization matrix: every endpoint, every role, on own and other objects.

"other_engineer" and "other_regulator" hold the same role as the owner/grantee but no claim on
release R: they must get 404 (not even its existence leaks) where the role itself is allowed."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from compression.models import RunStatus
from exports.models import Export
from governance.models import Escalation, RegulatorGrant, ReviewTask
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
ROLES = ("engineer", "other_engineer", "officer", "reviewer", "regulator", "other_regulator")


@pytest.fixture
def world(engineer, officer, make_user, reviewers, base_artifact, demo_suite, demo_policy, settings):
    from governance.services.escalations import incident_report

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    regulator, other_regulator = make_user("gina", "regulator"), make_user("hugo", "regulator")
    RegulatorGrant.objects.create(
        regulator=regulator,
        release=release,
        granted_by=officer,
        reason="audit",
        valid_from=timezone.now() - dt.timedelta(days=1),
        valid_until=timezone.now() + dt.timedelta(days=30),
    )
    incident_report(actor=officer, release_id=release.pk, severity=1, title="t", description="d")
    export = Export.objects.create(
        release=release, requested_by=officer, status=RunStatus.SUCCEEDED, predictions_sha256="0" * 64
    )
    folder = settings.SAFESHRINK["EXPORT_ROOT"] / str(export.pk)
    folder.mkdir(parents=True)
    (folder / "dossier.pdf").write_bytes(b"%PDF-1.7 test")
    (folder / "bundle.dsse.json").write_bytes(b"{}")
    (folder / "predictions.csv.gz").write_bytes(b"\x1f\x8b test")
    task = ReviewTask.objects.filter(release=release, reviewer=reviewers[0]).first() or ReviewTask.objects.create(
        release=release,
        flip=release.comparison.flips.first() or _any_flip(),
        reviewer=reviewers[0],
        a_is_candidate=True,
        deadline=timezone.now(),
    )
    from tracking.services.runs import external_run_create

    external_run = external_run_create(actor=engineer, experiment_id=release.experiment_id, method="GPTQ (elsewhere)")
    users = {
        "engineer": engineer,
        "other_engineer": make_user("oscar", "engineer"),
        "officer": officer,
        "reviewer": reviewers[0],
        "regulator": regulator,
        "other_regulator": other_regulator,
    }
    ids = {
        "release": release.pk,
        "experiment": release.experiment_id,
        "run": release.compression_run_id,
        "comparison": release.comparison_id,
        "evaluation": release.candidate_evaluation_id,
        "escalation": Escalation.objects.filter(release=release).first().pk,
        "export": export.pk,
        "task": task.pk,
        "suite_version": demo_suite.pk,
        "artifact": base_artifact.pk,
        "external_run": external_run.pk,
    }
    return users, ids


def _any_flip():
    from evaluations.models import Flip

    return Flip.objects.first()


R, W = "read", "write"
# (kind, method, path, body, expected status per role in ROLES order)
MATRIX = [
    (R, "get", "/api/artifacts/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/artifacts/{artifact}/", None, (200, 404, 200, 403, 403, 403)),  # scoped like experiments
    (R, "get", "/api/experiments/{experiment}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/runs/{run}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/runs/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/external-runs/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/external-runs/{external_run}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/external-runs/{external_run}/metrics/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/engineer-keys/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/releases/", None, (200, 200, 200, 403, 200, 200)),
    (R, "get", "/api/releases/{release}/", None, (200, 404, 200, 403, 200, 404)),
    (R, "get", "/api/suites/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/suite-versions/{suite_version}/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/evaluations/{evaluation}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/comparisons/{comparison}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/comparisons/{comparison}/flips/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/policies/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/taxonomies/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/mitigations/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/escalations/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/reviews/", None, (403, 403, 403, 200, 403, 403)),
    (R, "get", "/api/ledger/", None, (403, 403, 200, 403, 403, 403)),
    (R, "get", "/api/ledger/verify/", None, (403, 403, 200, 403, 403, 403)),
    (R, "get", "/api/releases/{release}/exports/", None, (403, 403, 200, 403, 200, 404)),
    (R, "get", "/api/exports/{export}/", None, (403, 403, 200, 403, 200, 404)),
    (R, "get", "/api/exports/{export}/dossier/", None, (403, 403, 200, 403, 200, 404)),
    (R, "get", "/api/exports/{export}/bundle/", None, (403, 403, 200, 403, 200, 404)),
    (R, "get", "/api/exports/{export}/predictions/", None, (403, 403, 200, 403, 200, 404)),
    (W, "post", "/api/artifacts/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/experiments/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/experiments/{experiment}/runs/", {}, (400, 404, 403, 403, 403, 403)),
    (W, "post", "/api/runs/{run}/cancel/", {}, (409, 404, 403, 403, 403, 403)),
    (W, "post", "/api/external-runs/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/external-runs/{external_run}/log/", {}, (200, 404, 403, 403, 403, 403)),
    (W, "post", "/api/external-runs/{external_run}/provenance/", {}, (400, 404, 403, 403, 403, 403)),
    (W, "post", "/api/external-runs/{external_run}/finish/", {"status": "running"}, (400, 404, 403, 403, 403, 403)),
    (W, "post", "/api/engineer-keys/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/releases/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/evaluate/", {}, (409, 404, 403, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/decisions/", {"kind": "approve"}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/rollout/", {}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/rollout/advance/", {}, (403, 403, 409, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/incidents/", {}, (400, 404, 400, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/revalidation/", {}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/releases/{release}/grants/", {}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/escalations/{escalation}/acknowledge/", {}, (403, 403, 200, 403, 403, 403)),
    (W, "post", "/api/escalations/{escalation}/resolve/", {}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/reviews/{task}/", {}, (403, 403, 403, 400, 403, 403)),
    (W, "post", "/api/policies/publish/", {}, (403, 403, 400, 403, 403, 403)),
    (W, "post", "/api/exports/verify/", {}, (400, 400, 400, 403, 400, 400)),
    (W, "post", "/api/grants/999999/revoke/", {}, (403, 403, 404, 403, 403, 403)),
]


def _events_since(last_id: int, user) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(id__gt=last_id, actor_username=user.username).order_by("id"))


def _last_id() -> int:
    return LedgerEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_authorization_matrix(world):
    """Every status as expected, and every refusal recorded (only refusals): an authenticated 403 writes exactly
    one access.denied (role, method, path); a regulator's 404 writes access.denied with the reason, never
    access.viewed; a regulator's successful read writes access.viewed (access.downloaded for a file)."""
    users, ids = world
    clients = {role: api_client_for(user) for role, user in users.items()}
    failures = []
    for kind, method, template, body, expected in MATRIX:
        path = template.format(**ids)
        for role, status in zip(ROLES, expected, strict=True):
            user, last = users[role], _last_id()
            call = getattr(clients[role], method)
            response = call(path, body, format="json") if method == "post" else call(path)
            where = f"{method.upper()} {path} as {role}"
            if response.status_code != status:
                failures.append(f"{where}: {response.status_code}, expected {status}")
            events = _events_since(last, user)
            denied = [e for e in events if e.action == "access.denied"]
            actions = [e.action for e in events]
            if status == 403:
                payloads = [json.loads(e.payload_json) for e in denied]
                wanted = {"role": user.role, "method": method.upper(), "path": path}
                if len(denied) != 1 or {k: payloads[0].get(k) for k in wanted} != wanted:
                    failures.append(f"{where}: 403 recorded as {payloads}, expected one access.denied {wanted}")
            elif status in (200, 201, 202, 400) and denied:
                failures.append(f"{where}: {status} but recorded access.denied")
            if user.role == "regulator" and kind == R:
                if status == 404 and ("access.viewed" in actions or len(denied) != 1):
                    failures.append(f"{where}: 404 recorded as {actions}, expected one access.denied")
                if status == 404 and denied and json.loads(denied[0].payload_json)["reason"] != "no_grant":
                    failures.append(f"{where}: 404 reason {denied[0].payload_json}, expected no_grant")
                read = (
                    "access.downloaded"
                    if path.endswith(("/dossier/", "/bundle/", "/predictions/"))
                    else "access.viewed"
                )
                if status == 200 and read not in actions:
                    failures.append(f"{where}: 200 recorded as {actions}, expected {read}")
    assert failures == [], "\n".join(failures)


def test_anonymous_gets_401_or_403_everywhere(world, client):
    _, ids = world
    for _, method, template, body, _ in MATRIX:
        response = (
            getattr(client, method)(template.format(**ids), body or {}, content_type="application/json")
            if method == "post"
            else client.get(template.format(**ids))
        )
        assert response.status_code in (401, 403), template


def test_expired_or_revoked_grant_hides_the_release(world):
    users, ids = world
    grant = RegulatorGrant.objects.get(regulator=users["regulator"])
    api = api_client_for(users["regulator"])

    def recorded(since: int) -> list[tuple[str, str | None]]:
        return [(e.action, json.loads(e.payload_json).get("reason")) for e in _events_since(since, users["regulator"])]

    last = _last_id()
    assert api.get(f"/api/releases/{ids['release']}/").status_code == 200
    assert recorded(last) == [("access.viewed", None)]
    RegulatorGrant.objects.filter(pk=grant.pk).update(valid_until=timezone.now() - dt.timedelta(seconds=1))
    last = _last_id()
    assert api.get(f"/api/releases/{ids['release']}/").status_code == 404
    assert api.get(f"/api/exports/{ids['export']}/").status_code == 404
    assert recorded(last) == [("access.denied", "grant_expired")] * 2
    RegulatorGrant.objects.filter(pk=grant.pk).update(
        valid_until=timezone.now() + dt.timedelta(days=1), revoked_at=timezone.now()
    )
    last = _last_id()
    assert api.get(f"/api/exports/{ids['export']}/dossier/").status_code == 404
    assert api.get(f"/api/releases/{ids['release']}/exports/").status_code == 404
    assert recorded(last) == [("access.denied", "grant_revoked")] * 2


def test_a_regulator_s_refused_web_page_is_access_denied_not_viewed(world, client):
    users, ids = world
    client.force_login(users["other_regulator"])
    last = _last_id()
    assert client.get(f"/releases/{ids['release']}/").status_code == 404
    client.force_login(users["regulator"])
    assert client.get(f"/releases/{ids['release']}/").status_code == 200
    assert [
        (e.actor_username, e.action)
        for e in LedgerEvent.objects.filter(id__gt=last).order_by("id")
        if e.action.startswith("access.")
    ] == [("hugo", "access.denied"), ("gina", "access.viewed")]
