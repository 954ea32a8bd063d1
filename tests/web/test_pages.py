"""Officer pages with Django's test client (the browser walk-through is in test_browser.py)."""

import pytest

from governance.models import Decision, Release, ReleaseStatus
from ledger.models import LedgerEvent
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard_shows_empty_state_to_a_new_officer(client, officer):
    client.force_login(officer)
    page = client.get("/").content.decode()
    assert "No releases yet" in page


def test_officer_approves_through_the_confirmation_page(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    dashboard = client.get("/").content.decode()
    assert f"Release #{release.pk}" in dashboard and "awaiting a decision" in dashboard
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="zone-table"' in page and "Flip set" in page and "<svg" in page
    # Columns follow the headers whatever order the database returns JSON keys in.
    adversarial = page.split('data-group="slice:adversarial">')[1].split("</tr>")[0]
    cells = adversarial.split('<td class="num delta-cell">')[1:4]
    assert "n/a" not in cells[1] and "n/a" in cells[2]  # recall defined, benign FPR undefined (all unsafe)
    confirm = client.get(f"/releases/{release.pk}/decide/approve/").content.decode()
    assert "Approve release?" in confirm and release.candidate_digest in confirm

    blank = client.post(
        f"/releases/{release.pk}/decide/approve/", {"rationale": " ", "expected_version": release.version}
    )
    assert blank.status_code == 400 and Decision.objects.count() == 0

    done = client.post(
        f"/releases/{release.pk}/decide/approve/", {"rationale": "Within policy.", "expected_version": release.version}
    )
    assert done.status_code == 302
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.APPROVED
    assert LedgerEvent.objects.filter(action="release.approved", object_id=str(release.pk)).count() == 1


def test_stale_page_gets_a_clear_refusal_and_changes_nothing(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    r = client.post(f"/releases/{release.pk}/decide/halt/", {"rationale": "x", "expected_version": release.version - 1})
    assert r.status_code == 400 and "changed since you loaded it" in r.content.decode()
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.AWAITING_DECISION


def test_engineers_see_only_their_own_releases(client, make_user, engineer, base_artifact, demo_suite, demo_policy):
    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    other = make_user("frank", "engineer")
    client.force_login(other)
    assert client.get(f"/releases/{release.pk}/").status_code == 404
    client.force_login(engineer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Approve…" not in page  # engineers never see decision buttons


def test_dashboard_lists_open_escalations_and_reviewer_gets_blind_form(
    client, officer, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from governance.models import ReviewTask
    from governance.services.escalations import incident_report

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    incident_report(
        actor=officer,
        release_id=release.pk,
        severity=2,
        title="Missed slurs in canary",
        description="Reports from moderators.",
    )
    client.force_login(officer)
    page = client.get("/").content.decode()
    assert 'id="escalations"' in page and "Incident (severity 2): Missed slurs in canary" in page
    for path in ("/taxonomy/", "/policies/"):
        assert client.get(path).status_code == 200

    task = ReviewTask.objects.filter(reviewer=reviewers[0]).first()
    if task is None:
        return  # the tiny model's gate was not amber: no review tasks to show
    client.force_login(reviewers[0])
    assert client.get("/").status_code == 302  # reviewers land on their queue
    form = client.get(f"/reviews/{task.pk}/").content.decode()
    assert "Output A" in form and "candidate" not in form and "baseline" not in form


def test_unknown_filter_values_on_pages_are_refused_with_the_allowed_values(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    client.force_login(officer)
    dashboard = client.get("/?status=bogus")
    text = dashboard.content.decode()
    assert dashboard.status_code == 400 and "Unknown status “bogus”" in text and "awaiting_decision" in text
    assert f"Release #{release.pk}" in text  # the bogus filter is not applied: everything is shown
    page = client.get(f"/releases/{release.pk}/?direction=bogus&slice=routine")
    assert page.status_code == 400 and "Unknown direction “bogus”" in page.content.decode()
    assert client.get(f"/releases/{release.pk}/?slice=routine").status_code == 200
    assert client.get("/?status=awaiting_decision").status_code == 200


# --------------------------------------------------------------------------------------------------
# Evaluation conditions and decision stability (issue 12)
# --------------------------------------------------------------------------------------------------


def _with_stable_and_unstable_flips(release) -> tuple[int, int]:
    """Make sure the release's comparison has at least one stable and one unstable flip (the tiny model's own
    flips depend on this CPU's int8 kernels), keeping results["stability"]["flips"] consistent with the rows.
    Returns (stable, unstable) as stored."""
    from evaluations.models import Comparison, Example, Flip

    comparison = release.comparison
    flipped = set(Flip.objects.filter(comparison=comparison).values_list("example_id", flat=True))
    spare = Example.objects.filter(suite_version=release.suite_version).exclude(pk__in=flipped).order_by("position")
    for example, stable in zip(spare, (True, False), strict=False):
        if Flip.objects.filter(comparison=comparison, stable=stable).exists():
            continue
        Flip.objects.create(
            comparison=comparison,
            example=example,
            baseline_prob=0.2,
            candidate_prob=0.8,
            direction="to_unsafe",
            candidate_correct=example.label in ("hatespeech", "offensive"),
            stable=stable,
        )
    stable = Flip.objects.filter(comparison=comparison, stable=True).count()
    unstable = Flip.objects.filter(comparison=comparison, stable=False).count()
    results = comparison.results
    results["stability"]["flips"] = {"stable": stable, "unstable": unstable}
    Comparison.objects.filter(pk=comparison.pk).update(results=results, flip_count=stable + unstable)
    release.comparison.refresh_from_db()
    return stable, unstable


def _as_before_stability_passes(release) -> None:
    """Turn the release's evidence into what evaluations recorded before issue 12: no profile in the run
    configuration, no platforms, no stability pass, no flip basis in the verdicts."""
    from evaluations.models import Comparison, EvaluationRun, Flip

    comparison = release.comparison
    results = comparison.results
    results["stability"] = None
    for group in results["groups"].values():
        group.update(stable_flips=None, mcnemar_stable=None, instability=None)
    Comparison.objects.filter(pk=comparison.pk).update(results=results)
    Flip.objects.filter(comparison=comparison).update(stable=None)
    for run in (release.baseline_evaluation, release.candidate_evaluation):
        config = {k: v for k, v in run.config.items() if k not in ("profile", "stability_seed")}
        config.update(batch_size=16, max_length=48)
        runtime = {k: v for k, v in (run.runtime or {}).items() if k != "platforms"}
        EvaluationRun.objects.filter(pk=run.pk).update(config=config, runtime=runtime, stability=None)
    Release.objects.filter(pk=release.pk).update(
        gate=[{k: v for k, v in verdict.items() if k != "flip_basis"} for verdict in release.gate]
    )


def _stable_cells(page: str) -> list[str]:
    return [cell.split("</td>")[0] for cell in page.split('<td class="stable-cell">')[1:]]


def test_release_page_shows_the_evaluation_conditions_and_the_stability_of_both_models(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    from evaluations.models import Flip

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    stable, unstable = _with_stable_and_unstable_flips(release)
    stability = release.comparison.results["stability"]
    profile = release.baseline_evaluation.config["profile"]
    platform = release.baseline_evaluation.runtime["platforms"][0]
    client.force_login(officer)
    response = client.get(f"/releases/{release.pk}/")
    page = response.content.decode()
    assert response.status_code == 200

    conditions = page.split('id="conditions"')[1].split("</section>")[0]
    assert f"<th>Batch size</th><td>{profile['batch_size']}</td>" in conditions
    assert f"<code>{profile['batching']}</code>" in conditions and f"{profile['max_length']} tokens" in conditions
    assert ", ".join(profile["isa"]) in conditions and profile["device"] in conditions
    assert platform["cpu_model"] in conditions and "evaluation #" in conditions and "not declared" not in conditions
    measurement = release.comparison.results["runtime"]["measurement"]
    assert 'id="timing"' in conditions and (measurement.get("error") or measurement["host"]) in conditions

    section = page.split('id="stability"')[1].split("</section>")[0]
    for key in stability["candidate"]["groups"]:
        assert f"<code>{key}</code>" in section, key
    rate = stability["candidate"]["unstable_rate"]
    assert f"{rate * 100:.1f}%" in section
    assert f"{stable} stable</strong>" in section and f"{unstable} unstable</strong>" in section
    assert "Policy flip basis: <strong>Stable flips" in section and "reported: <strong>stable flips only" in section
    assert 'McNemar p, stable flips only <span class="reported">(reported)</span>' in page

    # The flip-rate rule says which flips it counted.
    flip_rule = page.split("Share of decisions flipped")[1].split("</tr>")[0]
    assert "counted: stable flips only" in flip_rule

    cells = _stable_cells(page)
    assert any(c == "yes" for c in cells) and any("no" in c for c in cells)
    only_stable = client.get(f"/releases/{release.pk}/?stable=true")
    assert only_stable.status_code == 200
    assert _stable_cells(only_stable.content.decode()) == ["yes"] * min(stable, 20)
    # Combined with another filter: the unstable flips in one direction.
    direction = Flip.objects.filter(comparison=release.comparison, stable=False).values_list("direction", flat=True)[0]
    both = client.get(f"/releases/{release.pk}/?stable=false&direction={direction}").content.decode()
    expected = Flip.objects.filter(comparison=release.comparison, stable=False, direction=direction).count()
    assert [c for c in _stable_cells(both) if "no" in c] == _stable_cells(both) and len(_stable_cells(both)) == min(
        expected, 20
    )

    refused = client.get(f"/releases/{release.pk}/?stable=maybe")
    text = refused.content.decode()
    assert refused.status_code == 400 and "Unknown stable “maybe”: use one of true, false" in text
    assert len(_stable_cells(text)) == min(stable + unstable, 20)  # not applied: every flip is shown

    # A policy that counts every flip: the page reports the main McNemar test, though stability data exist.
    from governance.models import ThresholdPolicy

    ThresholdPolicy.objects.filter(pk=release.policy_id).update(flip_basis="all")
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Policy flip basis: <strong>Every flip" in page and "reported: <strong>every flip (main pass)" in page
    assert 'McNemar p, every flip <span class="reported">(reported)</span>' in page


def test_release_page_of_a_comparison_without_stability_pass_says_so(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    _as_before_stability_passes(release)
    client.force_login(officer)
    response = client.get(f"/releases/{release.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="no-stability"' in page and "No stability pass for this comparison" in page
    assert "(no stability pass: every flip was counted)" in page and "reported: <strong>every flip (main pass)" in page
    assert 'id="stability-table"' not in page and "counted:" not in page
    conditions = page.split('id="conditions"')[1].split("</section>")[0]
    assert "<th>Batch size</th><td>16</td>" in conditions and "48 tokens" in conditions
    assert "predates declared profiles" in conditions and "not recorded" in conditions
    assert all(c.endswith("—</span>") for c in _stable_cells(page))
    filtered = client.get(f"/releases/{release.pk}/?stable=true")
    assert filtered.status_code == 200 and "no flip is marked stable or unstable" in filtered.content.decode()


def test_reviewers_are_told_that_only_stable_flips_are_sampled(
    client, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from django.db import transaction

    from governance.models import ReviewTask
    from governance.services.reviews import review_tasks_create

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    _, unstable = _with_stable_and_unstable_flips(release)
    with transaction.atomic():
        review_tasks_create(release=release)
    task = ReviewTask.objects.filter(reviewer=reviewers[0]).select_related("flip").first()
    assert task is not None and task.flip.stable is True
    client.force_login(reviewers[0])
    queue = client.get("/reviews/").content.decode()
    assert "samples only <strong>stable</strong> flips" in queue
    assert f"Release #{release.pk}: {unstable} unstable flip" in queue and "not sampled" in queue
    form = client.get(f"/reviews/{task.pk}/").content.decode()
    assert f"Release #{release.pk} has {unstable} unstable flip" in form and "move with the batches" in form
    assert "candidate" not in form and "baseline" not in form  # still blind


def test_review_page_of_a_comparison_without_stability_pass(
    client, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from django.db import transaction

    from governance.models import ReviewTask
    from governance.services.reviews import review_tasks_create

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    _with_stable_and_unstable_flips(release)
    _as_before_stability_passes(release)
    release.refresh_from_db()
    with transaction.atomic():
        review_tasks_create(release=release)
    task = ReviewTask.objects.filter(reviewer=reviewers[0]).first()
    assert task is not None
    client.force_login(reviewers[0])
    assert "no stability pass, so every flip could be sampled" in client.get("/reviews/").content.decode()
    form = client.get(f"/reviews/{task.pk}/")
    assert form.status_code == 200 and "had no stability pass, so every flip could be sampled" in form.content.decode()


def test_review_pages_show_label_names_hide_an_empty_expected_column_and_tell_officers_where_reviews_stand(
    client, officer, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from django.db import transaction

    from governance.models import ReviewTask, ThresholdPolicy
    from governance.services.reviews import review_submit, review_tasks_create

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    _with_stable_and_unstable_flips(release)
    with transaction.atomic():
        review_tasks_create(release=release)
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.IN_REVIEW)
    mine = ReviewTask.objects.filter(reviewer=reviewers[0]).first()
    assert mine is not None and not release.policy.reviewers_see_expected_label
    review_submit(actor=reviewers[0], task_id=mine.pk, label="safety_deviation", note="misses a slur")
    client.force_login(reviewers[0])
    queue = client.get("/reviews/").content.decode()
    assert "<td>Safety deviation</td>" in queue and "safety_deviation</td>" not in queue
    done = client.get(f"/reviews/{mine.pk}/").content.decode()
    assert "Submitted: Safety deviation — “misses a slur”" in done

    assert ReviewTask.objects.filter(reviewer=reviewers[1], submitted_at__isnull=True).exists()
    client.force_login(reviewers[1])
    queue = client.get("/reviews/").content.decode()
    assert "<th>Input</th><th>Deadline (UTC)</th>" in queue and "not shown" not in queue  # no task shows it
    ThresholdPolicy.objects.filter(pk=release.policy_id).update(reviewers_see_expected_label=True)
    assert "<th>Input</th><th>Expected</th>" in client.get("/reviews/").content.decode()

    pending = ReviewTask.objects.filter(release=release, submitted_at__isnull=True).count()
    client.force_login(officer)
    page = client.get("/reviews/").content.decode()
    assert "Review tasks go to reviewers" in page and "Nothing to review" not in page
    assert f'href="/releases/{release.pk}/">Release #{release.pk}</a></td><td>{pending}</td>' in page
    client.force_login(engineer)  # the engineer owns the release's experiment: it is listed for them too
    assert f'href="/releases/{release.pk}/"' in client.get("/reviews/").content.decode()
