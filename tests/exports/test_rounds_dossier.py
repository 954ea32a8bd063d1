"""A behavioural_distill candidate in the evidence bundle and the dossier: the bundle's compression run carries
its rounds and its data source (teachers, judge, stress set, held-back split with their digests), the schema
pins their shape, and the dossier's "How the candidate was made" draws the rounds chart and their tables."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from exports.dossier import render_dossier_html, render_dossier_pdf
from governance.rounds_chart import EMPTY

# The round records and run rows are the pages' (one definition); the chat fixtures are tests/conftest.py's.
from tests.governance.test_rounds_pages import DIGESTS, ROUND_1, ROUND_2, data_source_for, distill_run, release_of

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "exports" / "evidence-bundle.schema.json").read_text(encoding="utf-8"))
SAMPLE = json.loads(Path(__file__).with_name("sample_bundle.json").read_text(encoding="utf-8"))


def _errors(bundle: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(bundle)]


def _statement(digest: str, rounds: list) -> dict:
    """A provenance statement whose byproducts hold the rounds, as compression_run_execute signs it."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "candidate", "digest": {"sha256": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://safeshrink.dev/compression/behavioural_distill@v1",
                "externalParameters": {"method": "behavioural_distill"},
            },
            "runDetails": {
                "builder": {"id": "safeshrink-worker"},
                "byproducts": [
                    {"name": "environment", "content": {"details": {"rounds": rounds, "level": "sequence"}}}
                ],
            },
        },
    }


def _table(html: str, table_id: str) -> list[list[str]]:
    table = html.split(f'id="{table_id}"')[1].split("</table>")[0].split("<tbody>")[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in table.split("<tr>")[1:]]


@pytest.mark.django_db(transaction=True)
def test_the_bundle_carries_the_rounds_and_the_dossier_draws_them(
    engineer,
    chat_base,
    judge_artifact,
    chat_suite,
    chat_policy,
):
    from exports.selectors import bundle_build

    run = distill_run(
        engineer=engineer,
        base=chat_base,
        judge=judge_artifact,
        version=chat_suite["id"],
        status="succeeded",
        rounds=[ROUND_1, ROUND_2],
    )
    run.provenance = _statement(chat_base.digest, [ROUND_1, ROUND_2])
    run.save(update_fields=["provenance"])
    bundle = bundle_build(release_of(run, suite_version=chat_suite["id"], policy=chat_policy), checkpoint=None)
    assert _errors(bundle) == []
    record = bundle["compression_run"]
    assert record["rounds"] == [ROUND_1, ROUND_2]
    assert record["data_source"] == data_source_for(base=chat_base, judge=judge_artifact, version=chat_suite["id"])

    html = render_dossier_html(bundle)
    part = html.split("<h3>How the candidate was made</h3>")[1].split("<h3>Compression run</h3>")[0]
    assert "Succeeded after 2 finished rounds" in part
    chart = part.split('<figure id="rounds-chart">')[1].split("</figure>")[0]
    assert chart.count('class="series"') == 3 and "20.0%" in chart and "Figure 1." in chart  # no gate yet
    assert _table(part, "rounds-table") == [
        ["1", "120 (0)", "96", "96", "57", "24", "20.0%", "10.0%", "5.0%", "3.100 → 1.200 (mean 1.900)"],
        ["2", "129 (9)", "110", "110", "40", "10", "10.0%", "—", "2.5%", "1.550 → 0.600 (mean 0.950)"],
    ]
    details = _table(part, "rounds-details")
    assert [row[:2] for row in details] == [["1", DIGESTS[1]], ["2", DIGESTS[2]]]
    assert details[0][2] == "adversarial: 30, 10, 30, 24<br>edge: 30, 36, 7, 0<br>routine: 60, 50, 20, 0"
    assert details[0][3] == (
        "40 prompts (30 harmful, 10 safe); 9 failed<br>sampling 80 s · training 120 s · evaluating 30 s · 3.00 s/step"
    )
    sources = _table(part, "distill-sources")
    assert [row[0] for row in sources] == [
        "Teacher (base)",
        "Judge (refusal judge)",
        "Stress set (training prompts)",
        "Held-back split (tests only)",
        "Data digest",
    ]
    assert [row[2] for row in sources] == [chat_base.digest, judge_artifact.digest, "3c" * 32, "4d" * 32, "5e" * 32]
    assert f"suite version #{chat_suite['id']}" in sources[2][1] and "120 prompts" in sources[2][1]
    # The signed provenance's copy of the rounds is pointed to, not dumped as JSON a second time.
    assert "2 rounds, shown above" in html and html.count(DIGESTS[1]) == 1


def _distilled_sample(rounds: list) -> dict:
    bundle = copy.deepcopy(SAMPLE)
    run = bundle["compression_run"]
    run.update(method="behavioural_distill", rounds=rounds, data_source={"method": "behavioural_distill"})
    return bundle


def test_a_distilled_candidate_without_finished_rounds_says_so_and_other_methods_show_nothing():
    assert _errors(SAMPLE) == []  # a bundle made before runs carried rounds still validates
    html = render_dossier_html(SAMPLE)
    assert "Behavioural distillation" not in html and 'id="rounds-chart"' not in html

    empty = _distilled_sample([])
    assert _errors(empty) == []
    html = render_dossier_html(empty)
    assert "Behavioural distillation: rounds" in html and EMPTY in html
    assert 'id="rounds-chart"' not in html and 'id="rounds-table"' not in html
    assert 'id="distill-sources"' in html  # what the run was given is listed even without rounds


def test_the_schema_pins_the_shape_of_a_round():
    bundle = _distilled_sample([ROUND_1])
    assert _errors(bundle) == []
    for broken in (
        {"heldout": {**ROUND_1["heldout"], "harmful_compliance_rate": 1.5}},
        {"data_digest": "not a digest"},
        {"accepted": -1},
    ):
        bad = _distilled_sample([{**ROUND_1, **broken}])
        assert _errors(bad), broken
    missing = {k: v for k, v in ROUND_1.items() if k != "heldout"}
    assert _errors(_distilled_sample([missing]))


def test_the_rounds_chart_renders_in_the_pdf():
    pdf = render_dossier_pdf(_distilled_sample([ROUND_1, ROUND_2]))
    assert pdf.startswith(b"%PDF") and pdf == render_dossier_pdf(_distilled_sample([ROUND_1, ROUND_2]))
