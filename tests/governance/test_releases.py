import threading

import pytest
from django.db import connection

from accounts.errors import Conflict, PermissionDenied, ValidationFailed
from governance.models import Decision, Release, ReleaseStatus
from governance.services.releases import release_decide
from ledger.models import LedgerEvent
from tests.conftest import require_service
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def release(engineer, base_artifact, demo_suite, demo_policy):
    return evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                             force_zone="green")


def _unchanged(release: Release) -> None:
    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.status, fresh.version) == (release.status, release.version)


def test_evaluated_release_awaits_a_decision_with_pinned_policy(release, demo_policy):
    assert release.status == ReleaseStatus.AWAITING_DECISION
    assert release.policy_id == demo_policy.pk and release.comparison_id is not None
    assert len(release.gate) == demo_policy.rules.count()


def test_four_eyes_for_high_risk(engineer, officer, officer2, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                risk_tier="high", force_zone="green")
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="first")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION
    with pytest.raises(Conflict, match="already approved"):
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="again")
    release_decide(actor=officer2, release_id=release.pk, kind="approve", rationale="second")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert Decision.objects.filter(kind="approve").count() == 2


def test_red_gate_blocks_approval_but_allows_halt(engineer, officer, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy,
                                force_zone="red")
    with pytest.raises(Conflict) as refused:
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="ship it")
    assert refused.value.code == "gate_red"
    _unchanged(release)
    release_decide(actor=officer, release_id=release.pk, kind="halt", rationale="red zone")
    halted = Release.objects.get(pk=release.pk)
    assert (halted.status, halted.status_before_halt) == (ReleaseStatus.HALTED, ReleaseStatus.AWAITING_DECISION)


def test_separation_of_duties(release, engineer):
    engineer.role = "officer"  # promoted after running the experiment: still may not decide on it
    engineer.save()
    with pytest.raises(PermissionDenied) as refused:
        release_decide(actor=engineer, release_id=release.pk, kind="approve", rationale="my own")
    assert refused.value.code == "separation_of_duties"
    _unchanged(release)
    assert Decision.objects.count() == 0
    denied = LedgerEvent.objects.filter(action="access.denied").last()
    assert denied.actor_username == engineer.username and "separation_of_duties" in denied.payload_json


def test_refusals_change_nothing(release, officer, regulator):
    with pytest.raises(PermissionDenied):
        release_decide(actor=regulator, release_id=release.pk, kind="approve", rationale="x")
    with pytest.raises(ValidationFailed):
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="   ")
    with pytest.raises(Conflict) as stale:
        release_decide(actor=officer, release_id=release.pk, kind="reject", rationale="x",
                       expected_version=release.version - 1)
    assert stale.value.code == "stale_version"
    _unchanged(release)
    assert Decision.objects.count() == 0


def test_halted_release_cannot_be_approved(release, officer, officer2):
    release_decide(actor=officer, release_id=release.pk, kind="halt", rationale="incident")
    with pytest.raises(Conflict):
        release_decide(actor=officer2, release_id=release.pk, kind="approve", rationale="x")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.HALTED


@pytest.mark.postgres
def test_concurrent_decisions_make_exactly_one_transition(release, officer, officer2, make_officer):
    require_service("postgres")
    officers = [officer, officer2] + [make_officer(f"officer{i}") for i in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(officers))

    def attempt(user, kind):
        try:
            barrier.wait()
            release_decide(actor=user, release_id=release.pk, kind=kind, rationale="race",
                           expected_version=release.version)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(u, "approve" if i % 2 else "halt"))
               for i, u in enumerate(officers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * (len(officers) - 1) + ["ok"]
    assert Release.objects.get(pk=release.pk).version == release.version + 1
    assert Decision.objects.count() == 1
