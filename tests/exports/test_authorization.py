"""The authorization matrix: every endpoint, every role, on own and other objects.

"other_engineer" and "other_regulator" hold the same role as the owner/grantee but no claim on
release R: they must get 404 (not even its existence leaks) where the role itself is allowed."""

import datetime as dt

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

    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                force_zone="green")
    regulator, other_regulator = make_user("gina", "regulator"), make_user("hugo", "regulator")
    RegulatorGrant.objects.create(regulator=regulator, release=release, granted_by=officer, reason="audit",
                                  valid_from=timezone.now() - dt.timedelta(days=1),
                                  valid_until=timezone.now() + dt.timedelta(days=30))
    incident_report(actor=officer, release_id=release.pk, severity=1, title="t", description="d")
    export = Export.objects.create(release=release, requested_by=officer, status=RunStatus.SUCCEEDED)
    folder = settings.SAFESHRINK["EXPORT_ROOT"] / str(export.pk)
    folder.mkdir(parents=True)
    (folder / "dossier.pdf").write_bytes(b"%PDF-1.7 test")
    (folder / "bundle.dsse.json").write_bytes(b"{}")
    task = ReviewTask.objects.filter(release=release, reviewer=reviewers[0]).first() or ReviewTask.objects.create(
        release=release, flip=release.comparison.flips.first() or _any_flip(), reviewer=reviewers[0],
        a_is_candidate=True, deadline=timezone.now())
    users = {"engineer": engineer, "other_engineer": make_user("oscar", "engineer"), "officer": officer,
             "reviewer": reviewers[0], "regulator": regulator, "other_regulator": other_regulator}
    ids = {"release": release.pk, "experiment": release.experiment_id, "run": release.compression_run_id,
           "comparison": release.comparison_id, "evaluation": release.candidate_evaluation_id,
           "escalation": Escalation.objects.filter(release=release).first().pk, "export": export.pk,
           "task": task.pk, "suite_version": demo_suite.pk}
    return users, ids


def _any_flip():
    from evaluations.models import Flip

    return Flip.objects.first()


R, W = "read", "write"
# (kind, method, path, body, expected status per role in ROLES order)
MATRIX = [
    (R, "get", "/api/artifacts/", None, (200, 200, 200, 403, 403, 403)),
    (R, "get", "/api/experiments/{experiment}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/runs/{run}/", None, (200, 404, 200, 403, 403, 403)),
    (R, "get", "/api/runs/", None, (200, 200, 200, 403, 403, 403)),
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
    (W, "post", "/api/artifacts/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/experiments/", {}, (400, 400, 403, 403, 403, 403)),
    (W, "post", "/api/experiments/{experiment}/runs/", {}, (400, 404, 403, 403, 403, 403)),
    (W, "post", "/api/runs/{run}/cancel/", {}, (409, 404, 403, 403, 403, 403)),
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


def test_authorization_matrix(world):
    users, ids = world
    clients = {role: api_client_for(user) for role, user in users.items()}
    failures = []
    for kind, method, template, body, expected in MATRIX:
        path = template.format(**ids)
        for role, status in zip(ROLES, expected, strict=True):
            before = LedgerEvent.objects.filter(actor_role="regulator").count()
            call = getattr(clients[role], method)
            response = call(path, body, format="json") if method == "post" else call(path)
            if response.status_code != status:
                failures.append(f"{method.upper()} {path} as {role}: {response.status_code}, expected {status}")
            if role == "regulator" and kind == R and status == 200:
                after = LedgerEvent.objects.filter(actor_role="regulator").count()
                if after <= before:
                    failures.append(f"{method.upper()} {path} as regulator left no ledger event")
    assert failures == [], "\n".join(failures)


def test_anonymous_gets_401_or_403_everywhere(world, client):
    _, ids = world
    for _, method, template, body, _ in MATRIX:
        response = getattr(client, method)(template.format(**ids), body or {}, content_type="application/json") \
            if method == "post" else client.get(template.format(**ids))
        assert response.status_code in (401, 403), template


def test_expired_or_revoked_grant_hides_the_release(world):
    users, ids = world
    grant = RegulatorGrant.objects.get(regulator=users["regulator"])
    api = api_client_for(users["regulator"])
    assert api.get(f"/api/releases/{ids['release']}/").status_code == 200
    RegulatorGrant.objects.filter(pk=grant.pk).update(valid_until=timezone.now() - dt.timedelta(seconds=1))
    assert api.get(f"/api/releases/{ids['release']}/").status_code == 404
    RegulatorGrant.objects.filter(pk=grant.pk).update(valid_until=timezone.now() + dt.timedelta(days=1),
                                                      revoked_at=timezone.now())
    assert api.get(f"/api/exports/{ids['export']}/dossier/").status_code == 404
