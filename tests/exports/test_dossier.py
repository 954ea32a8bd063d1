"""The release dossier: schema of the evidence bundle, HTML and PDF rendering, determinism, charts.

No database: the dossier is rendered only from the evidence bundle dict.
"""

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from exports import charts
from exports.dossier import (
    FLIPS_SHOWN,
    LEDGER_EVENTS_SHOWN,
    SECTIONS,
    bundle_digest,
    render_dossier_html,
    render_dossier_pdf,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).with_name("sample_bundle.json")
SCHEMA = ROOT / "exports" / "evidence-bundle.schema.json"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sample_pdf(bundle) -> tuple[bytes, float]:
    started = time.perf_counter()
    pdf = render_dossier_pdf(bundle)
    return pdf, time.perf_counter() - started


def _validate(schema: dict, instance: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def _empty_bundle(bundle: dict) -> dict:
    """A valid bundle with everything optional missing: nothing judged, reviewed, escalated or decided."""
    b = copy.deepcopy(bundle)
    b["release"].update(status="evaluating", gate_zone="", review_outcome=None, rollout=[])
    b["verdict"] = {"status": "evaluating", "gate_zone": "", "summary": "Release 12 is evaluating, gate none."}
    b.pop("candidates")
    b["compression_run"].update(provenance=None, provenance_envelope=None, wall_seconds=None)
    b["taxonomy"] = None
    b["evaluations"] = {"baseline": None, "candidate": None}
    b["comparison"] = None
    for key in ("gate", "flips_excerpt", "reviews", "escalations", "incidents", "decisions"):
        b[key] = []
    b["ledger"] = {"events": [], "checkpoint": None, "public_key_id": b["ledger"]["public_key_id"]}
    return b


# --------------------------------------------------------------------------------------------------
# Schema and digest
# --------------------------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_sample_bundle_validates_and_has_the_documented_shape(schema, bundle):
    assert _validate(schema, bundle) == []
    assert {g.split(":")[0] for g in bundle["comparison"]["groups"]} == {"overall", "slice", "subgroup"}
    assert sum(g.startswith("slice:") for g in bundle["comparison"]["groups"]) == 3
    assert sum(g.startswith("subgroup:") for g in bundle["comparison"]["groups"]) == 3
    assert len(bundle["gate"]) == 5 and {v["zone"] for v in bundle["gate"]} == {"green", "amber", "red"}
    assert len(bundle["ledger"]["events"]) == 30
    for run in ("baseline", "candidate"):
        assert len(bundle["evaluations"][run]["metrics"]["overall"]["ece_bins"]) == 15


def test_empty_bundle_validates(schema, bundle):
    assert _validate(schema, _empty_bundle(bundle)) == []


def test_schema_rejects_a_wrong_bundle(schema, bundle):
    bad = copy.deepcopy(bundle)
    bad["release"]["candidate_digest"] = "not-a-digest"
    bad["gate"][0]["zone"] = "purple"
    bad["unexpected"] = 1
    errors = _validate(schema, bad)
    assert any("release/candidate_digest" in e for e in errors)
    assert any("gate/0/zone" in e for e in errors)
    assert any("unexpected" in e for e in errors)


def test_bundle_digest_is_sha256_of_canonical_json_and_ignores_key_order(bundle):
    canonical = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert bundle_digest(bundle) == hashlib.sha256(canonical).hexdigest()
    reordered = json.loads(json.dumps(bundle, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    assert bundle_digest(reordered) == bundle_digest(bundle)
    changed = copy.deepcopy(bundle)
    changed["release"]["version"] += 1
    assert bundle_digest(changed) != bundle_digest(bundle)


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------


def test_html_has_every_section_the_digests_and_the_charts(bundle):
    html = render_dossier_html(bundle)
    for anchor, title in SECTIONS:
        assert f'id="{anchor}"' in html, anchor
        assert title in html, title
    assert html.count(bundle_digest(bundle)) >= 2  # cover and the verification appendix (and the running footer)
    assert bundle["release"]["candidate_digest"] in html
    assert bundle["ledger"]["checkpoint"]["signature"] in html
    assert html.count("<svg") == 5  # gate, forest plot, stability, reliability, subgroups
    for text in (
        "RED",
        "Rolling out",
        "4 November 2026",
        "Prof. Henrik Sandvik",
        "Cohen",
        "pyhanko sign validate",
        "pdfsig",
        "DSSE",
        "gitCommit",
        "Adversarial unsafe recall change",
        "EU AI Act Art. 10",
        bundle["artifacts"][0]["digest"],
        "torch-quantized",
        "22,713,602",
        "ext-adv-0113",
        "Would need the conversation context",
        "runtime guard",
        "Flagged-rate spike",
        "release.rollout_started",
        "safeshrink.ledger.checkpoint/v1",
        "Intel(R) Xeon(R)",
        "transformers 5.23.0",
        "structured_prune",
        bundle["compression_run"]["provenance_envelope"]["signatures"][0]["keyid"],
    ):
        assert text.lower() in html.lower(), text


def test_html_escapes_bundle_text(bundle):
    b = copy.deepcopy(bundle)
    b["experiment"]["name"] = "<script>alert(1)</script>"
    b["flips_excerpt"][0]["text"] = "<img src=x onerror=alert(1)>"
    b["comparison"]["groups"]["subgroup:<script>x</script>"] = b["comparison"]["groups"].pop("subgroup:women")
    html = render_dossier_html(b)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_html_caps_long_tables(bundle):
    b = copy.deepcopy(bundle)
    b["flips_excerpt"] = (b["flips_excerpt"] * 3)[: FLIPS_SHOWN + 5]
    events = b["ledger"]["events"]
    b["ledger"]["events"] = [dict(events[i % len(events)], seq=1000 + i) for i in range(200)]
    html = render_dossier_html(b)
    assert f"{FLIPS_SHOWN} of 12 flipped decisions" in html
    assert f"The last {LEDGER_EVENTS_SHOWN} of the 200 ledger events" in html
    assert "1199  " in html and "\n1169  " not in html and "1170  " in html


def test_empty_and_null_parts_render_with_one_line_each(bundle):
    html = render_dossier_html(_empty_bundle(bundle))
    for line in (
        "No risk taxonomy",
        "not judged",
        "No comparison between the candidate and the baseline",
        "No per-bin calibration data",
        "No subgroup metrics",
        "No runtime measurements",
        "No flipped decisions",
        "No blind review outcome",
        "No escalations were opened",
        "No incidents have been reported",
        "No decisions have been recorded",
        "No rollout plan",
        "No ledger events",
        "No signed ledger checkpoint",
        "No provenance statement",
        "not signed (no DSSE envelope",
    ):
        assert line in html, line
    assert "<svg" not in html


def test_a_bare_or_malformed_bundle_never_crashes():
    for broken in (
        {},
        {
            "release": None,
            "gate": [None, 3, {"zone": None}],
            "comparison": {"groups": {"overall": None}},
            "evaluations": {"baseline": {"metrics": {"overall": {"ece_bins": [None, {"lower": "x"}]}}}},
            "ledger": {"events": [{"seq": "a"}], "checkpoint": {"seq": None}},
            "decisions": [{"created_at": "yesterday"}, {"created_at": None}],
            "flips_excerpt": "oops",
        },
    ):
        html = render_dossier_html(broken)
        assert "Appendix: How to verify this document" in html


# --------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------


def test_pdf_renders_fast_enough_and_is_deterministic(bundle, sample_pdf):
    pdf, seconds = sample_pdf
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf
    assert bundle_digest(bundle).encode() in pdf  # the fixed /ID
    print(f"dossier rendered in {seconds:.2f} s, {len(pdf)} bytes")
    assert seconds < 30  # a loose guard against pathologies; measured times are in the report
    assert render_dossier_pdf(bundle) == pdf
    # Same content, different key order (e.g. the bundle read back from its canonical JSON): same bytes.
    assert render_dossier_pdf(json.loads(json.dumps(bundle, sort_keys=True))) == pdf


def test_pdf_is_identical_in_another_process(bundle, sample_pdf):
    code = (
        "import django, hashlib, json, sys; django.setup();"
        "from exports.dossier import render_dossier_pdf;"
        "b = json.load(open(sys.argv[1], encoding='utf-8'));"
        "print(hashlib.sha256(render_dossier_pdf(b)).hexdigest())"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "PYTHONHASHSEED": "4242"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(SAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == hashlib.sha256(sample_pdf[0]).hexdigest()


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_text_carries_the_digests_on_the_cover_and_in_every_footer(bundle, sample_pdf, tmp_path):
    path = tmp_path / "dossier.pdf"
    path.write_bytes(sample_pdf[0])
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")[:-1]
    assert len(pages) >= 8
    digest, candidate = bundle_digest(bundle), bundle["release"]["candidate_digest"]
    for number, page in enumerate(pages, start=1):
        flat = re.sub(r"\s+", "", page)
        assert f"evidencebundlesha256{digest}" in flat, number
        assert f"candidatesha256{candidate}" in flat, number
        assert f"Page{number}of{len(pages)}" in flat, number
    assert "Executive summary" in pages[1]


def test_empty_bundle_renders_a_pdf(bundle):
    pdf = render_dossier_pdf(_empty_bundle(bundle))
    assert pdf.startswith(b"%PDF-")


# --------------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------------


def _all_charts(bundle: dict) -> dict[str, str]:
    evaluations, comparison = bundle["evaluations"], bundle["comparison"]
    base, cand = evaluations["baseline"]["metrics"], evaluations["candidate"]["metrics"]
    return {
        "forest": charts.forest_plot(
            comparison["groups"],
            gate=bundle["gate"],
            policy_rules=bundle["policy"]["rules"],
            metrics=("accuracy", "unsafe_recall", "benign_fpr"),
        ),
        "reliability": charts.reliability_diagram(
            base["overall"]["ece_bins"],
            cand["overall"]["ece_bins"],
            baseline_ece=base["overall"]["ece"],
            candidate_ece=cand["overall"]["ece"],
        ),
        "subgroups": charts.subgroup_gaps(base, cand),
        "gate": charts.gate_chart(bundle["gate"]),
    }


def test_charts_are_well_formed_deterministic_svg(bundle):
    first, second = _all_charts(bundle), _all_charts(copy.deepcopy(bundle))
    for name, svg in first.items():
        assert svg.startswith("<svg") and svg == second[name], name
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
    reordered = json.loads(json.dumps(bundle, sort_keys=True))
    assert _all_charts(reordered) == first


def test_charts_escape_labels(bundle):
    b = copy.deepcopy(bundle)
    evil = "<script>alert('x')</script>"
    for source in (
        b["evaluations"]["baseline"]["metrics"],
        b["evaluations"]["candidate"]["metrics"],
        b["comparison"]["groups"],
    ):
        source[f"subgroup:{evil}"] = source.pop("subgroup:women")
    b["gate"][0]["title"] = evil
    for name, svg in _all_charts(b).items():
        assert "<script" not in svg, name
        ET.fromstring(svg)
    svgs = "".join(_all_charts(b).values())
    assert "&lt;script&gt;" in svgs


def test_charts_show_the_evidence(bundle):
    svgs = _all_charts(bundle)
    assert "-0.112 red" in svgs["gate"] and "-0.046 amber" in svgs["gate"]
    # FNR = 1 - unsafe recall per subgroup; the candidate's largest gap is annotated.
    base, cand = bundle["evaluations"]["baseline"]["metrics"], bundle["evaluations"]["candidate"]["metrics"]
    rates = charts.subgroup_rates(base, cand)
    assert [r["subgroup"] for r in rates] == ["jewish", "muslims", "women"]
    fnrs = {r["subgroup"]: r["fnr"][1] for r in rates}
    assert fnrs["muslims"] == pytest.approx(1 - cand["subgroup:muslims"]["unsafe_recall"])
    gap = max(fnrs.values()) - min(fnrs.values())
    assert f"gap {gap:.3f}: muslims − jewish" in svgs["subgroups"]
    assert "ECE 0.017" in svgs["reliability"] and "ECE 0.039" in svgs["reliability"]
    assert svgs["forest"].count("<circle") == 3 * len(bundle["comparison"]["groups"])


def test_charts_handle_missing_data():
    assert charts.forest_plot(None) == "" and charts.forest_plot({}) == ""
    assert charts.reliability_diagram(None, []) == ""
    assert charts.subgroup_gaps(None, None) == ""
    assert charts.gate_chart([]) == ""
    svg = charts.gate_chart(
        [
            {
                "rule": "r",
                "title": "t",
                "value": None,
                "green_limit": 0.1,
                "red_limit": 0.2,
                "higher_is_better": False,
                "zone": "amber",
                "kind": "absolute",
            }
        ]
    )
    assert "no evidence" in svg
    svg = charts.forest_plot({"overall": {"metrics": {"accuracy": {"delta": None, "ci_low": None, "ci_high": None}}}})
    assert "n/a" in svg
    ET.fromstring(
        charts.reliability_diagram(
            [{"lower": 0.5, "upper": 0.6, "count": 3, "accuracy": None, "confidence": None}], None
        )
    )


def test_the_evaluation_runs_table_names_the_cpu_and_its_int8_kernels(bundle):
    from exports.dossier.evidence_sections import _evaluation_runs

    platform = {"cpu_model": "AMD EPYC", "isa": ["avx2", "fma"], "quantized_engine": "x86", "device": "cpu"}
    evaluations = {
        role: {**run, "runtime": {**(run.get("runtime") or {}), "platforms": [platform]}}
        for role, run in bundle["evaluations"].items()
        if isinstance(run, dict)
    }
    rows = _evaluation_runs(evaluations)
    assert [r["platforms"] for r in rows if not r["missing"]] == [
        ["AMD EPYC (avx2, fma; torch quantized engine x86)"]
    ] * len(evaluations)
    bare = _evaluation_runs({role: {**run, "runtime": {}} for role, run in evaluations.items()})
    assert all(r["platforms"] == [] for r in bare if not r["missing"])  # older bundles: nothing claimed


# --------------------------------------------------------------------------------------------------
# Evaluation conditions and decision stability
# --------------------------------------------------------------------------------------------------

PROFILE = {
    "batch_size": 16,
    "batching": "length_sorted",
    "padding_side": "left",
    "max_length": 96,
    "threads": 4,
    "device": "cpu",
    "isa": ["avx2", "fma", "avx512_vnni"],
    "quantized_engine": "x86",
}
PLATFORM = {
    "cpu_model": "AMD EPYC 9654",
    "isa": ["avx2", "fma", "avx512f", "avx512_vnni"],
    "quantized_engine": "x86",
    "torch": "2.13.0+cpu",
    "device": "cpu",
    "machine": "x86_64",
}
# Per group: unstable decisions (baseline, candidate) and unstable flips; slices add up to overall.
UNSTABLE = {
    "overall": (6, 18, 3),
    "slice:routine": (1, 3, 1),
    "slice:edge": (2, 5, 1),
    "slice:adversarial": (3, 10, 1),
    "subgroup:women": (1, 4, 1),
    "subgroup:muslims": (2, 6, 1),
    "subgroup:jewish": (0, 1, 0),
}


def _before_stability(bundle: dict) -> dict:
    """The sample bundle as evidence recorded before deployment profiles and stability passes: configuration
    keys at the top level, no platforms, no stability anywhere, no flip basis."""
    b = copy.deepcopy(bundle)
    for run in b["evaluations"].values():
        run["config"] = {k: v for k, v in run["config"].items() if k not in ("profile", "stability_seed")}
        run["config"].update(batch_size=32, max_length=64, device="cpu", threads=2)
        run["runtime"].pop("platforms", None)
        run.pop("stability", None)
    comparison = b["comparison"]
    for key in ("stability", "runtime"):
        comparison.pop(key, None)
    for key in ("profile", "stable_test"):
        comparison["statistics"].pop(key, None)
    for group in comparison["groups"].values():
        for key in ("stable_flips", "mcnemar_stable", "instability"):
            group.pop(key, None)
    for key in ("flip_basis", "required_profile"):
        b["policy"].pop(key, None)
    for item in (*b["gate"], *b["flips_excerpt"]):
        item.pop("flip_basis", None)
        item.pop("stable", None)
    return b


def _with_stability(bundle: dict, *, carried: bool = True) -> dict:
    """The sample bundle with stability figures of its own (UNSTABLE), a declared profile (PROFILE) and a
    platform (PLATFORM). Always: what a comparison's groups and verdicts record (per-group stable flips,
    McNemar on stable flips, instability shares, the flip-rate verdict's flip basis). `carried`: also
    comparison.stability (counts), policy.flip_basis and each flip's `stable`; without it, a bundle that
    carries none of these, for a dossier that must read what the groups record."""
    b = _before_stability(bundle)
    for run in b["evaluations"].values():
        run["config"] = {"decision_threshold": 0.5, "stability_seed": 0, "profile": dict(PROFILE)}
        run["runtime"]["platforms"] = [dict(PLATFORM)]
    b["comparison"]["statistics"].update(profile=dict(PROFILE), stable_test="McNemar exact on stable flips only")
    summaries = {"baseline": {"groups": {}}, "candidate": {"groups": {}}}
    for key, group in b["comparison"]["groups"].items():
        base_unstable, cand_unstable, unstable_flips = UNSTABLE[key]
        group["stable_flips"] = group["flips"] - unstable_flips
        group["instability"] = {"baseline": base_unstable / group["n"], "candidate": cand_unstable / group["n"]}
        main = group["mcnemar"]
        main.update(p_holm=min(1.0, main["p_value"] * 7), p_bh=min(1.0, main["p_value"] * 3))
        b_stable = max(main["b"] - unstable_flips, 0)
        c_stable = main["c"] - (unstable_flips - (main["b"] - b_stable))
        group["mcnemar_stable"] = {"b": b_stable, "c": c_stable, "p_value": 0.5, "p_holm": 1.0, "p_bh": 1.0}
        for role, unstable in (("baseline", base_unstable), ("candidate", cand_unstable)):
            share = {"n": group["n"], "unstable": unstable, "unstable_rate": unstable / group["n"]}
            summaries[role]["groups"][key] = share
            if key == "overall":
                summaries[role].update(share)
    b["comparison"]["groups"]["overall"]["mcnemar_stable"].update(p_value=0.0703, p_holm=0.4921)
    for verdict in b["gate"]:
        verdict["flip_basis"] = "stable" if verdict["metric"] == "flip_rate" else None
    if carried:
        b["comparison"]["stability"] = {
            "method": "second pass: batches drawn at random (seeded)",
            "seed": 0,
            **summaries,
            "flips": {"stable": 9, "unstable": 3},
        }
        b["policy"].update(flip_basis="stable", required_profile={"batch_size": 16, "batching": "length_sorted"})
        b["comparison"]["runtime"] = copy.deepcopy(bundle["comparison"]["runtime"])
        for i, flip in enumerate(b["flips_excerpt"]):
            flip["stable"] = i >= 3
    return b


def test_bundles_before_and_with_stability_validate(schema, bundle):
    assert _validate(schema, _before_stability(bundle)) == []
    assert _validate(schema, _with_stability(bundle)) == []
    assert _validate(schema, _with_stability(bundle, carried=False)) == []


def test_dossier_states_the_evaluation_conditions(bundle):
    html = render_dossier_html(_with_stability(bundle))
    conditions = html.split('id="conditions"')[1].split("</section>")[0]
    for text in (
        "<td>Batch size</td><td>16</td>",
        "length_sorted (sorted by token length",
        "<td>Padding side</td><td>left</td>",
        "96 tokens",
        "<td>Threads</td><td>4</td>",
        "avx2, fma, avx512_vnni",
        "<td>Quantized engine</td><td>x86</td>",
        "AMD EPYC 9654 (avx2, fma, avx512f, avx512_vnni; torch quantized engine x86), torch 2.13.0+cpu",
        "<td>baseline and candidate</td><td>yes</td>",
        "The threshold policy requires batch size 16, batching length_sorted (sorted by token length",
        "Runtime ratios the gate judges (candidate / baseline: throughput 3.16×; p95 latency 0.33×)",
        "; on worker-2, Intel(R) Xeon(R) Gold 6338",
    ):
        assert text in conditions, text
    assert "predate declared profiles" not in conditions and "not like for like" not in conditions
    assert "profile=" not in html  # the runs table leaves the profile to its own table

    other = _with_stability(bundle)
    other["evaluations"]["candidate"]["runtime"]["platforms"] = [dict(PLATFORM, isa=["avx2", "fma"])]
    other["evaluations"]["candidate"]["config"]["profile"]["batch_size"] = 1
    conditions = render_dossier_html(other).split('id="conditions"')[1].split("</section>")[0]
    assert (
        "<td>baseline</td><td>yes</td>" in conditions
        and "<td>candidate</td><td>no: lacks avx512_vnni</td>" in conditions
    )
    assert "not like for like" in conditions


def test_dossier_of_older_evidence_states_the_settings_it_ran_with(bundle):
    html = render_dossier_html(_before_stability(bundle))
    conditions = html.split('id="conditions"')[1].split("</section>")[0]
    assert "predate declared profiles" in conditions
    assert "<td>Batch size</td><td>32</td>" in conditions and "<td>Threads</td><td>2</td>" in conditions
    assert "<td>CPU instruction sets</td><td>not declared</td>" in conditions
    assert "No platform is recorded for the baseline and candidate runs" in conditions
    assert "The threshold policy requires" not in conditions and "Runtime ratios" not in conditions
    section = html.split('id="stability"')[1].split("</section>")[0]
    assert "No stability pass is recorded for this comparison" in section and "<table" not in section
    assert "Decision stability</td><td>No stability pass recorded" in html  # the executive summary says so too
    assert "Stable: “—” where the bundle does not say" in html


def test_dossier_shows_the_stability_of_both_models_and_the_tests_on_stable_flips(bundle):
    b = _with_stability(bundle)
    html = render_dossier_html(b)
    section = html.split('id="stability"')[1].split("</section>")[0]
    for text in (
        "<td>Unstable, baseline</td><td>0.5% (6 of 1,200)</td>",
        "<td>Unstable, candidate</td><td>1.5% (18 of 1,200)</td>",
        "<strong>9 stable</strong>, <strong>3 unstable</strong>",
        "policy: stable flips only; Share of decisions flipped counted stable flips only",
        'on stable flips only<br><span class="small muted">McNemar exact on stable flips only</span>',
        "stable flips: b / c, p, Holm p (reported)",
        # adversarial: 10 of 300 candidate decisions unstable, 4 stable and 1 unstable flip, McNemar 5/0 vs 4/0
        '<td class="num">1.0% (3 of 300)</td><td class="num">3.3% (10 of 300)</td><td class="num">4 / 1</td>',
        '5 / 0<br><span class="ci">p 0.062 · Holm 0.438</span>',
        '7 / 2<br><span class="ci">p 0.070 · Holm 0.492</span>',
        "Figure 3. Share of each group",
    ):
        assert text in section, text
    assert html.count("<svg") == 5 and "Figure 4. Reliability" in html and "Figure 5. Per subgroup" in html
    summary = html.split("Decision stability</td><td>")[1].split("</td>")[0]
    assert summary.startswith("Decisions that changed when the batches were recomposed: baseline 0.5% (6 of 1,200)")
    assert "McNemar reported on stable flips only: baseline right/candidate wrong 7, the reverse 2" in summary
    assert "p = 0.070 (Holm 0.492)" in summary
    # The flips table marks each flip; the first three of the excerpt are the unstable ones.
    flips = html.split('id="flips"')[1].split("</section>")[0]
    assert "Of those shown, 9 are stable" in flips and "3 unstable" in flips
    assert flips.count('<td class="open">no</td>') == 3 and flips.count("<td>yes</td>") == 9


def test_dossier_reads_stability_from_the_groups_when_the_bundle_carries_no_summary(bundle):
    """Bundles that carry only what a comparison's groups and verdicts record: shares without counts, the
    flips from the overall group, the basis from the flip-rate verdict."""
    html = render_dossier_html(_with_stability(bundle, carried=False))
    section = html.split('id="stability"')[1].split("</section>")[0]
    assert "<td>Unstable, candidate</td><td>1.5%</td>" in section
    assert "<strong>9 stable</strong>, <strong>3 unstable</strong>" in section
    assert (
        "the policy's flip basis is not in the bundle; Share of decisions flipped counted stable flips only" in section
    )
    assert "on stable flips only" in section and html.count("<svg") == 5
    assert "Stable: “—” where the bundle does not say" in html


def test_a_comparison_whose_stability_says_every_flip_was_counted(bundle):
    b = _with_stability(bundle)
    b["policy"]["flip_basis"] = "all"
    for verdict in b["gate"]:
        if verdict["metric"] == "flip_rate":
            verdict["flip_basis"] = "all"
    section = render_dossier_html(b).split('id="stability"')[1].split("</section>")[0]
    assert "policy: every flip; Share of decisions flipped counted every flip" in section
    assert "on every flip of the main pass" in section and "every flip: b / c, p, Holm p (reported)" in section


def test_stability_chart_is_deterministic_escaped_and_empty_without_data(bundle):
    groups = _with_stability(bundle)["comparison"]["groups"]
    svg = charts.instability_chart(groups)
    assert svg == charts.instability_chart(json.loads(json.dumps(groups, sort_keys=True)))
    ET.fromstring(svg)
    assert svg.count("<rect") == 2 * len(groups) + 2  # two bars per group, two legend keys
    assert "1.5%" in svg and "3.3%" in svg and "subgroup: muslims" in svg
    assert [key for key, *_ in charts.instability_shares(groups)][:4] == [
        "overall",
        "slice:routine",
        "slice:edge",
        "slice:adversarial",
    ]
    groups["subgroup:<script>x</script>"] = groups.pop("subgroup:women")
    evil = charts.instability_chart(groups)
    assert "<script" not in evil and "&lt;script&gt;" in evil
    ET.fromstring(evil)
    assert charts.instability_chart(None) == "" and charts.instability_chart({}) == ""
    assert charts.instability_chart(_before_stability(bundle)["comparison"]["groups"]) == ""  # no stability pass
    ET.fromstring(charts.instability_chart({"overall": {"instability": {"baseline": None, "candidate": 0.0}}}))


def test_stability_bundle_renders_a_pdf(bundle):
    pdf = render_dossier_pdf(_with_stability(bundle))
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_malformed_stability_and_conditions_never_crash(bundle):
    b = _with_stability(bundle)
    b["comparison"]["stability"] = "oops"
    b["comparison"]["groups"]["overall"]["instability"] = [1]
    b["comparison"]["groups"]["slice:edge"]["mcnemar_stable"] = 3
    b["comparison"]["runtime"] = {"measurement": {"error": 5}}
    b["policy"].update(flip_basis=["stable"], required_profile={"batching": ["x"], "threads": None})
    b["gate"][0]["flip_basis"] = 7
    b["flips_excerpt"][0]["stable"] = "yes"
    b["evaluations"]["baseline"]["config"] = {"profile": "oops"}
    b["evaluations"]["baseline"]["stability"] = [None]
    b["evaluations"]["candidate"]["runtime"]["platforms"] = [None, {"isa": "avx2", "quantized_engine": ["x"]}]
    html = render_dossier_html(b)
    assert "Appendix: How to verify this document" in html and "The paired runtime measurement failed (5)" in html


def test_runtime_rows_take_timings_from_the_paired_measurement_and_memory_from_the_runs():
    from exports.dossier.evidence_sections import _runtime

    runs = {
        "baseline": {"runtime": {"example_latency_p95_s": 0.010, "peak_rss_bytes": 1000}},
        "candidate": {"runtime": {"example_latency_p95_s": 0.002, "peak_rss_bytes": 800}},  # timed at another time
    }
    paired = {
        "measurement": {"method": "paired"},
        "baseline": {"example_latency_p95_s": 0.004},
        "candidate": {"example_latency_p95_s": 0.003},
    }
    rows = {r["label"]: r for r in _runtime(runs, {"runtime": paired})}
    latency = rows["Per-example latency p95"]
    assert latency["source"] == "paired timing" and latency["ratio"] == "0.75×"  # 0.003 / 0.004, not 0.002 / 0.010
    assert rows["Peak resident memory"]["source"] == "evaluation runs"
    # a measurement that failed, or none at all: the runs' own figures
    for comparison in ({"runtime": {**paired, "measurement": {"error": "no artifact"}}}, None):
        assert {r["source"] for r in _runtime(runs, comparison)} == {"evaluation runs"}
