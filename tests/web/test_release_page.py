"""The release page's evidence at a glance (issue 16): both models' values beside each change, adjusted p-values,
subgroup miss and false-alarm rates, the gate chart on a scale per rule, the flip filters, blind-review rows, the
section index, the export button and the decision page of a release that can no longer take the decision."""

import re
import xml.etree.ElementTree as ET
from html import escape
from types import SimpleNamespace

import pytest
from django.utils import timezone

from evaluations.models import Comparison, Example, Flip
from governance.charts import GATE_ROW_HEIGHT, gate_chart
from governance.models import Decision, Release, ReleaseStatus
from governance.svg import MUTED, ZONE_COLOURS
from tests.factories import evaluated_release

SVG = "{http://www.w3.org/2000/svg}"


def _section(page: str, section_id: str) -> str:
    return page.split(f'id="{section_id}"', 1)[1].split("</section>", 1)[0]


def _row(html: str, marker: str) -> str:
    return html.split(marker, 1)[1].split("</tr>", 1)[0]


def _release(engineer, base_artifact, demo_suite, demo_policy, zone="green"):
    return evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone=zone
    )


def _add_flip(release, *, subgroup: str | None = None, slice_: str | None = None, stable: bool = True) -> Flip:
    """A flip of an example that has none yet (the tiny model's own flips depend on this CPU's int8 kernels)."""
    flipped = Flip.objects.filter(comparison=release.comparison).values_list("example_id", flat=True)
    examples = Example.objects.filter(suite_version=release.suite_version).exclude(pk__in=flipped)
    if subgroup is not None:
        examples = examples.filter(subgroup=subgroup)
    if slice_ is not None:
        examples = examples.filter(slice=slice_)
    example = examples.order_by("position").first()
    assert example is not None, (subgroup, slice_)
    flip = Flip.objects.create(
        comparison=release.comparison,
        example=example,
        baseline_prob=0.2,
        candidate_prob=0.8,
        direction="to_unsafe",
        candidate_correct=example.label in ("hatespeech", "offensive"),
        stable=stable,
    )
    Comparison.objects.filter(pk=release.comparison_id).update(
        flip_count=Flip.objects.filter(comparison=release.comparison).count()
    )
    return flip


# -- 1. the comparison table: values beside each change, adjusted p-values; subgroup miss and false-alarm rates -----

SUBGROUPS = {  # subgroup: (fnr baseline, fnr candidate, benign_fpr baseline, benign_fpr candidate)
    "alpha": (0.25, 0.4, 0.1, 0.05),
    "beta": (0.15, 0.1, 0.3, 0.35),
}


def _with_subgroup_rows(release) -> dict:
    """Give the comparison two subgroup rows (the demo suite's subgroups are too small for their own rows), known
    adjusted p-values on the overall row and a judged change of the miss-rate gap. Returns the results."""
    results = release.comparison.results
    overall = results["groups"]["overall"]
    overall["mcnemar"].update(p_value=0.0031, p_holm=0.0124, p_bh=0.0457)
    overall["metrics"]["fnr_gap"] = {
        **overall["metrics"]["fnr_gap"],
        "baseline": 0.1,
        "candidate": 0.3,
        "delta": 0.2,
        "ci_low": 0.05,
        "ci_high": 0.35,
    }
    for name, (fnr_b, fnr_c, fpr_b, fpr_c) in SUBGROUPS.items():
        metrics = {
            "fnr": {"baseline": fnr_b, "candidate": fnr_c, "delta": fnr_c - fnr_b, "ci_low": None, "ci_high": None},
            "unsafe_recall": {"baseline": 1 - fnr_b, "candidate": 1 - fnr_c, "delta": fnr_b - fnr_c},
            "benign_fpr": {"baseline": fpr_b, "candidate": fpr_c, "delta": fpr_c - fpr_b},
            "accuracy": {"baseline": 0.8, "candidate": 0.75, "delta": -0.05, "ci_low": -0.1, "ci_high": -0.01},
        }
        results["groups"][f"subgroup:{name}"] = {
            "n": 40,
            "n_unsafe": 20,
            "flips": 2,
            "stable_flips": 1,
            "metrics": metrics,
            "mcnemar": {"b": 2, "c": 0, "p_value": 0.5, "p_holm": 1.0, "p_bh": 0.75},
            "mcnemar_stable": None,
            "instability": None,
        }
    Comparison.objects.filter(pk=release.comparison_id).update(results=results)
    return results


@pytest.mark.django_db(transaction=True)
def test_comparison_table_shows_both_values_adjusted_p_values_and_subgroup_error_rates(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    results = _with_subgroup_rows(release)
    client.force_login(officer)
    response = client.get(f"/releases/{release.pk}/")
    assert response.status_code == 200
    page = response.content.decode()

    table = _section(page, "comparison")
    overall = _row(table, 'data-group="overall">')
    accuracy = results["groups"]["overall"]["metrics"]["accuracy"]
    first_cell = overall.split('<td class="num delta-cell">')[1]
    assert f"{accuracy['baseline']:.3f} → {accuracy['candidate']:.3f}" in first_cell
    assert f"Δ {accuracy['delta']:+.3f}".replace("+0.000", "0.000") in first_cell
    assert "p 0.0031" in overall and "Holm 0.0124 · BH 0.0457" in overall
    # A subgroup row in the comparison table: values, then the worse change marked.
    alpha = _row(table, 'data-group="subgroup:alpha">')
    assert "0.800 → 0.750" in alpha and '<div class="delta bad">Δ -0.050' in alpha
    assert "Holm 1.0000 · BH 0.7500" in alpha

    section = _section(page, "subgroups")
    for name, (fnr_b, fnr_c, fpr_b, fpr_c) in SUBGROUPS.items():
        row = _row(section, f'data-subgroup="{name}">')
        assert f"{fnr_b:.3f} → {fnr_c:.3f}" in row and f"{fnr_c - fnr_b:+.3f}" in row
        assert f"{fpr_b:.3f} → {fpr_c:.3f}" in row and f"{fpr_c - fpr_b:+.3f}" in row
    miss_gap = _row(section, "Miss-rate gap")
    # baseline: alpha 0.25 − beta 0.15; candidate: alpha 0.4 − beta 0.1; the judged change from the results.
    assert "0.100 (alpha − beta)" in miss_gap and "0.300 (alpha − beta)" in miss_gap
    assert "+0.200" in miss_gap and "[+0.050, +0.350]" in miss_gap
    assert "Change in the subgroup miss-rate gap" in miss_gap  # the rule that judges it, with its zone
    alarm_gap = _row(section, "False-alarm-rate gap")
    assert "0.200 (beta − alpha)" in alarm_gap and "0.300 (beta − alpha)" in alarm_gap


@pytest.mark.django_db(transaction=True)
def test_without_subgroup_rows_the_page_says_why_there_are_no_subgroup_rates(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    assert not any(k.startswith("subgroup:") for k in release.comparison.results["groups"])
    client.force_login(officer)
    section = _section(client.get(f"/releases/{release.pk}/").content.decode(), "subgroups")
    minimum = release.comparison.statistics["min_subgroup_n"]
    assert 'id="no-subgroups"' in section and f"No subgroup has the {minimum} examples" in section
    assert 'id="subgroup-table"' not in section


# -- 2. the gate chart: a scale per rule, shaded zones, values ---------------------------------------------------

GATE = [
    {
        "rule": "acc",
        "title": "Routine accuracy change",
        "kind": "delta",
        "value": -0.04,
        "green_limit": -0.03,
        "red_limit": -0.08,
        "higher_is_better": True,
        "zone": "amber",
    },
    {
        "rule": "latency",
        "title": "p95 latency ratio",
        "kind": "absolute",
        "value": 0.87,
        "green_limit": 1.0,
        "red_limit": 1.5,
        "higher_is_better": False,
        "zone": "green",
    },
]


def _rows(svg: str) -> list[dict]:
    """Per rule row: its shaded zone colours, its axis ticks {value: x}, its limit lines' x and its texts."""
    root = ET.fromstring(svg)
    rows = [{"zones": [], "ticks": {}, "limits": {}, "texts": []} for _ in GATE]

    def row_of(y: float) -> dict:
        return rows[int((y - 4) // GATE_ROW_HEIGHT)]

    for el in root.iter():
        if el.tag == f"{SVG}rect" and el.get("fill-opacity"):
            row_of(float(el.get("y"))).setdefault("zones", []).append(el.get("fill"))
        elif el.tag == f"{SVG}text":
            row = row_of(float(el.get("y")))
            row["texts"].append(el.text)
            if el.get("fill") == MUTED and el.get("font-size") == "8":
                row["ticks"][float(el.text)] = float(el.get("x"))
        elif el.tag == f"{SVG}line" and el.get("stroke") in (ZONE_COLOURS["green"], ZONE_COLOURS["red"]):
            colour = "green" if el.get("stroke") == ZONE_COLOURS["green"] else "red"
            row_of(float(el.get("y1")))["limits"][colour] = float(el.get("x1"))
    return rows


def test_gate_chart_draws_each_rule_on_its_own_scale_with_values_and_zones():
    svg = gate_chart(GATE)
    rows = _rows(svg)
    for rule, row in zip(GATE, rows, strict=True):
        assert sorted(row["zones"]) == sorted(ZONE_COLOURS.values()), rule["rule"]  # red, amber, green shaded
        assert len(row["ticks"]) >= 2, rule["rule"]  # axis values under the band
        # The ticks lie on this rule's own scale: the limits sit where the ticks' values put them.
        (v0, x0), (v1, x1) = sorted(row["ticks"].items())[:2]
        for colour in ("green", "red"):
            limit = rule[f"{colour}_limit"]
            assert row["limits"][colour] == pytest.approx(x0 + (limit - v0) / (v1 - v0) * (x1 - x0), abs=0.2)
    # Two scales, not one: the latency ratio's axis is around 1, the accuracy change's at or below 0.
    assert max(rows[0]["ticks"]) <= 0 < min(rows[1]["ticks"])
    assert "-0.030" in rows[0]["texts"] and "1.000" in rows[1]["texts"]  # the limits are labelled
    assert "-0.040 amber" in rows[0]["texts"] and "0.870 green" in rows[1]["texts"]  # the judged values


@pytest.mark.django_db(transaction=True)
def test_release_page_inlines_the_gate_chart(client, officer, engineer, base_artifact, demo_suite, demo_policy):
    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(officer)
    rules = _section(client.get(f"/releases/{release.pk}/").content.decode(), "rules")
    figure = rules.split('id="gate-chart">', 1)[1].split("<figcaption>", 1)[0].strip()
    root = ET.fromstring(figure)
    assert root.tag == f"{SVG}svg"
    shaded = [el for el in root.iter(f"{SVG}rect") if el.get("fill-opacity")]
    judged = [v for v in release.gate if v["green_limit"] is not None and v["red_limit"] is not None]
    assert len(shaded) == 3 * len(judged)
    ticks = [el for el in root.iter(f"{SVG}text") if el.get("fill") == MUTED and el.get("font-size") == "8"]
    assert len(ticks) >= 2 * len(release.gate)


# -- 3. the flip filters: every slice and subgroup of the flips; an unknown value is said, with a 400 ----------------


def _options(page: str, name: str) -> list[str]:
    select = page.split(f'<select name="{name}">', 1)[1].split("</select>", 1)[0]
    return [v for v in re.findall(r'<option value="([^"]*)"', select) if v]


@pytest.mark.django_db(transaction=True)
def test_flip_filter_offers_every_subgroup_and_slice_of_the_flips_and_refuses_unknown_ones(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    subgroup = (
        Example.objects.filter(suite_version=release.suite_version)
        .exclude(subgroup="")
        .order_by("position")
        .values_list("subgroup", flat=True)
        .first()
    )
    flip = _add_flip(release, subgroup=subgroup)
    assert f"subgroup:{subgroup}" not in release.comparison.results["groups"]  # not a row of the comparison table
    flips = Flip.objects.filter(comparison=release.comparison).select_related("example")
    client.force_login(officer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert _options(page, "subgroup") == sorted({f.example.subgroup for f in flips if f.example.subgroup})
    slices = {f.example.slice for f in flips}
    assert _options(page, "slice") == [s for s in ("routine", "edge", "adversarial") if s in slices]

    filtered = client.get(f"/releases/{release.pk}/", {"subgroup": subgroup})
    assert filtered.status_code == 200
    assert f'id="flip-{flip.pk}"' in _section(filtered.content.decode(), "flips")
    matching = flips.filter(example__subgroup=subgroup).count()
    total = Release.objects.get(pk=release.pk).comparison.flip_count
    assert f"{matching} of {total} match this filter." in filtered.content.decode()

    # A known slice without flips: applied (nothing matches) and still shown as the filter in use.
    empty = next((s for s in ("routine", "edge", "adversarial") if s not in slices), None)
    if empty is not None:  # the tiny candidate's own flips may fall in every slice on some CPUs
        applied = client.get(f"/releases/{release.pk}/", {"slice": empty})
        text = applied.content.decode()
        assert applied.status_code == 200 and empty in _options(text, "slice")
        assert f'<option value="{empty}" selected' in text and "match this filter" in _section(text, "flips")

    refused = client.get(f"/releases/{release.pk}/", {"subgroup": "Martians"})
    text = refused.content.decode()
    assert refused.status_code == 400
    assert "Unknown subgroup “Martians”: use one of" in text and escape(subgroup) in text.split("Martians")[1]
    assert f'id="flip-{flip.pk}"' in _section(text, "flips")  # not applied: every flip is shown


# -- 4. blind-review rows: the example and both models' outputs, linked to the flip, once submitted ---------------


@pytest.mark.django_db(transaction=True)
def test_review_rows_show_the_example_and_both_outputs_only_after_submission(
    client, officer, engineer, reviewers, base_artifact, demo_suite, demo_policy
):
    from django.db import transaction

    from governance.models import ReviewTask
    from governance.services.reviews import review_submit, review_tasks_create

    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    _add_flip(release, stable=True)
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.IN_REVIEW)  # reviews are taken in review
    release.refresh_from_db()
    with transaction.atomic():
        review_tasks_create(release=release)
    task = ReviewTask.objects.filter(reviewer=reviewers[0]).select_related("flip__example").first()
    assert task is not None
    flip = task.flip
    client.force_login(officer)

    before = _section(client.get(f"/releases/{release.pk}/").content.decode(), "reviews")
    assert "shown once the review is submitted" in before
    assert escape(flip.example.text[:40]) not in before and "#flip-" not in before

    review_submit(actor=reviewers[0], task_id=task.pk, label="acceptable", note="Same meaning.")
    page = client.get(f"/releases/{release.pk}/").content.decode()
    section = _section(page, "reviews")
    row = [r for r in section.split('<tr class="review-row">')[1:] if reviewers[0].username in r]
    assert len(row) == 1 and escape(flip.example.text[:40]) in row[0]
    baseline_decision = "safe" if flip.direction == "to_unsafe" else "unsafe"
    candidate_decision = "unsafe" if flip.direction == "to_unsafe" else "safe"
    outputs = row[0].split('<td class="text review-output">')[1:]
    assert outputs[0].startswith(f"{baseline_decision} ") and f"p(unsafe) {flip.baseline_prob:.3f}" in outputs[0]
    assert outputs[1].startswith(f"{candidate_decision} ") and f"p(unsafe) {flip.candidate_prob:.3f}" in outputs[1]
    link = re.search(r'href="(\?page=\d+)#flip-(\d+)"', row[0])
    assert link and int(link.group(2)) == flip.pk
    assert f'id="flip-{flip.pk}"' in client.get(f"/releases/{release.pk}/{link.group(1)}").content.decode()
    # Another reviewer's pending task is still only a number.
    for other in section.split('<tr class="review-row">')[1:]:
        if "pending" in other:
            assert "shown once the review is submitted" in other and "#flip-" not in other


def test_review_rows_of_a_chat_model_show_both_answers():
    from django.template.loader import render_to_string

    from governance.web_release import review_rows

    flip = Flip(
        pk=7,
        example=Example(text="How do I pick a lock?"),
        baseline_prob=0.9,
        candidate_prob=0.1,
        direction="to_safe",
        candidate_correct=False,
        baseline_behaviour="refusal",
        candidate_behaviour="compliance",
        baseline_output="I can't help with that.",
        candidate_output="First, insert a tension wrench.",
    )
    pending = SimpleNamespace(flip=flip, submitted_at=None)
    done = SimpleNamespace(flip=flip, submitted_at=timezone.now())
    rows = review_rows([pending, done], {7: 3})
    assert rows[0] == {"task": pending, "flip_id": 7, "submitted": False}
    assert rows[1]["page"] == 3 and rows[1]["chat"] and rows[1]["text"] == "How do I pick a lock?"
    html = "".join(
        render_to_string("governance/_review_output.html", {"side": rows[1][side], "chat": True})
        for side in ("baseline", "candidate")
    )
    assert html.index("Refused") < html.index(escape("I can't help with that.")) < html.index("Answered")
    assert "First, insert a tension wrench." in html


# -- 5. the section index -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_section_index_links_every_section_and_each_anchor_resolves(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    from pathlib import Path

    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(officer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    nav = page.split('<nav class="section-index" id="section-index"', 1)[1].split("</nav>", 1)[0]
    anchors = re.findall(r'href="#([^"]+)"', nav)
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    assert anchors and set(anchors) <= ids
    sections = re.findall(r"<section\b[^>]*>", page)
    assert sections and all(re.search(r'\bid="', s) for s in sections), sections
    section_ids = {re.search(r'\bid="([^"]+)"', s).group(1) for s in sections}
    assert section_ids <= set(anchors)  # every section on the page is in the index
    for expected in ("rules", "comparison", "subgroups", "flips", "decisions", "exports", "audit"):
        assert expected in anchors, expected
    css = (Path(__file__).resolve().parents[2] / "static" / "css" / "app.css").read_text()
    assert re.search(r"\.section-index \{[^}]*position:sticky", css)


# -- 6. the export button; a decision the release can no longer take -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_export_is_offered_only_once_there_is_evidence(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(officer)
    exports = _section(client.get(f"/releases/{release.pk}/").content.decode(), "exports")
    assert "Build signed export" in exports and 'id="export-unavailable"' not in exports

    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.EVALUATING, comparison=None, gate=None)
    exports = _section(client.get(f"/releases/{release.pk}/").content.decode(), "exports")
    assert "Build signed export" not in exports
    assert 'id="export-unavailable"' in exports and "still being evaluated" in exports


@pytest.mark.django_db(transaction=True)
def test_deciding_on_a_release_that_can_no_longer_take_it_says_why_in_words(
    client, officer, engineer, base_artifact, demo_suite, demo_policy
):
    from ledger.models import LedgerEvent

    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.ROLLED_BACK)
    client.force_login(officer)

    confirm = client.get(f"/releases/{release.pk}/decide/approve/")
    text = confirm.content.decode()
    assert confirm.status_code == 200
    words = f"Release #{release.pk} can no longer be approved: it was rolled back, and a roll-back is final"
    assert words in text and 'id="decision-closed"' in text
    assert 'name="rationale"' not in text and 'id="confirm"' not in text  # no form
    assert "rolled_back" not in text and "awaiting_decision" not in text

    refused = client.post(
        f"/releases/{release.pk}/decide/approve/", {"rationale": "Looks fine.", "expected_version": release.version}
    )
    text = refused.content.decode()
    assert refused.status_code == 400 and words in text and 'name="rationale"' not in text
    assert "rolled_back" not in text and "awaiting_decision" not in text
    assert Decision.objects.filter(release=release).count() == 0
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.ROLLED_BACK
    assert LedgerEvent.objects.filter(object_type="release", object_id=str(release.pk), action="access.denied").exists()

    # Too early rather than too late: in words as well.
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.EVALUATING)
    early = client.get(f"/releases/{release.pk}/decide/reject/").content.decode()
    assert f"Release #{release.pk} cannot be rejected yet: it is still being evaluated" in early
    assert 'name="rationale"' not in early


@pytest.mark.django_db(transaction=True)
def test_export_downloads_are_links_only_for_the_roles_that_may_download(
    client, engineer, officer, base_artifact, demo_suite, demo_policy
):
    from exports.services.exports import export_request

    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    export = export_request(actor=officer, release_id=release.pk)  # built inline (Celery is eager in tests)
    link = f'href="/api/exports/{export.pk}/dossier/"'

    client.force_login(officer)
    assert link in client.get(f"/releases/{release.pk}/").content.decode()
    client.force_login(engineer)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert link not in page and "dossier.pdf" in page and "Officers and regulators download" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("form", "message"),
    [({"regulator": "abc", "days": "30"}, "Choose a regulator."), ({"regulator": "1", "days": "abc"}, "Days must")],
)
def test_a_grant_form_with_a_non_number_says_so_in_words(
    client, engineer, officer, base_artifact, demo_suite, demo_policy, form, message
):
    from governance.models import RegulatorGrant

    release = _release(engineer, base_artifact, demo_suite, demo_policy)
    client.force_login(officer)
    response = client.post(f"/releases/{release.pk}/grants/", {**form, "reason": "audit"}, follow=True)
    page = response.content.decode()
    assert message in page and "invalid literal" not in page
    assert not RegulatorGrant.objects.exists()
