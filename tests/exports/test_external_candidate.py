"""The evidence bundle and the dossier of a release whose candidate came from an external run: the candidate's
source is `external`/`reported` with everything the engineer reported, and both say the gate judged only
SafeShrink's own evaluation."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from exports.dossier import render_dossier_html

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "exports" / "evidence-bundle.schema.json").read_text(encoding="utf-8"))
SAMPLE = json.loads(Path(__file__).with_name("sample_bundle.json").read_text(encoding="utf-8"))


def _errors(bundle: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(bundle)]


@pytest.mark.django_db(transaction=True)
def test_the_bundle_and_dossier_say_the_candidate_was_reported(
    engineer, base_artifact, demo_suite, demo_policy, tmp_path
):
    from exports.selectors import bundle_build
    from tests.governance.external import evaluated_external_release

    release = evaluated_external_release(
        engineer=engineer,
        base_artifact=base_artifact,
        suite=demo_suite,
        policy=demo_policy,
        tmp_path=tmp_path,
        metrics={"accuracy": [0.25, 0.875], "reported_only_metric": [3.5]},
    )
    run = release.external_run
    bundle = bundle_build(release, checkpoint=None)
    assert _errors(bundle) == []
    source = bundle["candidate_source"]
    assert bundle["compression_run"] is None
    assert (source["source"], source["verification"], source["compression_run"]) == ("external", "reported", None)
    reported = source["run"]
    assert reported["run_uuid"] == run.run_uuid and reported["contents_digest"] == run.contents_digest
    assert reported["output_artifact"] == release.candidate_digest == bundle["release"]["candidate_digest"]
    assert reported["input_artifacts"] == [base_artifact.digest]
    assert {m["key"]: (m["value"], m["count"]) for m in reported["metrics"]} == {
        "accuracy": (0.875, 2),
        "reported_only_metric": (3.5, 1),
    }
    assert reported["provenance"]["verified"] is None and reported["seeds"] == [7]
    # The gate's values come from SafeShrink's comparison, which knows nothing of the reported metric.
    assert {v["metric"] for v in bundle["gate"]}.isdisjoint({"reported_only_metric"})
    assert "reported_only_metric" not in json.dumps(bundle["comparison"])
    assert [e for e in bundle["ledger"]["events"] if e["object_type"] == "external_run"]
    assert bundle["candidates"][0]["source"] == "external"

    html = render_dossier_html(bundle)
    assert "How the candidate was made" in html
    assert "Reported by the engineer, not verified by SafeShrink." in html
    assert run.run_uuid in html and "reported_only_metric" in html
    assert "judged only SafeShrink&#x27;s own evaluation" in html or "judged only SafeShrink's own evaluation" in html


def test_the_sample_bundle_of_an_own_run_says_verified_and_the_schema_pins_the_pairing():
    own = copy.deepcopy(SAMPLE)
    own["candidate_source"] = {
        "source": "safeshrink",
        "verification": "verified",
        "compression_run": own["compression_run"]["id"],
        "run": None,
        "gate_basis": "The gate judged only SafeShrink's own evaluation.",
    }
    assert _errors(own) == [] and _errors(SAMPLE) == []  # a bundle made before the field still validates
    html = render_dossier_html(own)
    assert "Made by SafeShrink's own compression run" in html and "not verified by SafeShrink" not in html
    lying = copy.deepcopy(own)
    lying["candidate_source"]["verification"] = "reported"  # an own run cannot be "reported", nor vice versa
    assert _errors(lying)
    external_without_run = copy.deepcopy(own)
    external_without_run["candidate_source"].update(source="external", verification="reported", compression_run=None)
    assert _errors(external_without_run)
