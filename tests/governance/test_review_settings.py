"""Issue 16 (the web), blind review settings:

- whether reviewers see the expected label is a setting of the threshold policy version
  (`reviewers_see_expected_label`, off unless given): published through the API, shown on the policies page,
  honoured on the review page, the queue and the review API, and stated in the dossier;
- an item already judged for the same pair of artifacts is not put to a reviewer again: its judgement is
  carried (governance.services.reviews.review_tasks_create);
- Cohen's kappa says why it has no value: no item reviewed twice, or undefined (chance agreement is 1).

Releases here are written straight to the database (tests/governance/light.py): sampling and the pages read the
flip set and the policy, not how they were computed."""

import copy
import json
from pathlib import Path

import pytest
from django.db import transaction
from django.test import Client

from accounts.errors import ValidationFailed
from exports.dossier import render_dossier_html
from exports.dossier.governance_sections import _reviews
from governance.agreement import KAPPA_NO_PAIRS, KAPPA_UNDEFINED, KAPPA_VALUE, agreement, kappa_text
from governance.demo import DEFAULT_POLICY_RULES
from governance.models import Release, ReleaseStatus, ReviewTask, ThresholdPolicy
from governance.services.policies import threshold_policy_publish
from governance.services.reviews import review_outcome, review_submit, review_tasks_create
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.governance.light import _artifact, comparison_with_flips, light_release, twin_release

pytestmark = pytest.mark.django_db

SAMPLE_BUNDLE = Path(__file__).resolve().parents[1] / "exports" / "sample_bundle.json"


def _policy(officer, *, shows: bool, name: str = "review policy") -> ThresholdPolicy:
    return threshold_policy_publish(
        actor=officer, name=name, rules=DEFAULT_POLICY_RULES, reviewers_see_expected_label=shows
    )


def _open(release: Release) -> list[ReviewTask]:
    with transaction.atomic():
        return review_tasks_create(release=Release.objects.select_for_update().get(pk=release.pk))


def _judge_all(release: Release, label_for=lambda task: "acceptable") -> None:
    for task in ReviewTask.objects.filter(release=release, submitted_at__isnull=True).select_related("reviewer"):
        review_submit(actor=task.reviewer, task_id=task.pk, label=label_for(task), note=f"note {task.pk}")


def _review_started(release: Release) -> dict:
    event = LedgerEvent.objects.filter(action="release.review_started", object_id=str(release.pk)).get()
    return json.loads(event.payload_json)


# ------------------------------------------------------------------------------------------------ the setting


def test_the_policy_api_publishes_the_setting_and_a_new_version_states_its_own(officer):
    api = api_client_for(officer)
    first = api.post(
        "/api/policies/publish/",
        {"name": "p", "rules": DEFAULT_POLICY_RULES, "reviewers_see_expected_label": True},
        format="json",
    )
    assert first.status_code == 201, first.content
    assert first.json()["reviewers_see_expected_label"] is True
    second = api.post("/api/policies/publish/", {"name": "p", "rules": DEFAULT_POLICY_RULES}, format="json")
    assert second.status_code == 201 and second.json()["version"] == 2
    assert second.json()["reviewers_see_expected_label"] is False  # not inherited: blind unless stated
    assert ThresholdPolicy.objects.get(name="p", version=1).reviewers_see_expected_label is True
    published = [
        json.loads(e.payload_json)["reviewers_see_expected_label"]
        for e in LedgerEvent.objects.filter(action="policy.published").order_by("pk")
    ]
    assert published == [True, False]


def test_a_setting_that_is_not_a_boolean_is_a_400_naming_it(officer):
    response = api_client_for(officer).post(
        "/api/policies/publish/",
        {"name": "p", "rules": DEFAULT_POLICY_RULES, "reviewers_see_expected_label": "perhaps"},
        format="json",
    )
    assert response.status_code == 400
    assert "reviewers_see_expected_label" in response.json()["details"]
    with pytest.raises(ValidationFailed) as refused:
        threshold_policy_publish(
            actor=officer, name="p", rules=DEFAULT_POLICY_RULES, reviewers_see_expected_label="yes"
        )
    assert "reviewers_see_expected_label" in refused.value.details
    assert not ThresholdPolicy.objects.filter(name="p").exists()


def test_the_policies_page_says_whether_reviewers_see_the_label(client, officer):
    _policy(officer, shows=True, name="shows")
    _policy(officer, shows=False, name="blind")
    client.force_login(officer)
    page = client.get("/policies/").content.decode()
    shows, blind = page.split("<h2>shows")[1], page.split("<h2>blind")[1].split("<h2>shows")[0]
    assert 'class="review-label">see</strong>' in shows.split("</section>")[0]
    assert 'class="review-label">do not see</strong>' in blind


# ------------------------------------------------------------------------------------------------ the review


def test_blind_by_default_the_page_queue_and_api_hide_the_expected_label(client, engineer, demo_policy, reviewers):
    assert demo_policy.reviewers_see_expected_label is False
    release = light_release(engineer=engineer, policy=demo_policy)
    tasks = _open(release)
    reviewer = reviewers[0]
    task = next(t for t in tasks if t.reviewer_id == reviewer.pk)
    label = task.flip.example.label
    client.force_login(reviewer)

    page = client.get(f"/reviews/{task.pk}/").content.decode()
    assert "Expected label:" not in page and "expected label is not shown" in page
    queue = client.get("/reviews/").content.decode()
    assert f"<td>{label}</td>" not in queue
    # No task in the list shows its expected label: no Expected column saying "not shown" on every row.
    assert "<th>Expected</th>" not in queue and "not shown" not in queue

    api = api_client_for(reviewer)
    listed = api.get("/api/reviews/").json()["results"]
    assert listed and all(t["expected_label"] is None and t["expected_label_shown"] is False for t in listed)
    submitted = api.post(f"/api/reviews/{task.pk}/", {"label": "acceptable"}, format="json").json()
    assert submitted["expected_label"] is None and "revealed" in submitted  # A/B revealed, the label never


def test_a_policy_that_shows_the_label_shows_it_everywhere(client, engineer, officer, reviewers):
    release = light_release(engineer=engineer, policy=_policy(officer, shows=True))
    task = next(t for t in _open(release) if t.reviewer_id == reviewers[0].pk)
    label = task.flip.example.label
    client.force_login(reviewers[0])
    page = client.get(f"/reviews/{task.pk}/").content.decode()
    assert f"Expected label: {label}" in page
    queue = client.get("/reviews/").content.decode()
    assert "<th>Expected</th>" in queue and f"<td>{label}</td>" in queue
    listed = api_client_for(reviewers[0]).get("/api/reviews/").json()["results"]
    assert {t["expected_label_shown"] for t in listed} == {True}
    assert next(t for t in listed if t["id"] == task.pk)["expected_label"] == label
    assert _review_started(release)["reviewers_see_expected_label"] is True


@pytest.mark.parametrize("shows", [False, True])
def test_the_dossier_states_whether_reviewers_saw_the_label(shows):
    bundle = json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8"))
    bundle["policy"]["reviewers_see_expected_label"] = shows
    html = render_dossier_html(bundle)
    cell = html.split('id="review-label-visibility">')[1].split("</td>")[0]
    assert cell.startswith("Reviewers saw the expected label" if shows else "Reviewers did not see the expected label")


# ------------------------------------------------------------------------------- identical releases (carrying)


def test_an_identical_release_carries_judgements_and_asks_only_about_unseen_items(engineer, demo_policy, reviewers):
    first = light_release(engineer=engineer, policy=demo_policy, flips=12)  # medium tier: 10 items, 2 reviewers
    first_tasks = _open(first)
    _judge_all(first, lambda t: "safety_deviation" if t.flip_id % 3 == 0 else "acceptable")
    judged = {t.flip_id for t in first_tasks}
    assert len(judged) == 10

    second = twin_release(first)  # the same artifacts and comparison: the very same flips
    tasks = _open(second)

    asked = [t for t in tasks if t.carried_from_id is None]
    carried = [t for t in tasks if t.carried_from_id is not None]
    # The two items nobody judged come first; the rest of the sample carries earlier judgements.
    assert {t.flip_id for t in asked} == {f for f in _flip_ids(first) if f not in judged}
    assert len({t.flip_id for t in carried}) == 8 and {t.flip_id for t in carried} <= judged
    originals = {t.pk: t for t in ReviewTask.objects.filter(release=first)}
    for task in carried:
        original = originals[task.carried_from_id]
        assert (task.reviewer_id, task.flip_id, task.label, task.note, task.a_is_candidate) == (
            original.reviewer_id,
            original.flip_id,
            original.label,
            original.note,
            original.a_is_candidate,
        )
        assert task.submitted_at == original.submitted_at
    # No reviewer has the same text open twice, and the queue lists each judgement once.
    for reviewer in reviewers:
        api = api_client_for(reviewer)
        listed = api.get("/api/reviews/").json()["results"]
        texts = [t["text"] for t in listed]
        assert len(texts) == len(set(texts))
    assert _review_started(second)["carried"] == {
        "items": 8,
        "judgements": 16,
        "from_tasks": sorted(t.carried_from_id for t in carried),
    }
    assert Release.objects.get(pk=second.pk).status == ReleaseStatus.IN_REVIEW  # two items still to judge


def _flip_ids(release: Release) -> list[int]:
    return list(release.comparison.flips.order_by("pk").values_list("pk", flat=True))


def test_when_every_item_is_carried_the_review_concludes_at_once(engineer, demo_policy, reviewers):
    first = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(first)
    _judge_all(first)
    first.refresh_from_db()
    assert first.status == ReleaseStatus.AWAITING_DECISION

    second = twin_release(first)
    tasks = _open(second)

    second.refresh_from_db()
    assert tasks and all(t.carried_from_id for t in tasks)
    assert second.status == ReleaseStatus.AWAITING_DECISION
    assert second.review_outcome == first.review_outcome
    assert LedgerEvent.objects.filter(action="release.reviewed", object_id=str(second.pk)).count() == 1
    assert not ReviewTask.objects.filter(release=second, submitted_at__isnull=True).exists()


def test_same_artifacts_under_another_comparison_are_recognised_by_what_was_judged(engineer, demo_policy, reviewers):
    """Another evaluation configuration gives another comparison and other flip rows for the same texts."""
    first = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(first)
    _judge_all(first)
    examples = [f.example for f in first.comparison.flips.select_related("example")]
    other = comparison_with_flips(
        first.experiment.base_artifact, first.candidate, first.suite_version, examples, config="b"
    )

    tasks = _open(twin_release(first, comparison=other))

    assert tasks and all(t.carried_from_id for t in tasks)


def test_another_candidate_is_reviewed_afresh(engineer, demo_policy, reviewers):
    first = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(first)
    _judge_all(first)
    candidate = _artifact(engineer, "another candidate", parent=first.experiment.base_artifact)
    examples = [f.example for f in first.comparison.flips.select_related("example")]
    other = comparison_with_flips(first.experiment.base_artifact, candidate, first.suite_version, examples)
    second = twin_release(first, comparison=other)
    Release.objects.filter(pk=second.pk).update(candidate=candidate, candidate_digest=candidate.digest)
    second.refresh_from_db()

    tasks = _open(second)

    assert tasks and not any(t.carried_from_id for t in tasks)
    assert _review_started(second)["carried"]["items"] == 0


def test_judgements_made_under_the_other_label_setting_are_not_carried(engineer, officer, demo_policy, reviewers):
    first = light_release(engineer=engineer, policy=demo_policy, flips=12)  # blind
    first_tasks = _open(first)
    _judge_all(first)
    judged = {t.flip_id for t in first_tasks}

    tasks = _open(twin_release(first, policy=_policy(officer, shows=True)))

    assert tasks and not any(t.carried_from_id for t in tasks)
    unseen = {f for f in _flip_ids(first) if f not in judged}
    assert unseen <= {t.flip_id for t in tasks}  # items nobody saw are drawn first


# ------------------------------------------------------------------------------------------------ kappa


def test_agreement_tells_no_pairs_from_undefined_from_a_value():
    none = agreement([])
    assert (none.kappa, none.pairs, none.status) == (None, 0, KAPPA_NO_PAIRS)
    same = agreement([("acceptable", "acceptable")] * 4)
    assert (same.kappa, same.pairs, same.status) == (None, 4, KAPPA_UNDEFINED)
    mixed = agreement([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")])
    assert mixed.status == KAPPA_VALUE and mixed.pairs == 4 and mixed.kappa == pytest.approx(0.5)
    # All agreeing, but on two labels: chance agreement is below 1, kappa is 1.
    assert agreement([("a", "a"), ("b", "b")]).kappa == 1.0


@pytest.mark.parametrize(
    "outcome, text",
    [
        (
            {"kappa": None, "kappa_status": "undefined", "kappa_pairs": 10, "items": 10, "reviews": 20},
            "undefined — all 10 doubly-reviewed items agreed on one label (chance agreement is 1)",
        ),
        (
            {"kappa": None, "kappa_status": "no_pairs", "kappa_pairs": 0, "items": 6, "reviews": 6},
            "not computed (no item was reviewed twice)",
        ),
        ({"kappa": 0.5, "kappa_status": "value", "kappa_pairs": 4}, "0.50 (over 4 doubly-reviewed items)"),
        # Outcomes recorded before kappa_status: more reviews than items means an item was reviewed twice.
        (
            {"kappa": None, "items": 2, "reviews": 4},
            "undefined — all doubly-reviewed items agreed on one label (chance agreement is 1)",
        ),
        ({"kappa": None, "items": 3, "reviews": 3}, "not computed (no item was reviewed twice)"),
        ({"kappa": 1.0, "items": 2, "reviews": 4}, "1.00"),
        # A status that contradicts the value is not believed.
        (
            {"kappa": None, "kappa_status": "value", "items": 3, "reviews": 3},
            "not computed (no item was reviewed twice)",
        ),
    ],
)
def test_kappa_in_words(outcome, text):
    assert kappa_text(outcome) == text


def test_every_doubly_reviewed_item_agreeing_on_one_label_is_undefined_not_uncomputed(engineer, demo_policy, reviewers):
    release = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(release)
    _judge_all(release)  # both reviewers: "acceptable" on all ten items
    release.refresh_from_db()
    outcome = release.review_outcome
    assert (outcome["kappa"], outcome["kappa_status"], outcome["kappa_pairs"]) == (None, "undefined", 10)

    bundle = json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8"))
    bundle["release"]["review_outcome"] = outcome
    assert _reviews(bundle)["outcome"]["kappa"] == (
        "undefined — all 10 doubly-reviewed items agreed on one label (chance agreement is 1)"
    )
    html = render_dossier_html(bundle)
    assert "all 10 doubly-reviewed items agreed on one label" in html and "no item was reviewed twice" not in html


def test_a_review_with_one_reviewer_per_item_says_no_item_was_reviewed_twice():
    tasks = [ReviewTask(flip_id=i, label="acceptable") for i in range(3)]
    outcome = review_outcome(tasks)
    assert (outcome["kappa_status"], outcome["kappa_pairs"]) == ("no_pairs", 0)
    bundle = copy.deepcopy(json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8")))
    bundle["release"]["review_outcome"] = outcome
    assert _reviews(bundle)["outcome"]["kappa"] == "not computed (no item was reviewed twice)"


def test_the_bundle_and_dossier_mark_carried_judgements(engineer, demo_policy, reviewers):
    import jsonschema

    from exports.selectors import bundle_build

    first = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(first)
    _judge_all(first)
    second = twin_release(first)
    _open(second)

    built = bundle_build(second, checkpoint=None)

    assert {r.get("carried_from_release") for r in built["reviews"]} == {first.pk}
    assert built["policy"]["reviewers_see_expected_label"] is False
    schema = json.loads((SAMPLE_BUNDLE.parents[2] / "exports" / "evidence-bundle.schema.json").read_text())
    defs = {"$schema": schema["$schema"], "$defs": schema["$defs"]}
    for part, part_schema in (
        (built["reviews"][0], {**defs, "$ref": "#/$defs/review"}),
        (built["release"]["review_outcome"], {**defs, "$ref": "#/$defs/reviewOutcome"}),
        (built["policy"], {**defs, **schema["properties"]["policy"]}),
    ):
        jsonschema.validate(part, part_schema)
    bundle = json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8"))
    bundle["reviews"][0]["carried_from_release"] = 7
    html = render_dossier_html(bundle)
    assert "carried from release #7" in html and "1 judgement was made for an earlier release" in html


def test_the_release_page_marks_carried_judgements_and_says_why_kappa_has_no_value(
    engineer, officer, demo_policy, reviewers
):
    first = light_release(engineer=engineer, policy=demo_policy, flips=10)
    _open(first)
    _judge_all(first)
    second = twin_release(first)
    _open(second)
    second.refresh_from_db()
    client = Client()
    client.force_login(officer)

    page = client.get(f"/releases/{second.pk}/").content.decode()

    assert f'href="/releases/{first.pk}/#reviews">release #{first.pk}</a> (same baseline and candidate)' in page
    assert "Cohen's κ n/a" not in page
    assert "Cohen's κ " + kappa_text(second.review_outcome) in page
