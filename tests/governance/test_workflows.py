"""Authorities, escalations, blind review, rollout, incidents, revalidation and notifications."""

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from governance.agreement import cohens_kappa
from governance.models import (
    Decision,
    Escalation,
    EscalationStatus,
    Release,
    ReleaseStatus,
    ReviewTask,
    WebhookDelivery,
    WebhookEndpoint,
)
from governance.selectors import review_task_view
from governance.services.escalations import escalation_resolve, escalations_escalate_overdue, incident_report
from governance.services.monitoring import revalidation_schedule, revalidations_run_due
from governance.services.releases import release_advance_rollout, release_decide, release_start_rollout
from governance.services.reviews import review_submit
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)
STAGES = [
    {"percent": 5, "starts_at": "2026-01-01T00:00:00+00:00"},
    {"percent": 100, "starts_at": "2026-01-02T00:00:00+00:00"},
]


@pytest.fixture
def make_release(engineer, base_artifact, demo_suite, demo_policy):
    def make(**kwargs):
        return evaluated_release(
            engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, **kwargs
        )

    return make


def test_officer_without_authority_for_the_tier_is_refused(make_release, make_officer):
    release = make_release(force_zone="green")
    outsider = make_officer("nina", level=0)
    with pytest.raises(PermissionDenied) as refused:
        release_decide(actor=outsider, release_id=release.pk, kind="approve", rationale="looks fine")
    assert refused.value.code == "outside_authority"
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION
    assert LedgerEvent.objects.filter(action="access.denied", actor_username="nina").count() == 1
    # …but any officer may halt.
    release_decide(actor=outsider, release_id=release.pk, kind="halt", rationale="pause")
    with pytest.raises(PermissionDenied):
        release_decide(actor=outsider, release_id=release.pk, kind="resume", rationale="go on")


def test_resume_returns_to_the_state_it_left(make_release, officer, officer2):
    release = make_release(force_zone="green")
    release_decide(actor=officer2, release_id=release.pk, kind="halt", rationale="check")
    release_decide(actor=officer, release_id=release.pk, kind="resume", rationale="checked")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION


def test_database_refuses_a_decision_by_the_experiment_owner(make_release, engineer):
    release = make_release(force_zone="green")
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(
            release=release,
            actor=engineer,
            actor_role="officer",
            kind="approve",
            rationale="x",
            evidence={},
            candidate_digest=release.candidate_digest,
            release_version=1,
            experiment_owner=engineer,
            run_requester=engineer,
        )
    assert Decision.objects.count() == 0


def _red_release(make_release):
    from governance.models import EscalationTrigger
    from governance.services.escalations import escalation_open

    release = make_release(force_zone="red")
    with transaction.atomic():
        escalation_open(release=release, trigger=EscalationTrigger.RED_ZONE, summary="red for the test")
    return release


def test_red_gate_opens_escalation_and_only_its_resolution_allows_approval(
    make_release, officer, officer2, make_officer
):
    release = _red_release(make_release)
    escalation = Escalation.objects.get(release=release, trigger="red_zone")
    assert escalation.level == 1 and escalation.status == EscalationStatus.OPEN
    with pytest.raises(Conflict):
        release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="x")
    with pytest.raises(PermissionDenied):
        escalation_resolve(actor=make_officer("lowly", level=0), escalation_id=escalation.pk, resolution="fine")
    escalation_resolve(actor=officer2, escalation_id=escalation.pk, resolution="Accepted with a runtime guard.")
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="Escalation resolved.")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED


def test_overdue_escalation_rises_a_level_notifies_and_halts_high_tier(make_release, officer, make_officer):
    release = make_release(risk_tier="high", force_zone="green")
    incident = incident_report(
        actor=officer,
        release_id=release.pk,
        severity=3,
        title="Spike in missed slurs",
        description="Users report missed slurs.",
    )
    escalation = Escalation.objects.get(release=release, trigger="incident")
    assert incident.severity == 3
    junior = make_officer("jay", level=1)
    officer.email, junior.email = "olga@example.org", "jay@example.org"
    officer.save(), junior.save()
    mail.outbox.clear()
    later = escalation.deadline + dt.timedelta(minutes=1)
    assert escalation.pk in escalations_escalate_overdue(now=later)
    assert escalations_escalate_overdue(now=later) == []  # the new deadline is in the future
    escalation.refresh_from_db()
    assert escalation.level == 2 and escalation.deadline > later
    release.refresh_from_db()
    assert (release.status, release.status_before_halt) == (ReleaseStatus.HALTED, ReleaseStatus.AWAITING_DECISION)
    # Level 2: olga (level 2) is told, jay (level 1) is not, and jay may no longer resolve it.
    assert mail.outbox and {tuple(m.to) for m in mail.outbox} == {("olga@example.org",)}
    with pytest.raises(PermissionDenied):
        escalation_resolve(actor=junior, escalation_id=escalation.pk, resolution="x")


class _Receiver(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(503)
        else:
            _Receiver.received.append((self.headers, body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_hmac_signed_and_retried(make_release, officer):
    from governance.services.notifications import webhook_deliver

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received, _Receiver.fail_first = [], 1
    try:
        release = make_release(force_zone="green")
        endpoint = WebhookEndpoint.objects.create(
            url=f"http://127.0.0.1:{server.server_port}/hook", secret="s3cret", events=["escalation.opened"]
        )
        with pytest.raises(Exception):  # noqa: B017,PT011 - the eager task retries after the 503
            incident_report(actor=officer, release_id=release.pk, severity=2, title="t", description="d")
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        if delivery.status == "pending":
            assert webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and delivery.attempts == 2
        headers, body = _Receiver.received[-1]
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers.get("X-SafeShrink-Signature") == expected
        assert json.loads(body)["event"] == "escalation.opened"
    finally:
        server.shutdown()


def test_blind_review_hides_then_reveals_and_feeds_the_gate(make_release, reviewers, engineer):
    release = make_release(force_zone="amber")
    assert release.status == ReleaseStatus.IN_REVIEW
    tasks = list(ReviewTask.objects.filter(release=release))
    assert tasks and {t.reviewer_id for t in tasks} == {r.pk for r in reviewers}
    assert engineer.pk not in {t.reviewer_id for t in tasks}
    view = review_task_view(tasks[0])
    assert "revealed" not in view and set(view["a"]) == {"unsafe_probability", "decision"}
    with pytest.raises(NotFound):
        review_submit(actor=engineer, task_id=tasks[0].pk, label="acceptable")
    with pytest.raises(ValidationFailed):
        review_submit(actor=tasks[0].reviewer, task_id=tasks[0].pk, label="meh")
    for task in tasks:
        review_submit(actor=task.reviewer, task_id=task.pk, label="safety_deviation", note="worse")
    with pytest.raises(Conflict):
        review_submit(actor=tasks[0].reviewer, task_id=tasks[0].pk, label="acceptable")
    release.refresh_from_db()
    assert release.status == ReleaseStatus.AWAITING_DECISION and release.gate_zone == "red"
    assert release.review_outcome["verdict"] == "fail" and release.review_outcome["deviation_share"] == 1.0
    assert Escalation.objects.filter(release=release, trigger="red_zone").count() == 1
    task = ReviewTask.objects.get(pk=tasks[0].pk)
    assert review_task_view(task)["revealed"]["a"] == ("candidate" if task.a_is_candidate else "baseline")


def test_cohens_kappa_exact_values():
    assert cohens_kappa([("a", "a"), ("b", "b")]) == 1.0
    # 2x2: agree 3 of 4; rater 1: a,a,b,b; rater 2: a,b,b,b -> po=.75, pe=(2*1+2*3)/16=.5 -> kappa=.5
    assert cohens_kappa([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]) == pytest.approx(0.5)
    assert cohens_kappa([("a", "a"), ("a", "a")]) is None
    assert cohens_kappa([]) is None


def test_rollout_stages_release_and_roll_back(make_release, officer, officer2):
    release = make_release(force_zone="green")
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="ok")
    with pytest.raises(ValidationFailed) as bad:
        release_start_rollout(
            actor=officer,
            release_id=release.pk,
            stages=[{"percent": 50, "starts_at": "2026-01-01T00:00Z"}, {"percent": 20, "starts_at": "x"}],
        )
    assert "stages[1].percent" in bad.value.details
    release_start_rollout(actor=officer, release_id=release.pk, stages=STAGES)
    release_advance_rollout(actor=officer, release_id=release.pk)
    released = release_advance_rollout(actor=officer, release_id=release.pk)
    assert released.status == ReleaseStatus.RELEASED and released.rollout_position == 2
    release_decide(actor=officer2, release_id=release.pk, kind="roll_back", rationale="incident")
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.ROLLED_BACK


def test_changed_candidate_voids_approvals(make_release, officer, officer2):
    from compression.services.artifacts import artifact_path

    release = make_release(force_zone="green")
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="ok")
    weights = artifact_path(release.candidate) / "model_state.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")  # someone edits the stored file
    with pytest.raises(Conflict) as refused:
        release_start_rollout(actor=officer, release_id=release.pk, stages=STAGES)
    assert refused.value.code == "candidate_changed"
    release.refresh_from_db()
    assert release.status == ReleaseStatus.AWAITING_DECISION and release.approvals_since_version == release.version
    with pytest.raises(Conflict) as again:
        release_decide(actor=officer2, release_id=release.pk, kind="approve", rationale="again")
    assert again.value.code == "candidate_changed"
    assert LedgerEvent.objects.filter(action="release.approvals_voided").count() == 1


def test_revalidation_reruns_the_candidate_and_records_the_zone(make_release, officer):
    release = make_release(force_zone="green")
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="ok")
    revalidation_schedule(actor=officer, release_id=release.pk, interval_hours=24)
    assert revalidations_run_due() == []
    due = timezone.now() + dt.timedelta(hours=25)
    assert revalidations_run_due(now=due) == [release.pk]
    ran = LedgerEvent.objects.get(action="revalidation.ran", object_id=str(release.pk))
    assert json.loads(ran.payload_json)["zone"] in ("green", "amber", "red")
    assert release.revalidation.__class__.objects.get(release=release).runs == 1


def test_seed_spread_reports_every_seed_and_the_spread(engineer, engineer_api, base_artifact, demo_suite, demo_policy):
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create, release_start_evaluation

    experiment = experiment_create(
        actor=engineer, name="seeds", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    for seed in (1, 2, 3):
        run = compression_run_request(
            actor=engineer,
            experiment_id=experiment.pk,
            method="magnitude_prune",
            parameters={"sparsity": 0.3},
            seed=seed,
        )
        release = release_create(
            actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
        )
        release_start_evaluation(actor=engineer, release_id=release.pk)
    body = engineer_api.get(f"/api/experiments/{experiment.pk}/seed-spread/").json()
    (entry,) = body["results"]
    assert entry["seeds"] == [1, 2, 3] and len(entry["flips"]["values"]) == 3
    accuracy = entry["groups"]["overall"]["accuracy"]
    assert set(accuracy["deltas"]) == {"1", "2", "3"}  # JSON object keys
    assert accuracy["min"] <= accuracy["mean"] <= accuracy["max"] and accuracy["stdev"] >= 0


@pytest.fixture
def draft_release(engineer, base_artifact, demo_suite, demo_policy):
    """A release with a succeeded compression run behind it, not evaluated (escalations need no gate)."""
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from governance.services.releases import release_create

    experiment = experiment_create(
        actor=engineer, name="escalations", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    return release_create(
        actor=engineer, compression_run_id=run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )


def _opened_events(release) -> int:
    return sum(
        json.loads(e.payload_json)["release"] == release.pk
        for e in LedgerEvent.objects.filter(action="escalation.opened")
    )


def test_escalation_open_twice_returns_the_same_escalation_and_records_it_once(draft_release, officer):
    from governance.models import EscalationTrigger
    from governance.services.escalations import escalation_open

    with transaction.atomic():
        first = escalation_open(release=draft_release, trigger=EscalationTrigger.INCIDENT, summary="first")
    mail.outbox.clear()
    with transaction.atomic():
        second = escalation_open(release=draft_release, trigger=EscalationTrigger.INCIDENT, summary="second")
    assert second.pk == first.pk and Escalation.objects.get(pk=first.pk).summary == "first"
    assert Escalation.objects.filter(release=draft_release).count() == 1
    assert _opened_events(draft_release) == 1 and mail.outbox == []  # nobody is told twice
    # Acknowledged is still unresolved: the same one again.
    Escalation.objects.filter(pk=first.pk).update(status=EscalationStatus.ACKNOWLEDGED)
    assert escalation_open(release=draft_release, trigger=EscalationTrigger.INCIDENT, summary="third").pk == first.pk
    # Another trigger is another escalation; once resolved, the trigger may open a new one.
    other = escalation_open(release=draft_release, trigger=EscalationTrigger.MISSED_DEADLINE, summary="late")
    assert other.pk != first.pk
    escalation_resolve(actor=officer, escalation_id=first.pk, resolution="Handled.")
    again = escalation_open(release=draft_release, trigger=EscalationTrigger.INCIDENT, summary="new incident")
    assert again.pk not in (first.pk, other.pk) and again.status == EscalationStatus.OPEN
    assert _opened_events(draft_release) == 3


@pytest.mark.postgres
def test_database_refuses_a_second_unresolved_escalation_per_trigger(draft_release):
    from tests.conftest import require_service

    require_service("postgres")
    fields = {"release": draft_release, "trigger": "red_zone", "summary": "x", "deadline": timezone.now()}
    first = Escalation.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Escalation.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Escalation.objects.create(**fields, status=EscalationStatus.ACKNOWLEDGED)
    Escalation.objects.create(**fields, status=EscalationStatus.RESOLVED)  # resolved ones are history
    Escalation.objects.filter(pk=first.pk).update(status=EscalationStatus.RESOLVED)
    Escalation.objects.create(**fields)
    assert Escalation.objects.filter(release=draft_release).exclude(status=EscalationStatus.RESOLVED).count() == 1


@pytest.mark.postgres
def test_concurrent_escalation_opens_make_one(draft_release):
    """Openers racing without a lock on the release: the losers get the winner's escalation."""
    from django.db import connection

    from governance.models import EscalationTrigger
    from governance.services.escalations import escalation_open
    from tests.conftest import require_service

    require_service("postgres")
    openers = 6
    barrier = threading.Barrier(openers)
    opened: list[int] = []
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                opened.append(
                    escalation_open(release=draft_release, trigger=EscalationTrigger.RED_ZONE, summary=f"opener {i}").pk
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == openers and len(set(opened)) == 1
    assert Escalation.objects.filter(release=draft_release).count() == 1
    assert _opened_events(draft_release) == 1
