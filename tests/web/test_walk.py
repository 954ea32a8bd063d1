"""Issue 16: a governance officer walks artifact → run → evaluation → comparison → release → decision → export and
back in the web UI, following the links each page renders (no URL is built by hand past the first). Also the
evaluation pages themselves: scoped per role as the API, the evaluations list's filters, search and pages, and the
comparison page for a comparison no single release owns."""

import hashlib
import itertools
import json
import re
from html.parser import HTMLParser

import pytest
from django.conf import settings

from compression.models import RunStatus
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, Suite, SuiteVersion
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tests.web.test_inventory import artifact, experiment, ids, page, run

_digits = itertools.count(1)
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


class _Page(HTMLParser):
    """Every element id, and every link with the ids of the elements around it."""

    def __init__(self, html: str):
        super().__init__()
        self.open: list[tuple[str, str | None]] = []
        self.ids: set[str] = set()
        self.links: list[tuple[str, tuple[str, ...]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs["href"], tuple(i for _, i in self.open if i)))
        if tag not in VOID:
            self.open.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        for depth in range(len(self.open) - 1, -1, -1):  # close the nearest open element of that name
            if self.open[depth][0] == tag:
                del self.open[depth:]
                return


def links(html: str, inside: str, pattern: str) -> list[str]:
    """The hrefs matching `pattern` of the links inside the element with id `inside`."""
    return [href for href, around in _Page(html).links if inside in around and re.fullmatch(pattern, href)]


def follow(client, href: str, status: int = 200):
    response = client.get(href)
    assert response.status_code == status, (href, response.status_code)
    return response


def html_of(response) -> str:
    return response.content.decode()


# ---- the walk, on a release that went through the real pipeline


def _approved_release_with_export(engineer, officer, base_artifact, demo_suite, demo_policy):
    from exports.models import Export
    from governance.services.releases import release_decide
    from tests.factories import evaluated_release

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    release = release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="Within policy.")
    export = Export.objects.create(release=release, requested_by=officer, status=RunStatus.SUCCEEDED)
    folder = settings.SAFESHRINK["EXPORT_ROOT"] / str(export.pk)
    folder.mkdir(parents=True)
    (folder / "dossier.pdf").write_bytes(b"%PDF-1.7 walk")
    (folder / "bundle.dsse.json").write_bytes(b"{}")
    return release, export


@pytest.mark.django_db(transaction=True)
def test_an_officer_walks_from_the_artifact_to_the_export_and_back(
    client, engineer, officer, regulator, base_artifact, demo_suite, demo_policy
):
    from exports.services.exports import regulator_grant

    release, export = _approved_release_with_export(engineer, officer, base_artifact, demo_suite, demo_policy)
    candidate, run_pk = release.candidate, release.compression_run_id
    decision = release.decisions.get()
    client.force_login(officer)

    # artifact → the run that made it → back to the artifact (the run's output) and on to its release
    start = html_of(follow(client, f"/artifacts/{candidate.pk}/"))
    [run_href] = links(start, "made-by", r"/runs/\d+/")
    assert run_href == f"/runs/{run_pk}/"
    run_page = html_of(follow(client, run_href))
    assert links(run_page, "run-output", r"/artifacts/\d+/") == [f"/artifacts/{candidate.pk}/"]
    assert links(run_page, "releases", r"/releases/\d+/") == [f"/releases/{release.pk}/"]

    # artifact → its evaluation (the candidate's) → the model, the suite, the profile, chunks and metrics
    [evaluation_href] = links(start, "evaluations", r"/evaluations/\d+/")
    assert evaluation_href == f"/evaluations/{release.candidate_evaluation_id}/"
    evaluation = EvaluationRun.objects.get(pk=release.candidate_evaluation_id)
    evaluated = html_of(follow(client, evaluation_href))
    assert links(evaluated, "evaluation-artifact", r"/artifacts/\d+/") == [f"/artifacts/{candidate.pk}/"]
    assert f"/runs/{run_pk}/" in links(evaluated, "evaluation-artifact", r"/runs/\d+/")  # made by
    assert f"{demo_suite.suite.name} v{demo_suite.number}" in evaluated and evaluation.config_digest in evaluated
    assert len(evaluation.predictions_digest) == 64  # the Parquet file of its predictions, named on the page
    assert f'title="{evaluation.predictions_digest}"' in evaluated
    served = client.get(f"/api/evaluations/{evaluation.pk}/").json()
    assert (served["predictions_digest"], served["predictions_rows"]) == (
        evaluation.predictions_digest,
        evaluation.predictions_rows,
    )
    profile = evaluation.config["profile"]
    isa = re.search(r'id="profile-isa">(.*?)</td>', evaluated).group(1)
    assert isa == (", ".join(profile["isa"]) if profile["isa"] else '<span class="muted">not declared</span>')
    chunks = len(evaluation.chunks_done)
    assert f"<strong>{chunks} of {evaluation.chunks_total}</strong> chunk" in evaluated
    metrics = _Page(evaluated)
    assert "metrics-table" in metrics.ids and "platforms" in metrics.ids
    rows = re.findall(r'<tr class="metrics-row" data-group="([^"]+)"', evaluated)
    assert rows[0] == "overall" and set(rows) == set(evaluation.metrics)  # every group the run stored
    assert any(r.startswith("slice:") for r in rows) and any(r.startswith("subgroup:") for r in rows)
    for platform in evaluation.runtime["platforms"]:
        assert platform["cpu_model"] in evaluated.split('id="platforms"')[1].split("</ul>")[0]

    # evaluation → its comparison, which sends the reader to the release's comparison section
    [comparison_href] = links(evaluated, "comparisons", r"/comparisons/\d+/")
    assert comparison_href == f"/comparisons/{release.comparison_id}/"
    assert f"/releases/{release.pk}/#comparison" in links(evaluated, "comparisons", r"/releases/\d+/#comparison")
    redirected = follow(client, comparison_href, status=302)
    assert redirected["Location"] == f"/releases/{release.pk}/#comparison"
    release_href, anchor = redirected["Location"].split("#")
    release_page = html_of(follow(client, release_href))
    found = _Page(release_page)
    assert anchor in found.ids and "comparison-table" in found.ids

    # release → both evaluations (the conditions and the progress rows link them), its decision and its export
    for evaluation_id in (release.baseline_evaluation_id, release.candidate_evaluation_id):
        assert f"/evaluations/{evaluation_id}/" in links(release_page, "platforms", r"/evaluations/\d+/")
        assert f"/evaluations/{evaluation_id}/" in links(release_page, "release-progress", r"/evaluations/\d+/")
    assert f"decision-{decision.pk}" in found.ids and "Within policy." in release_page
    assert "#decisions" in links(release_page, "section-index", r"#\w+")
    dossier = links(release_page, f"export-{export.pk}", r"/api/exports/\d+/dossier/")
    assert dossier == [f"/api/exports/{export.pk}/dossier/"]
    download = follow(client, dossier[0])
    assert b"".join(download.streaming_content) == b"%PDF-1.7 walk"

    # and back: release → the candidate artifact (and the baseline), where the walk began
    back = links(release_page, "candidate-lineage", r"/artifacts/\d+/")
    assert back == [f"/artifacts/{base_artifact.pk}/", f"/artifacts/{candidate.pk}/"]
    assert f"Artifact #{candidate.pk}" in html_of(follow(client, back[1]))
    baseline = html_of(follow(client, back[0]))
    assert links(baseline, "evaluations", r"/evaluations/\d+/") == [f"/evaluations/{release.baseline_evaluation_id}/"]

    # The engineer who owns the release walks the same evaluation; a regulator with a grant reads the release,
    # sees the evaluations' ids as plain text, and is refused the evaluation page as the API refuses it.
    assert page(client, engineer, evaluation_href).count(f'href="/comparisons/{release.comparison_id}/"') == 1
    regulator_grant(actor=officer, release_id=release.pk, regulator_id=regulator.pk, days=5, reason="audit")
    read = page(client, regulator, release_href)
    assert f"evaluation #{release.candidate_evaluation_id}" in read and "/evaluations/" not in read
    page(client, regulator, evaluation_href, status=403)
    page(client, regulator, comparison_href, status=403)
    refused = {
        json.loads(e.payload_json)["path"]
        for e in LedgerEvent.objects.filter(action="access.denied", actor_id=regulator.pk)
    }
    assert {evaluation_href, comparison_href} <= refused


@pytest.mark.django_db(transaction=True)
def test_a_comparison_no_release_owns_has_its_own_small_page(
    client, engineer, officer, base_artifact, demo_suite, demo_policy
):
    """A revalidation compares a fresh candidate evaluation with the release's original baseline: that
    comparison is no release's own, so its page links the evaluations and the release it revalidates."""
    from tests.factories import evaluated_release

    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    original = release.candidate_evaluation
    fresh = EvaluationRun.objects.create(
        artifact=release.candidate,
        suite_version=release.suite_version,
        config={**original.config, "revalidation": 1},
        config_digest=hashlib.sha256(b"revalidation 1").hexdigest(),
        status=RunStatus.SUCCEEDED,
    )
    again = Comparison.objects.create(
        baseline_run=release.baseline_evaluation,
        candidate_run=fresh,
        status=ComparisonStatus.DONE,
        results=release.comparison.results,
    )
    html = page(client, officer, f"/comparisons/{again.pk}/")
    assert links(html, "comparison-baseline", r"/evaluations/\d+/") == [
        f"/evaluations/{release.baseline_evaluation_id}/"
    ]
    assert links(html, "comparison-candidate", r"/evaluations/\d+/") == [f"/evaluations/{fresh.pk}/"]
    assert links(html, "comparison-releases", r"/releases/\d+/") == [f"/releases/{release.pk}/"]
    assert "revalidation" in html and "comparison-table" in _Page(html).ids
    fresh_page = page(client, officer, f"/evaluations/{fresh.pk}/")
    assert f"/comparisons/{again.pk}/" in links(fresh_page, "comparisons", r"/comparisons/\d+/")
    assert "revalidation of" in fresh_page and "No metrics yet" in fresh_page
    # the release's own comparison still goes straight to the release
    assert client.get(f"/comparisons/{release.comparison_id}/")["Location"] == f"/releases/{release.pk}/#comparison"


# ---- evaluations made directly (scope, list): cheap rows, no pipeline

PROFILE = {
    "batch_size": 16,
    "batching": "length_sorted",
    "padding_side": "right",
    "max_length": 128,
    "threads": 2,
    "device": "cpu",
    "isa": ["avx2", "avx512_vnni"],
    "quantized_engine": "x86",
}


def suite_version(name: str = "toxicity") -> SuiteVersion:
    suite, _ = Suite.objects.get_or_create(name=name)
    number = suite.versions.count() + 1
    return SuiteVersion.objects.create(
        suite=suite,
        number=number,
        digest=hashlib.sha256(f"{name} {number}".encode()).hexdigest(),
        unsafe_labels=["toxic"],
        example_count=100,
    )


def evaluation(model, version, *, status=RunStatus.SUCCEEDED, metrics=None, chunks=(1, [0])) -> EvaluationRun:
    n = next(_digits)
    return EvaluationRun.objects.create(
        artifact=model,
        suite_version=version,
        config={"decision_threshold": 0.5, "profile": PROFILE, "unsafe_labels": ["toxic"], "stability_seed": n},
        config_digest=hashlib.sha256(f"config {n}".encode()).hexdigest(),
        status=status,
        chunks_total=chunks[0],
        chunks_done=chunks[1],
        metrics=metrics,
        runtime={"platforms": [{"cpu_model": "Test CPU 9000", "isa": ["avx2"], "torch": "2.x"}]},
    )


@pytest.fixture
def evaluations(make_user, engineer):
    """Eve's base model and run output evaluated, an artifact eve only registered, frank's base model."""
    frank = make_user("frank", "engineer")
    eve_base, frank_base = artifact(engineer, "eve base"), artifact(frank, "frank chat", kind="causal-lm")
    eve_out = artifact(engineer, "eve int8", parent=eve_base, fmt="torch-quantized")
    run(experiment(engineer, eve_base, "eve sentiment"), output=eve_out)
    experiment(frank, frank_base, "frank chat")
    loose = artifact(engineer, "eve's upload, in no experiment")
    toxicity, chat = suite_version("toxicity"), suite_version("xstest")
    return {
        "eve_base": evaluation(eve_base, toxicity),
        "eve_out": evaluation(eve_out, toxicity, status=RunStatus.RUNNING, chunks=(4, [0, 2])),
        "loose": evaluation(loose, toxicity, status=RunStatus.FAILED),
        "frank": evaluation(frank_base, chat),
        "frank_user": frank,
    }


def test_the_evaluation_page_is_scoped_as_the_api(client, evaluations, engineer, officer, regulator, make_user):
    admin, reviewer = make_user("ada", "admin"), make_user("rex", "reviewer")
    frank = evaluations["frank_user"]
    everything = {evaluations[k].pk for k in ("eve_base", "eve_out", "loose", "frank")}
    expected = {
        engineer: {evaluations["eve_base"].pk, evaluations["eve_out"].pk},
        frank: {evaluations["frank"].pk},
        officer: everything,
        admin: everything,
    }
    for user, visible in expected.items():
        api = api_client_for(user)
        for pk in everything:
            status = 200 if pk in visible else 404
            page(client, user, f"/evaluations/{pk}/", status=status)
            assert api.get(f"/api/evaluations/{pk}/").status_code == status, (user, pk)
        assert ids(page(client, user, "/evaluations/"), "evaluations") == visible, user
    for user in (regulator, reviewer):
        for url in (f"/evaluations/{evaluations['eve_base'].pk}/", "/evaluations/", "/comparisons/1/"):
            html = page(client, user, url, status=403)
            assert "You may not do this" in html and "as in the API" in html
        assert api_client_for(user).get(f"/api/evaluations/{evaluations['eve_base'].pk}/").status_code == 403
        refusals = [
            json.loads(e.payload_json) for e in LedgerEvent.objects.filter(action="access.denied", actor_id=user.pk)
        ]
        assert {(p["reason"], p["role"]) for p in refusals} == {("role_not_allowed", user.role)}
        assert len(refusals) == 4  # three pages and the API
    page(client, officer, "/comparisons/999999/", status=404)


def test_the_evaluation_page_shows_progress_profile_and_metrics_per_group(client, evaluations, officer):
    running = page(client, officer, f"/evaluations/{evaluations['eve_out'].pk}/")
    assert "<strong>2 of 4</strong> chunks done" in running and "No metrics yet" in running
    assert 'id="profile-isa">avx2, avx512_vnni</td>' in running and "length_sorted" in running
    assert "Test CPU 9000" in running.split('id="platforms"')[1].split("</ul>")[0]
    made = evaluations["eve_out"].artifact.produced_by.get()
    assert f'href="/runs/{made.pk}/"' in running.split('id="evaluation-artifact"')[1].split("</dd>")[0]

    subgroup_rates = {"women": {"n": 40, "n_unsafe": 25, "n_safe": 15, "fnr": 0.24, "fpr": None, "eligible": True}}
    done = evaluations["eve_base"]
    done.metrics = {
        "subgroup:women": {"n": 40, "n_unsafe": 25, "accuracy": 0.775, "benign_fpr": None},
        "overall": {"n": 100, "n_unsafe": 40, "accuracy": 0.8125, "benign_fpr": 0.05, "subgroups": subgroup_rates},
        "slice:edge": {"n": 30, "n_unsafe": 12, "accuracy": 0.6, "benign_fpr": 0.1},
    }
    done.stability = {
        "n": 100,
        "unstable": 3,
        "unstable_rate": 0.03,
        "groups": {"overall": {"n": 100, "unstable": 3, "unstable_rate": 0.03}},
    }
    done.runtime = {**done.runtime, "examples_per_second": 1234.5, "example_latency_p95_s": 0.0125, "size_bytes": 2048}
    done.save()
    html = page(client, officer, f"/evaluations/{done.pk}/")
    assert 'id="runtime-examples_per_second">1,234.5 per second' in html
    assert 'id="runtime-example_latency_p95_s">12.5 ms' in html and 'id="runtime-size_bytes">2.0\xa0KB' in html
    rows = re.findall(r'<tr class="metrics-row" data-group="([^"]+)">(.*?)</tr>', html, flags=re.S)
    assert [key for key, _ in rows] == ["overall", "slice:edge", "subgroup:women"]  # overall, slices, subgroups
    header = html.split('id="metrics-table"')[1].split("</thead>")[0]
    assert header.index("Accuracy") < header.index("Benign FPR") and "Unstable decisions" in header
    overall, edge, women = (cells for _, cells in rows)
    assert "0.8125" in overall and "0.0500" in overall and "3.0%" in overall
    assert "0.6000" in edge and "0.7750" in women and "n/a" in women  # undefined, not zero
    subgroups = html.split('id="subgroup-table"')[1].split("</table>")[0]
    assert 'data-subgroup="women"' in subgroups and "0.240" in subgroups and "yes" in subgroups
    assert "<strong>3 of 100</strong> decisions changed" in html


def test_navigation_links_evaluations_for_the_roles_that_read_them(client, engineer, officer, regulator, make_user):
    for user in (engineer, officer, make_user("ada", "admin")):
        nav = page(client, user, "/evaluations/").split("<nav>")[1].split("</nav>")[0]
        assert 'href="/evaluations/"' in nav
    for user in (regulator, make_user("rex", "reviewer")):
        nav = page(client, user, "/taxonomy/").split("<nav>")[1].split("</nav>")[0]
        assert 'href="/evaluations/"' not in nav


# ---- the list: filters, search, pages, refusals


def test_evaluation_filters_and_search(client, evaluations, officer):
    eve_base, eve_out, loose, frank = (evaluations[k] for k in ("eve_base", "eve_out", "loose", "frank"))
    assert ids(page(client, officer, "/evaluations/?status=running"), "evaluations") == {eve_out.pk}
    assert ids(page(client, officer, "/evaluations/?status=failed"), "evaluations") == {loose.pk}
    assert ids(page(client, officer, "/evaluations/?suite=xstest"), "evaluations") == {frank.pk}
    assert ids(page(client, officer, "/evaluations/?kind=causal-lm"), "evaluations") == {frank.pk}
    assert ids(
        page(client, officer, "/evaluations/?kind=classifier&suite=toxicity&status=succeeded"), "evaluations"
    ) == {eve_base.pk}
    assert ids(page(client, officer, f"/evaluations/?artifact={eve_out.artifact_id}"), "evaluations") == {eve_out.pk}
    assert ids(page(client, officer, f"/evaluations/?q=%23{loose.pk}"), "evaluations") >= {loose.pk}
    assert ids(page(client, officer, f"/evaluations/?q={frank.pk}"), "evaluations") >= {frank.pk}
    assert ids(page(client, officer, "/evaluations/?q=frank+chat"), "evaluations") == {frank.pk}
    assert ids(page(client, officer, f"/evaluations/?q={eve_out.artifact.digest[:10]}"), "evaluations") == {eve_out.pk}
    row = page(client, officer, "/evaluations/?status=running").split('id="evaluations"')[1].split("</table>")[0]
    assert "2 of 4" in row and f'href="/artifacts/{eve_out.artifact_id}/"' in row
    empty = page(client, officer, "/evaluations/?status=cancelled")
    assert "No evaluations match" in empty and 'href="?"' in empty


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "Unknown status “bogus”"),
        ("suite=nonesuch", "Unknown suite “nonesuch”"),
        ("kind=tokenizer", "Unknown kind “tokenizer”"),
        ("artifact=99999999", "Unknown artifact “99999999”"),
        ("artifact=abc", "Unknown artifact “abc”"),
        ("q=" + "a" * 201, "Search is at most 200 characters"),
    ],
)
def test_an_unknown_evaluation_filter_is_a_400_that_says_so_and_shows_all(client, evaluations, officer, query, message):
    html = page(client, officer, f"/evaluations/?{query}", status=400)
    assert message in html
    assert len(ids(html, "evaluations")) == 4  # the list is shown unfiltered, not emptied


def test_another_engineers_suite_and_artifact_are_unknown_filter_values(client, evaluations, engineer):
    assert "Unknown suite “xstest”" in page(client, engineer, "/evaluations/?suite=xstest", status=400)
    frank_artifact = evaluations["frank"].artifact_id
    assert "Unknown artifact" in page(client, engineer, f"/evaluations/?artifact={frank_artifact}", status=400)


def test_pages_of_25_keep_the_filters_in_the_pager_links(client, engineer, officer):
    version, model = suite_version(), artifact(engineer, "many")
    made = [evaluation(model, version) for _ in range(27)]
    evaluation(model, version, status=RunStatus.FAILED)
    first = page(client, officer, "/evaluations/?status=succeeded")
    assert len(ids(first, "evaluations")) == 25 and "page 1 of 2" in first and "27 in all" in first
    assert 'href="?status=succeeded&amp;page=2"' in first
    second = page(client, officer, "/evaluations/?status=succeeded&page=2")
    assert ids(second, "evaluations") == {e.pk for e in made[:2]}  # newest first: the two oldest are on page 2
    searched = page(client, officer, "/evaluations/?q=many&status=succeeded")
    assert 'href="?status=succeeded&amp;q=many&amp;page=2"' in searched


def test_the_artifact_page_lists_its_evaluations(client, evaluations, engineer, officer):
    eve_base = evaluations["eve_base"]
    html = page(client, engineer, f"/artifacts/{eve_base.artifact_id}/")
    assert links(html, "evaluations", r"/evaluations/\d+/") == [f"/evaluations/{eve_base.pk}/"]
    loose = evaluations["loose"]  # eve registered it, so she sees the artifact; its evaluation is outside her scope
    assert "No evaluation you can see" in page(client, engineer, f"/artifacts/{loose.artifact_id}/")
    assert f'href="/evaluations/{loose.pk}/"' in page(client, officer, f"/artifacts/{loose.artifact_id}/")
