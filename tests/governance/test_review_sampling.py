"""Issue 12 (review): a blind review samples only stable flips (Flip.stable true: the flip holds in both
passes for both models) when the comparison has a stability pass, and every flip as before when it has none
(Flip.stable null); the ledger records what was sampled from, and the comparison's results say how many
unstable flips were left out (for the pages).

Each test takes a release that went through the real pipeline and was put straight into awaiting-decision
(force_zone="green"), sets its flips' `stable` as the case needs, and opens the review the way an amber gate
does (tests/factories.py). The tiny model's int8 candidate flips only a few of the suite's examples, so the
fixture adds flip records until there are several times the review sample: sampling reads the flip set, not
how it was computed, and with few flips "a sample of all" and "a sample of the stable ones" look alike."""

import json
import random

import pytest
from django.db import transaction

from evaluations.models import Comparison, Flip, FlipDirection
from governance.models import Escalation, EscalationStatus, Release, ReleaseStatus, ReviewTask
from governance.selectors import approval_policy_for, review_pool, review_task_view, unstable_flips_not_sampled
from governance.services.reviews import review_tasks_create
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pipeline_release(engineer, base_artifact, demo_suite, demo_policy, reviewers):
    """A release as the pipeline left it, without review tasks or open escalations."""
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    # The tiny model's own gate may have opened a review, or an escalation for want of one: start clean.
    ReviewTask.objects.filter(release=release).delete()
    Escalation.objects.filter(release=release).update(status=EscalationStatus.RESOLVED)
    return release


@pytest.fixture
def release(pipeline_release, demo_suite):
    """The pipeline's release with flip records added (stable unknown until a test sets it)."""
    release = pipeline_release
    sample_size = approval_policy_for(release.experiment.risk_tier).review_sample_size
    flipped = set(Flip.objects.filter(comparison=release.comparison).values_list("example_id", flat=True))
    unflipped = [e for e in demo_suite.examples.order_by("position") if e.pk not in flipped]
    Flip.objects.bulk_create(
        Flip(
            comparison=release.comparison,
            example=example,
            baseline_prob=0.3,
            candidate_prob=0.7,
            direction=FlipDirection.TO_UNSAFE,
            candidate_correct=example.is_unsafe,
        )
        for example in unflipped[: 3 * sample_size]
    )
    assert Flip.objects.filter(comparison=release.comparison).count() > 2 * sample_size
    return release, sample_size


def _flip_ids(release) -> list[int]:
    return list(Flip.objects.filter(comparison=release.comparison).order_by("pk").values_list("pk", flat=True))


def _open_review(release) -> list[ReviewTask]:
    with transaction.atomic():
        Release.objects.filter(pk=release.pk).update(gate_zone="amber", status=ReleaseStatus.IN_REVIEW)
        release.refresh_from_db()
        return review_tasks_create(release=release)


def _review_started(release) -> dict:
    """The payload of the release's latest review-started event (the one _open_review wrote)."""
    event = (
        LedgerEvent.objects.filter(action="release.review_started", object_type="release", object_id=str(release.pk))
        .order_by("pk")
        .last()
    )
    return json.loads(event.payload_json)


def test_the_results_count_what_the_review_leaves_out(pipeline_release):
    comparison = pipeline_release.comparison
    stability = comparison.results["stability"]
    assert stability is not None  # the pipeline runs a stability pass by default
    _, record = review_pool(comparison)
    assert record["basis"] == "stable" and record["flips"] == comparison.flip_count
    assert record["stable_flips"] == stability["flips"]["stable"]
    assert record["unstable_left_out"] == unstable_flips_not_sampled(comparison) == stability["flips"]["unstable"]


@pytest.mark.parametrize(
    "results, expected",
    [
        ({"stability": {"flips": {"stable": 3, "unstable": 2}}}, 2),
        ({"stability": {"flips": {"stable": 3, "unstable": 0}}}, 0),
        ({"stability": None}, None),
        ({"groups": {}}, None),
        (None, None),
    ],
)
def test_unstable_flips_not_sampled_reads_the_results(results, expected):
    assert unstable_flips_not_sampled(Comparison(results=results)) == expected
    assert unstable_flips_not_sampled(None) is None


def test_only_stable_flips_are_sampled(release):
    release, _ = release
    flips = _flip_ids(release)
    kept = flips[len(flips) // 2]  # one stable flip among unstable ones: a sample of all flips would show others
    Flip.objects.filter(pk__in=flips).exclude(pk=kept).update(stable=False)
    Flip.objects.filter(pk=kept).update(stable=True)

    tasks = _open_review(release)

    assert tasks and {t.flip_id for t in tasks} == {kept}
    assert _review_started(release)["sampled_from"] == {
        "basis": "stable",
        "flips": len(flips),
        "stable_flips": 1,
        "unstable_left_out": len(flips) - 1,
    }
    assert "revealed" not in review_task_view(ReviewTask.objects.select_related("flip__example").get(pk=tasks[0].pk))


def test_the_sample_is_drawn_from_every_stable_flip(release):
    release, sample_size = release
    flips = _flip_ids(release)
    stable = set(flips[::2])
    Flip.objects.filter(pk__in=flips).update(stable=False)
    Flip.objects.filter(pk__in=stable).update(stable=True)

    sampled = {t.flip_id for t in _open_review(release)}

    assert sampled <= stable and len(sampled) == min(sample_size, len(stable))
    assert _review_started(release)["sampled_from"]["unstable_left_out"] == len(flips) - len(stable)


def test_without_a_stability_pass_every_flip_is_sampled_as_before(release):
    release, sample_size = release
    flips = _flip_ids(release)
    Flip.objects.filter(pk__in=flips).update(stable=None)  # an older comparison

    sampled = {t.flip_id for t in _open_review(release)}

    # As before issue 12: the release-seeded sample of the whole flip set.
    expected = random.Random(f"review:{release.pk}").sample(flips, min(sample_size, len(flips)))
    assert sampled == set(expected)
    assert _review_started(release)["sampled_from"] == {
        "basis": "all",
        "flips": len(flips),
        "stable_flips": None,
        "unstable_left_out": None,
    }


def test_no_stable_flip_opens_an_escalation_naming_the_unstable_ones(release):
    release, _ = release
    flips = _flip_ids(release)
    Flip.objects.filter(pk__in=flips).update(stable=False)
    events = LedgerEvent.objects.filter(action="release.review_started").count()

    assert _open_review(release) == []

    escalation = Escalation.objects.filter(release=release, trigger="overdue_review").order_by("pk").last()
    assert "no stable flipped example" in escalation.summary and f"{len(flips)} flips" in escalation.summary
    assert LedgerEvent.objects.filter(action="release.review_started").count() == events


def test_an_amber_gate_with_no_stable_flip_goes_to_the_officer_and_says_why(
    monkeypatch, engineer, base_artifact, demo_suite, demo_policy, reviewers
):
    """Blind review has nothing to judge when every flip moved with the batches: the release is not left
    in review with no task (it could never leave), it awaits the officer's decision, and the ledger says why."""
    from governance.services import releases

    monkeypatch.setattr(releases, "policy_judge", lambda policy, results: ("amber", []))
    record = {"basis": "stable", "flips": 3, "stable_flips": 0, "unstable_left_out": 3}
    monkeypatch.setattr(releases, "review_pool", lambda comparison: ([], record))
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    assert release.gate_zone == "amber" and release.status == ReleaseStatus.AWAITING_DECISION
    assert not ReviewTask.objects.filter(release=release).exists()
    gated = LedgerEvent.objects.get(action="release.gated", object_id=str(release.pk))
    assert json.loads(gated.payload_json)["review"].endswith("(3 unstable flips)")
