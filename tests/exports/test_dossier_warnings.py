"""The signed evidence carries the release's warnings and the policy's training-data setting: the bundle's
`release.warnings` (a release evaluated on the suite version its compression run calibrated on, as in
tests/governance/test_release_guards.py) and `policy.forbid_training_data_overlap`, valid against the schema
(older bundles without them too); the dossier shows the warnings in the executive summary and as a callout in
the policy and gate section, states the policy's setting, and stays byte-identical when rendered twice."""

import copy
import html
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from exports.dossier import render_dossier_html, render_dossier_pdf

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).with_name("sample_bundle.json")
SCHEMA = ROOT / "exports" / "evidence-bundle.schema.json"

TITLE = "Evaluated on the compression run's training or calibration data"
FORBIDS = "This policy forbids evaluating on the compression run's training or calibration data"
ALLOWS = "This policy does not forbid evaluating on the compression run's training or calibration data"


def _schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def _errors(instance: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        _schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def _sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def _warning(*, suite_version=3, data_suite_version=3, shared=180) -> dict:
    return {
        "code": "evaluated_on_training_data",
        "message": f"The evaluation suite version {suite_version} is suite version {data_suite_version} itself, "
        "which compression run 5 trained or calibrated on: the evidence measures the candidate on data it has seen.",
        "suite_version": suite_version,
        "data_suite_version": data_suite_version,
        "shared_examples": shared,
    }


def _warned(forbid: bool | None = False) -> dict:
    bundle = _sample()
    bundle["release"]["warnings"] = [_warning()]
    if forbid is not None:
        bundle["policy"]["forbid_training_data_overlap"] = forbid
    return bundle


def _text(page: str) -> str:
    return html.unescape(page)


def _summary_row(page: str) -> str | None:
    if 'id="summary-warnings"' not in page:
        return None
    return _text(page.split('id="summary-warnings">')[1].split("</tr>")[0])


def _policy_sentence(page: str) -> str:
    return _text(page.split('id="policy-training-overlap">')[1].split("</span>")[0])


# --------------------------------------------------------------------------------------- built from the records


@pytest.fixture
def experiment(engineer, base_artifact):
    from tests.governance.external import experiment_for

    return experiment_for(engineer, base_artifact, name="warnings")


@pytest.fixture
def calibrated_run(engineer, experiment, demo_suite):
    """A run that names the demo suite version as its data (recorded in data_source, like a calibration set)."""
    from compression.services.runs import compression_run_request

    run = compression_run_request(
        actor=engineer, experiment_id=experiment.pk, method="dynamic_int8", data_suite_version_id=demo_suite.pk
    )
    run.refresh_from_db()
    assert run.status == "succeeded", run.failure_reason
    assert run.data_source["suite_version"] == demo_suite.pk
    return run


@pytest.fixture
def unrelated_suite(engineer):
    """A suite version sharing no example with the demo suite (new texts, ids and roots)."""
    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS
    from evaluations.services.suites import ExampleRow, suite_version_import

    kinds = [("hatespeech", "routine"), ("normal", "routine"), ("offensive", "edge"), ("normal", "adversarial")]
    rows = [
        ExampleRow(external_id=f"w{i}", text=f"A sentence only this suite holds, {i}.", label=label, slice=s, line=i)
        for i, (label, s) in enumerate(kinds * 5, start=2)
    ]
    return suite_version_import(
        actor=engineer, suite_name="unrelated", rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )


@pytest.mark.django_db(transaction=True)
def test_the_bundle_and_dossier_of_a_release_on_its_run_s_calibration_suite_carry_the_warning(
    engineer, officer, calibrated_run, demo_suite, demo_policy, unrelated_suite
):
    from exports.selectors import bundle_build
    from governance.demo import DEFAULT_POLICY_RULES
    from governance.services.policies import threshold_policy_publish
    from governance.services.releases import release_create
    from ledger.models import LedgerEvent

    warned = release_create(
        actor=engineer, compression_run_id=calibrated_run.pk, suite_version_id=demo_suite.pk, policy_id=demo_policy.pk
    )
    bundle = bundle_build(warned, checkpoint=None)

    [warning] = bundle["release"]["warnings"]
    assert warning["code"] == "evaluated_on_training_data"
    assert (warning["suite_version"], warning["data_suite_version"]) == (demo_suite.pk, demo_suite.pk)
    assert warning["shared_examples"] == demo_suite.examples.count()
    assert f"compression run {calibrated_run.pk}" in warning["message"]
    # The signed evidence says what the ledger recorded when the release was proposed.
    created = LedgerEvent.objects.get(action="release.created", object_id=str(warned.pk))
    assert json.loads(created.payload_json)["warnings"] == [warning]
    assert bundle["policy"]["forbid_training_data_overlap"] is False
    assert _errors(bundle) == []

    page = render_dossier_html(bundle)
    callout = _text(page.split('id="evidence-warnings"')[1].split("</div>")[0])
    assert 'data-code="evaluated_on_training_data"' in callout
    assert TITLE in callout and warning["message"] in callout
    assert f"Policy {demo_policy.name} v{demo_policy.version} allows it with this warning" in callout
    # The callout sits in the policy and gate section, before the gate's rules; the summary names it too.
    policy_section = page.split('id="policy"')[1].split('id="provenance"')[0]
    assert 'id="evidence-warnings"' in policy_section
    row = _summary_row(page)
    assert row is not None and row.startswith("<td>Warning</td>") and warning["message"] in row
    assert _policy_sentence(page).startswith(ALLOWS)

    # The same run on a suite that shares nothing with its data, under a policy forbidding the overlap: no warning.
    strict = threshold_policy_publish(
        actor=officer, name="strict", rules=DEFAULT_POLICY_RULES, forbid_training_data_overlap=True
    )
    clean = release_create(
        actor=engineer, compression_run_id=calibrated_run.pk, suite_version_id=unrelated_suite.pk, policy_id=strict.pk
    )
    bundle = bundle_build(clean, checkpoint=None)
    assert bundle["release"]["warnings"] == []
    assert bundle["policy"]["forbid_training_data_overlap"] is True
    assert _errors(bundle) == []
    page = render_dossier_html(bundle)
    assert 'id="evidence-warnings"' not in page and 'data-code="evaluated_on_training_data"' not in page
    assert _summary_row(page) is None and TITLE not in _text(page)
    assert _policy_sentence(page).startswith(FORBIDS)


# ------------------------------------------------------------------------------------------------ the schema


def test_older_bundles_without_the_fields_still_validate():
    bundle = _sample()
    assert "warnings" not in bundle["release"] and "forbid_training_data_overlap" not in bundle["policy"]
    assert _errors(bundle) == []
    assert _errors(_warned()) == []
    empty = _sample()
    empty["release"]["warnings"] = []
    assert _errors(empty) == []


def test_the_schema_refuses_a_malformed_warning_and_knows_every_warning_code():
    from governance.selectors import ReleaseWarningCode

    bundle = _warned()
    bundle["release"]["warnings"][0].pop("shared_examples")
    assert any("shared_examples" in e for e in _errors(bundle))
    bundle = _warned()
    bundle["release"]["warnings"][0]["code"] = "made_up"
    assert any("release/warnings/0/code" in e for e in _errors(bundle))
    bundle = _warned()
    bundle["policy"]["forbid_training_data_overlap"] = "yes"
    assert any("policy/forbid_training_data_overlap" in e for e in _errors(bundle))
    enum = _schema()["$defs"]["releaseWarning"]["properties"]["code"]["enum"]
    assert sorted(enum) == sorted(code.value for code in ReleaseWarningCode)


# ------------------------------------------------------------------------------------------------ the dossier


@pytest.mark.parametrize(("forbid", "sentence"), [(True, FORBIDS), (False, ALLOWS)])
def test_the_policy_section_states_the_setting(forbid, sentence):
    bundle = _sample()
    bundle["policy"]["forbid_training_data_overlap"] = forbid
    stated = _policy_sentence(render_dossier_html(bundle))
    assert stated.startswith(sentence)
    assert (FORBIDS if not forbid else ALLOWS) not in stated


def test_a_bundle_from_before_the_setting_says_so():
    stated = _policy_sentence(render_dossier_html(_sample()))
    assert "predates the policy setting" in stated
    assert not stated.startswith(FORBIDS) and not stated.startswith(ALLOWS)


def test_no_warnings_no_callout_and_no_summary_row():
    empty = _warned()
    empty["release"]["warnings"] = []
    for bundle in (_sample(), empty):  # before warnings were recorded, and none
        page = render_dossier_html(bundle)
        assert 'id="evidence-warnings"' not in page and _summary_row(page) is None
    assert 'id="evidence-warnings"' in render_dossier_html(_warned())


def test_two_warnings_are_each_shown_and_counted():
    bundle = _warned()
    other = _warning(suite_version=4, data_suite_version=3, shared=12)
    other["message"] = "The evaluation suite version 4 shares 12 of its 40 examples with suite version 3."
    bundle["release"]["warnings"].append(other)
    page = render_dossier_html(bundle)
    callout = _text(page.split('id="evidence-warnings"')[1].split("</div>")[0])
    assert "carries 2 warnings" in callout and callout.count("<li ") == 2 and other["message"] in callout
    assert _summary_row(page).startswith("<td>Warnings</td>")


def test_malformed_warnings_never_crash():
    for warnings in ("not a list", [None, 3, "x"], [{"code": 7}], [{"message": "Something to know."}], [{}]):
        bundle = _sample()
        bundle["release"]["warnings"] = warnings
        bundle["policy"]["forbid_training_data_overlap"] = "perhaps"
        page = render_dossier_html(bundle)
        assert "predates the policy setting" in _policy_sentence(page)
    bundle["release"]["warnings"] = [
        {"code": "evaluated_on_training_data", "shared_examples": 5, "data_suite_version": 2}
    ]
    callout = _text(render_dossier_html(bundle).split('id="evidence-warnings"')[1].split("</div>")[0])
    assert "5 of its examples are also in the run's data (suite version #2)" in callout  # no message: the figures


def test_the_dossier_with_warnings_renders_byte_identical_pdfs():
    bundle = _warned()
    pdf = render_dossier_pdf(bundle)
    assert pdf.startswith(b"%PDF-")
    assert render_dossier_pdf(copy.deepcopy(bundle)) == pdf
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
        assert "Read this evidence with care" in " ".join(text.split())
