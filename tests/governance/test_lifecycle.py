"""The release state machine as one table (governance.lifecycle): `transition` refuses what it does not list,
and the release page's offer (governance.selectors.release_allowed_decisions) is read from the same table."""

import pytest

from accounts.errors import Conflict
from accounts.models import Role
from governance.lifecycle import DECISION_FROM, HALTABLE, TRANSITIONS, allowed, decisions_from
from governance.models import (
    TERMINAL_RELEASE_STATUSES,
    DecisionKind,
    Escalation,
    EscalationStatus,
    EscalationTrigger,
    Release,
    ReleaseStatus,
)
from governance.selectors import release_allowed_decisions
from governance.services.state import transition
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

S = ReleaseStatus


def test_every_status_has_a_row_and_terminal_statuses_lead_nowhere():
    assert set(TRANSITIONS) == set(S.values)
    for status in TERMINAL_RELEASE_STATUSES:
        assert TRANSITIONS[status] == frozenset()
    assert all(to in S.values for targets in TRANSITIONS.values() for to in targets)


@pytest.mark.parametrize(
    ("current", "to", "ok"),
    [
        (S.DRAFT, S.EVALUATING, True),
        (S.DRAFT, S.APPROVED, False),
        (S.EVALUATING, S.DRAFT, True),
        (S.EVALUATING, S.IN_REVIEW, True),
        (S.EVALUATING, S.AWAITING_DECISION, True),
        (S.EVALUATING, S.APPROVED, False),
        (S.IN_REVIEW, S.AWAITING_DECISION, True),
        (S.IN_REVIEW, S.APPROVED, False),
        (S.AWAITING_DECISION, S.APPROVED, True),
        (S.AWAITING_DECISION, S.REJECTED, True),
        (S.AWAITING_DECISION, S.ROLLING_OUT, False),
        (S.APPROVED, S.ROLLING_OUT, True),
        (S.APPROVED, S.AWAITING_DECISION, True),
        (S.APPROVED, S.RELEASED, False),
        (S.ROLLING_OUT, S.RELEASED, True),
        (S.ROLLING_OUT, S.ROLLED_BACK, True),
        (S.RELEASED, S.ROLLED_BACK, True),
        (S.RELEASED, S.ROLLING_OUT, False),
        (S.HALTED, S.HALTED, False),
        (S.REJECTED, S.HALTED, False),
        (S.ROLLED_BACK, S.RELEASED, False),
    ],
)
def test_transition_table(current, to, ok):
    assert allowed(current, to) is ok


@pytest.mark.parametrize("status", HALTABLE)
def test_every_haltable_status_can_be_halted_and_resumed_into(status):
    assert allowed(status, S.HALTED) and allowed(S.HALTED, status)


@pytest.mark.parametrize(
    ("status", "decisions"),
    [
        (S.DRAFT, {"halt"}),
        (S.EVALUATING, {"halt"}),
        (S.IN_REVIEW, {"halt"}),
        (S.AWAITING_DECISION, {"approve", "reject", "halt"}),
        (S.APPROVED, {"halt"}),
        (S.ROLLING_OUT, {"halt", "roll_back"}),
        (S.RELEASED, {"halt", "roll_back"}),
        (S.HALTED, {"resume"}),
        (S.REJECTED, set()),
        (S.ROLLED_BACK, set()),
    ],
)
def test_decisions_from_each_status(status, decisions):
    assert set(decisions_from(status)) == decisions
    # every decision that changes the status is a move the table allows
    targets = {"approve": S.APPROVED, "reject": S.REJECTED, "halt": S.HALTED, "roll_back": S.ROLLED_BACK}
    for kind in decisions & set(targets):
        assert allowed(status, targets[kind])
    assert set(DECISION_FROM) == set(DecisionKind.values)


@pytest.fixture
def release(engineer, base_artifact, demo_suite, demo_policy):
    return evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )


@pytest.mark.django_db(transaction=True)
def test_transition_refuses_a_move_the_table_does_not_list(release):
    locked = Release.objects.get(pk=release.pk)
    events = LedgerEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        transition(locked, actor=None, to=S.RELEASED, action="release.released", payload={})
    assert refused.value.code == "invalid_transition" and type(refused.value.code) is str
    fresh = Release.objects.get(pk=release.pk)
    assert (fresh.status, fresh.version) == (S.AWAITING_DECISION, release.version)
    assert LedgerEvent.objects.count() == events


def _old_view_flags(user, status: str) -> dict:
    """What governance/views.py computed before the selector (kept here as the specification)."""
    officer = user.role == Role.OFFICER
    return {
        "can_decide": officer and status == S.AWAITING_DECISION,
        "can_halt": officer and status not in (S.HALTED, S.REJECTED, S.ROLLED_BACK),
        "can_resume": officer and status == S.HALTED,
        "can_roll_back": officer and status in (S.ROLLING_OUT, S.RELEASED),
    }


@pytest.mark.django_db(transaction=True)
def test_the_selector_offers_what_the_page_offered(release, officer, make_officer, engineer, make_user):
    users = [
        officer,
        make_officer("no-authority", level=0),
        engineer,
        make_user("ada", "admin"),
        make_user("rex", "regulator"),
        make_user("rita", "reviewer"),
    ]
    for status in S.values:
        Release.objects.filter(pk=release.pk).update(status=status)
        fresh = Release.objects.select_related("experiment").get(pk=release.pk)
        for user in users:
            offer = release_allowed_decisions(fresh, user)
            flags = {name: getattr(offer, name) for name in ("can_decide", "can_halt", "can_resume", "can_roll_back")}
            assert flags == _old_view_flags(user, status), (status, user.role)
            assert offer.any == any(flags.values())
            assert offer.rollout == (status in (S.APPROVED, S.ROLLING_OUT))


@pytest.mark.django_db(transaction=True)
def test_only_officers_with_enough_authority_may_resolve_an_escalation(release, make_officer, engineer):
    level_one, level_two, none = make_officer("one", level=1), make_officer("two", level=2), make_officer("z", 0)
    release.escalations.update(status=EscalationStatus.RESOLVED)  # whatever gating opened: resolved, not offered
    first = Escalation.objects.create(
        release=release,
        trigger=EscalationTrigger.RED_ZONE,
        summary="red",
        level=1,
        owner_role=Role.OFFICER,
        deadline=release.created_at,
    )
    second = Escalation.objects.create(
        release=release,
        trigger=EscalationTrigger.INCIDENT,
        summary="i",
        level=2,
        owner_role=Role.OFFICER,
        deadline=release.created_at,
    )
    Escalation.objects.create(
        release=release,
        trigger=EscalationTrigger.OVERDUE_REVIEW,
        summary="done",
        level=1,
        owner_role=Role.OFFICER,
        deadline=release.created_at,
        status=EscalationStatus.RESOLVED,
    )
    offers = {u.username: release_allowed_decisions(release, u) for u in (level_one, level_two, none, engineer)}
    assert offers["one"].resolvable_escalations == {first.pk} and offers["one"].authority == 1
    assert offers["two"].resolvable_escalations == {first.pk, second.pk} and offers["two"].authority == 2
    assert offers["z"].resolvable_escalations == frozenset() and offers["z"].authority == 0
    assert offers[engineer.username].resolvable_escalations == frozenset()
