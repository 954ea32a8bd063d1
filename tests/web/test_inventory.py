"""The inventory pages (experiments, runs, artifacts, their detail pages and the artifact's lineage graph) with
Django's test client: scoped per role as the API, filters, search, pages, refusals, links."""

import hashlib
import itertools
import json
import re

import pytest
from django.utils import timezone

from compression.models import CompressionRun, Experiment, ModelArtifact, RunStatus
from governance.lineage_chart import MAX_PER_COLUMN, LineageNode, lineage_chart
from ledger.models import LedgerEvent
from tests.conftest import api_client_for
from tracking.models import ExternalRun, ExternalRunStatus

pytestmark = pytest.mark.django_db

_digits = itertools.count(1)


def artifact(owner, name="model", *, parent=None, kind="classifier", fmt="hf-dir", digest=None) -> ModelArtifact:
    n = next(_digits)
    return ModelArtifact.objects.create(
        name=name,
        digest=digest or hashlib.sha256(f"artifact {n}".encode()).hexdigest(),
        format=fmt,
        kind=kind,
        size_bytes=1000 * n,
        parameter_count=4096 + n,
        parent=parent,
        manifest=[{"path": "model.safetensors", "sha256": "0" * 64, "size": 1000 * n}],
        created_by=owner,
    )


def experiment(owner, base, name="exp", tier="medium") -> Experiment:
    return Experiment.objects.create(name=name, owner=owner, base_artifact=base, risk_tier=tier)


def run(exp, *, status=RunStatus.SUCCEEDED, method="dynamic_int8", output=None, parameters=None) -> CompressionRun:
    return CompressionRun.objects.create(
        experiment=exp,
        method=method,
        requested_by=exp.owner,
        status=status,
        output_artifact=output,
        parameters=parameters or {},
    )


def external(exp, *, output=None, inputs=(), status=ExternalRunStatus.FINISHED) -> ExternalRun:
    made = ExternalRun.objects.create(
        experiment=exp,
        recorded_by=exp.owner,
        method="gptq via my script",
        known_method="",
        status=status,
        started_at=timezone.now(),
        output_artifact=output,
    )
    made.input_artifacts.set(inputs)
    return made


def page(client, user, url, status=200) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def ids(html: str, kind: str) -> set[int]:
    """The records a list's rows are about: the link in each row's first cell (not a parent's or an output's)."""
    table = html.split(f'<table class="data" id="{kind}">')[1].split("</table>")[0] if 'class="data"' in html else ""
    return {int(pk) for pk in re.findall(rf'<tr>\s*<td><a class="record-link" href="/{kind}/(\d+)/"', table)}


def api_ids(user, endpoint: str) -> set[int]:
    return {row["id"] for row in api_client_for(user).get(f"/api/{endpoint}/?page_size=500").json()["results"]}


@pytest.fixture
def world(make_user, engineer, officer):
    """Two engineers' experiments, runs and artifacts."""
    frank = make_user("frank", "engineer")
    eve_base, frank_base = artifact(engineer, "eve base"), artifact(frank, "frank base", kind="causal-lm")
    eve_exp = experiment(engineer, eve_base, "eve sentiment", tier="high")
    frank_exp = experiment(frank, frank_base, "frank chat", tier="low")
    eve_out = artifact(engineer, "eve int8", parent=eve_base, fmt="torch-quantized")
    eve_run = run(eve_exp, output=eve_out)
    eve_failed = run(eve_exp, status=RunStatus.FAILED, method="structured_prune")
    frank_out = artifact(frank, "frank int8", parent=frank_base, kind="causal-lm", fmt="torch-quantized")
    frank_run = run(frank_exp, output=frank_out)
    frank_ext = external(frank_exp, inputs=[frank_base])
    return {
        "frank": frank,
        "eve": {"base": eve_base, "exp": eve_exp, "out": eve_out, "run": eve_run, "failed": eve_failed},
        "frank_": {"base": frank_base, "exp": frank_exp, "out": frank_out, "run": frank_run, "ext": frank_ext},
    }


# ---- scope, per role, as the API


def test_each_list_shows_what_the_api_gives_each_role(client, world, engineer, officer, make_user):
    admin = make_user("ada", "admin")
    eve, frank = world["eve"], world["frank_"]
    expected = {
        engineer: {
            "experiments": {eve["exp"].pk},
            "artifacts": {eve["base"].pk, eve["out"].pk},
            "runs": {eve["run"].pk, eve["failed"].pk},
        },
        officer: {
            "experiments": {eve["exp"].pk, frank["exp"].pk},
            "artifacts": {eve["base"].pk, eve["out"].pk, frank["base"].pk, frank["out"].pk},
            "runs": {eve["run"].pk, eve["failed"].pk, frank["run"].pk},
        },
    }
    expected[admin] = expected[officer]
    for user, lists in expected.items():
        for kind, wanted in lists.items():
            html = page(client, user, f"/{kind}/")
            assert ids(html, kind) == wanted == api_ids(user, kind), (user, kind)
    # SafeShrink's runs and external runs share the runs list; the external one only for those who see it.
    assert f'href="/external-runs/{frank["ext"].pk}/"' in page(client, officer, "/runs/")
    assert f'href="/external-runs/{frank["ext"].pk}/"' not in page(client, engineer, "/runs/")
    assert ids(page(client, world["frank"], "/experiments/"), "experiments") == {frank["exp"].pk}


def test_an_engineer_sees_artifacts_they_registered_and_those_their_experiments_reach(client, world, engineer):
    frank = world["frank"]
    registered = artifact(engineer, "eve's upload")
    again = artifact(frank, "frank's upload, registered again by eve")
    again.registrants.add(engineer)
    html = page(client, engineer, "/artifacts/")
    assert {registered.pk, again.pk} <= ids(html, "artifacts") == api_ids(engineer, "artifacts")
    assert world["frank_"]["base"].pk not in ids(html, "artifacts")


@pytest.mark.parametrize("role", ["regulator", "reviewer"])
def test_roles_the_api_refuses_get_a_403_page_recorded_in_the_ledger(client, world, make_user, role):
    user = make_user(f"{role}1", role)
    eve = world["eve"]
    urls = ["/experiments/", "/runs/", "/artifacts/", f"/experiments/{eve['exp'].pk}/", f"/artifacts/{eve['out'].pk}/"]
    # A record's page answers as the list does, before any look-up: neither existence nor absence shows.
    urls += [f"/runs/{eve['run'].pk}/", f"/runs/{eve['run'].pk}/provenance.json"]
    urls += [f"/external-runs/{world['frank_']['ext'].pk}/", "/runs/999999/", "/external-runs/999999/"]
    urls += ["/artifacts/999999/", "/experiments/999999/"]
    for url in urls:
        html = page(client, user, url, status=403)
        assert "You may not do this" in html and "as in the API" in html
        assert f'href="/artifacts/{eve["out"].pk}/"' not in html
    assert api_client_for(user).get("/api/experiments/").status_code == 403  # the API refuses them too
    refusals = [
        json.loads(e.payload_json) for e in LedgerEvent.objects.filter(action="access.denied", actor_id=user.pk)
    ]
    assert sorted(p["path"] for p in refusals) == sorted([*urls, "/api/experiments/"])
    assert {(p["reason"], p["method"], p["role"]) for p in refusals} == {("role_not_allowed", "GET", role)}
    client.force_login(user)
    for url in (f"/runs/{eve['run'].pk}/release/", f"/external-runs/{world['frank_']['ext'].pk}/release/"):
        assert client.post(url, {"suite_version": "1", "policy": "1"}).status_code == 403, url


def test_records_outside_the_scope_are_404(client, world, engineer):
    frank = world["frank_"]
    for url in (
        f"/experiments/{frank['exp'].pk}/",
        f"/artifacts/{frank['out'].pk}/",
        f"/runs/{frank['run'].pk}/",
        f"/external-runs/{frank['ext'].pk}/",
        "/experiments/999999/",
        "/runs/999999/",
    ):
        page(client, engineer, url, status=404)


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/artifacts/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# ---- filters, search, pages


def test_run_filters_and_search(client, world, officer):
    eve, frank = world["eve"], world["frank_"]
    assert ids(page(client, officer, "/runs/?status=failed"), "runs") == {eve["failed"].pk}
    assert ids(page(client, officer, "/runs/?method=structured_prune"), "runs") == {eve["failed"].pk}
    assert ids(page(client, officer, "/runs/?kind=causal-lm"), "runs") == {frank["run"].pk}
    assert ids(page(client, officer, "/runs/?risk_tier=high"), "runs") == {eve["run"].pk, eve["failed"].pk}
    assert ids(page(client, officer, "/runs/?owner=frank"), "runs") == {frank["run"].pk}
    assert ids(page(client, officer, f"/runs/?experiment={eve['exp'].pk}"), "runs") == {eve["run"].pk, eve["failed"].pk}
    external_only = page(client, officer, "/runs/?source=external")
    assert ids(external_only, "runs") == set() and f'href="/external-runs/{frank["ext"].pk}/"' in external_only
    own_only = page(client, officer, "/runs/?source=safeshrink")
    assert f"/external-runs/{frank['ext'].pk}/" not in own_only and len(ids(own_only, "runs")) == 3
    finished = page(client, officer, "/runs/?status=finished")  # an external run's status
    assert f'href="/external-runs/{frank["ext"].pk}/"' in finished and ids(finished, "runs") == set()
    # search: an id, a method, an experiment's name, an output digest's prefix
    assert ids(page(client, officer, f"/runs/?q=%23{eve['run'].pk}"), "runs") >= {eve["run"].pk}
    assert ids(page(client, officer, "/runs/?q=structured"), "runs") == {eve["failed"].pk}
    assert ids(page(client, officer, "/runs/?q=frank+chat&source=safeshrink"), "runs") == {frank["run"].pk}
    prefix = frank["out"].digest[:10]
    assert ids(page(client, officer, f"/runs/?q={prefix}"), "runs") == {frank["run"].pk}


def test_experiment_and_artifact_filters_and_search(client, world, officer):
    eve, frank = world["eve"], world["frank_"]
    assert ids(page(client, officer, "/experiments/?risk_tier=low"), "experiments") == {frank["exp"].pk}
    assert ids(page(client, officer, "/experiments/?owner=eve"), "experiments") == {eve["exp"].pk}
    assert ids(page(client, officer, "/experiments/?kind=causal-lm"), "experiments") == {frank["exp"].pk}
    assert ids(page(client, officer, "/experiments/?q=SENTIMENT"), "experiments") == {eve["exp"].pk}
    base_prefix = frank["base"].digest[:8]
    assert ids(page(client, officer, f"/experiments/?q={base_prefix}"), "experiments") == {frank["exp"].pk}

    assert ids(page(client, officer, "/artifacts/?kind=causal-lm"), "artifacts") == {frank["base"].pk, frank["out"].pk}
    assert ids(page(client, officer, "/artifacts/?format=torch-quantized"), "artifacts") == {
        eve["out"].pk,
        frank["out"].pk,
    }
    assert ids(page(client, officer, "/artifacts/?source=safeshrink"), "artifacts") == {eve["out"].pk, frank["out"].pk}
    assert ids(page(client, officer, "/artifacts/?source=registered"), "artifacts") == {
        eve["base"].pk,
        frank["base"].pk,
    }
    assert ids(page(client, officer, "/artifacts/?owner=frank"), "artifacts") == {frank["base"].pk, frank["out"].pk}
    children = page(client, officer, f"/artifacts/?parent={eve['base'].pk}")
    assert ids(children, "artifacts") == {eve["out"].pk} and 'id="parent-filter"' in children
    assert ids(page(client, officer, f"/artifacts/?q={eve['out'].digest[:12]}"), "artifacts") == {eve["out"].pk}
    assert ids(page(client, officer, f"/artifacts/?q={eve['out'].pk}"), "artifacts") >= {eve["out"].pk}
    assert ids(page(client, officer, "/artifacts/?q=frank+int8"), "artifacts") == {frank["out"].pk}
    made = page(client, officer, "/artifacts/?source=safeshrink")
    assert f'href="/runs/{eve["run"].pk}/"' in made  # the run that made each artifact, linked


def test_an_external_runs_output_is_its_own_source(client, world, officer):
    frank = world["frank_"]
    elsewhere = artifact(world["frank"], "made elsewhere", parent=frank["base"])
    external(frank["exp"], output=elsewhere, inputs=[frank["base"]])
    assert ids(page(client, officer, "/artifacts/?source=external"), "artifacts") == {elsewhere.pk}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/runs/?status=bogus", "Unknown status “bogus”"),
        ("/runs/?source=elsewhere", "Unknown source “elsewhere”"),
        ("/runs/?method=magic", "Unknown method “magic”"),
        ("/runs/?experiment=999999", "Unknown experiment “999999”"),
        ("/runs/?experiment=abc", "Unknown experiment “abc”"),
        ("/experiments/?risk_tier=extreme", "Unknown risk_tier “extreme”"),
        ("/experiments/?owner=nobody", "Unknown owner “nobody”"),
        ("/artifacts/?kind=tokenizer", "Unknown kind “tokenizer”"),
        ("/artifacts/?format=zip", "Unknown format “zip”"),
        ("/artifacts/?parent=12345678", "Unknown parent “12345678”"),
        ("/artifacts/?q=" + "a" * 201, "Search is at most 200 characters"),
    ],
)
def test_an_unknown_filter_value_is_a_400_that_says_so_and_shows_all(client, world, officer, url, message):
    html = page(client, officer, url, status=400)
    assert message in html
    kind = url.split("/")[1]
    assert ids(html, kind)  # the list is shown unfiltered, not emptied


def test_another_engineers_experiment_is_an_unknown_filter_value(client, world, engineer):
    html = page(client, engineer, f"/runs/?experiment={world['frank_']['exp'].pk}", status=400)
    assert "Unknown experiment" in html and ids(html, "runs") == {world["eve"]["run"].pk, world["eve"]["failed"].pk}


def test_pages_of_25_keep_the_filters_in_the_pager_links(client, engineer, officer):
    made = [artifact(engineer, f"quantized {i}", fmt="torch-quantized") for i in range(27)]
    artifact(engineer, "a base", fmt="hf-dir")
    first = page(client, officer, "/artifacts/?format=torch-quantized")
    assert len(ids(first, "artifacts")) == 25 and "page 1 of 2" in first and "27 in all" in first
    assert 'href="?format=torch-quantized&amp;page=2"' in first
    second = page(client, officer, "/artifacts/?format=torch-quantized&page=2")
    assert ids(second, "artifacts") == {a.pk for a in made[:2]}  # newest first: the two oldest are on page 2
    assert 'href="?format=torch-quantized&amp;page=1"' in second
    searched = page(client, officer, "/artifacts/?q=quantized&kind=classifier")
    assert 'href="?kind=classifier&amp;q=quantized&amp;page=2"' in searched


def test_empty_states_say_why_and_what_to_do(client, engineer, officer, world):
    newcomer_html = page(client, world["frank"], "/runs/?status=cancelled")
    assert "No runs match" in newcomer_html and 'href="?"' in newcomer_html
    ExternalRun.objects.all().delete()
    CompressionRun.objects.all().delete()
    html = page(client, engineer, "/runs/")
    assert "No runs yet" in html and "POST /api/experiments/&lt;id&gt;/runs/" in html
    assert "No experiments match “nothing like this”" in page(client, officer, "/experiments/?q=nothing+like+this")
    assert "No artifacts match" in page(client, officer, "/artifacts/?kind=judge")


# ---- detail pages, lineage, links


def test_the_experiment_page_shows_its_base_runs_and_links_them(client, world, engineer):
    eve = world["eve"]
    html = page(client, engineer, f"/experiments/{eve['exp'].pk}/")
    assert f'href="/artifacts/{eve["base"].pk}/"' in html.split('id="base-artifact"')[1].split("</dd>")[0]
    runs = html.split('id="runs"')[1].split("</section>")[0]
    assert f'href="/runs/{eve["run"].pk}/"' in runs and f'href="/runs/{eve["failed"].pk}/"' in runs
    assert f'href="/artifacts/{eve["out"].pk}/"' in runs  # the run's output
    assert "No releases yet" in html
    listing = page(client, engineer, "/experiments/")
    assert f'href="/runs/?experiment={eve["exp"].pk}"' in listing  # its runs, filtered


def test_the_artifact_page_shows_its_facts_and_lineage(client, world, officer, engineer):
    eve = world["eve"]
    child = artifact(engineer, "eve pruned", parent=eve["out"])
    user_run = run(experiment(engineer, eve["out"], "second round"), output=child)
    html = page(client, officer, f"/artifacts/{eve['out'].pk}/")
    facts = html.split('id="artifact"')[1].split("</section>")[0]
    out = eve["out"]
    assert out.digest in facts and "torch-quantized" in facts and f"{out.parameter_count:,}" in facts
    assert f"{out.size_bytes} bytes" in facts and "Made by a SafeShrink run" in facts
    assert f'href="/runs/{eve["run"].pk}/"' in facts and f'href="/artifacts/{eve["base"].pk}/"' in facts

    svg = html.split('id="lineage"')[1].split("</svg>")[0]
    assert "<svg" in svg and "<script" not in svg
    for href in (f"/artifacts/{eve['base'].pk}/", f"/runs/{eve['run'].pk}/", f"/runs/{user_run.pk}/"):
        assert f'<a href="{href}"' in svg, href
    assert f'<a href="/artifacts/{child.pk}/"' in svg
    assert f'<a href="/artifacts/{out.pk}/"' not in svg  # the artifact itself is the highlighted, unlinked box
    assert f'data-node="artifact:{out.pk}" class="current"' in svg
    for heading in ("Parent", "Made by", "This artifact", "Used by", "Children"):
        assert f">{heading}</text>" in svg
    assert "<path d=" in svg and svg.count("<polygon") == svg.count("<path d=")
    used = html.split('id="used-by"')[1].split("</section>")[0]
    assert f'href="/runs/{user_run.pk}/"' in used and f'href="/experiments/{user_run.experiment_id}/"' in used
    children = html.split('id="children"')[1].split("</section>")[0]
    assert f'href="/artifacts/{child.pk}/"' in children


def test_lineage_names_a_parent_outside_the_scope_by_id_only(client, world, engineer):
    frank_base = world["frank_"]["base"]
    derived = artifact(engineer, "eve's copy of frank's", parent=frank_base)
    html = page(client, engineer, f"/artifacts/{derived.pk}/")
    svg = html.split('id="lineage"')[1].split("</svg>")[0]
    assert f"Artifact #{frank_base.pk}" in svg and "not visible to you" in svg
    assert f'href="/artifacts/{frank_base.pk}/"' not in html and frank_base.digest[:12] not in html
    assert frank_base.name not in html


def test_runs_reading_an_artifact_as_judge_or_teacher_are_in_its_lineage(client, world, engineer, officer):
    judge = artifact(engineer, "judge", kind="judge", fmt="judge-rules")
    teacher = artifact(engineer, "teacher", kind="causal-lm")
    base = artifact(engineer, "student base", kind="causal-lm")
    distill = run(
        experiment(engineer, base, "distil"),
        method="behavioural_distill",
        parameters={"judge": judge.pk, "extra_teachers": [teacher.pk]},
    )
    for used in (judge, teacher):
        svg = page(client, officer, f"/artifacts/{used.pk}/").split('id="lineage"')[1].split("</svg>")[0]
        assert f'<a href="/runs/{distill.pk}/"' in svg
    inputs = page(client, engineer, f"/runs/{distill.pk}/").split('id="run-inputs"')[1].split("</dd>")[0]
    for role, used in (("base model", base), ("teacher", teacher), ("refusal judge", judge)):
        assert f'{role} <a class="record-link" href="/artifacts/{used.pk}/"' in inputs


def test_an_external_runs_inputs_and_output_are_in_the_lineage(client, world, officer):
    frank = world["frank_"]
    elsewhere = artifact(world["frank"], "made elsewhere", parent=frank["base"])
    made = external(frank["exp"], output=elsewhere, inputs=[frank["base"]])
    svg = page(client, officer, f"/artifacts/{elsewhere.pk}/").split('id="lineage"')[1].split("</svg>")[0]
    assert f'<a href="/external-runs/{made.pk}/"' in svg and "reported" in svg
    base_svg = page(client, officer, f"/artifacts/{frank['base'].pk}/").split('id="lineage"')[1].split("</svg>")[0]
    assert f'<a href="/external-runs/{made.pk}/"' in base_svg and f'<a href="/artifacts/{elsewhere.pk}/"' in base_svg
    detail = page(client, officer, f"/external-runs/{made.pk}/").split('id="run-artifacts"')[1].split("</dd>")[0]
    assert f'href="/artifacts/{frank["base"].pk}/"' in detail and f'href="/artifacts/{elsewhere.pk}/"' in detail


def test_a_full_column_ends_in_a_box_that_points_to_the_table():
    nodes = [LineageNode(key="artifact:1", column="current", title="Artifact #1", current=True)]
    nodes += [
        LineageNode(key=f"artifact:{i}", column="children", title=f"Artifact #{i}", href=f"/artifacts/{i}/")
        for i in range(2, 12)
    ]
    svg = lineage_chart(nodes, [("artifact:1", n.key) for n in nodes[1:]], {"children": 40})
    shown = MAX_PER_COLUMN - 1
    assert svg.count('<a href="/artifacts/') == shown and f"+{40 - shown} more" in svg
    assert '<a href="#children"' in svg and svg.count("<path d=") == shown
    assert "Parent" not in svg  # empty columns are left out


def test_navigation_links_per_role(client, engineer, officer, regulator, make_user):
    for user in (engineer, officer, make_user("ada", "admin")):
        html = page(client, user, "/artifacts/")
        nav = html.split("<nav>")[1].split("</nav>")[0]
        assert all(f'href="/{kind}/"' in nav for kind in ("experiments", "runs", "artifacts"))
    html = page(client, regulator, "/")
    nav = html.split("<nav>")[1].split("</nav>")[0]
    assert not any(f'href="/{kind}/"' in nav for kind in ("experiments", "runs", "artifacts"))


@pytest.mark.django_db(transaction=True)
def test_release_run_and_dashboard_link_the_records(
    client, engineer, officer, regulator, base_artifact, demo_suite, demo_policy
):
    from exports.services.exports import regulator_grant
    from tests.factories import evaluated_release

    release = evaluated_release(engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy)
    run_pk, candidate = release.compression_run_id, release.candidate
    lineage = page(client, officer, f"/releases/{release.pk}/").split('id="candidate-lineage"')[1].split("</p>")[0]
    for href in (f"/runs/{run_pk}/", f"/artifacts/{base_artifact.pk}/", f"/artifacts/{candidate.pk}/"):
        assert f'href="{href}"' in lineage, href
    assert candidate.digest[:12] in lineage and base_artifact.digest[:12] in lineage

    run_page = page(client, engineer, f"/runs/{run_pk}/")
    assert f'href="/experiments/{release.experiment_id}/"' in run_page.split('id="run-experiment"')[1]
    assert f'href="/artifacts/{candidate.pk}/"' in run_page.split('id="run-output"')[1].split("</dd>")[0]
    assert f'href="/artifacts/{base_artifact.pk}/"' in run_page.split('id="run-inputs"')[1].split("</dd>")[0]
    assert "not requested: the default pool" in run_page.split('id="run-device"')[1].split("</dd>")[0]
    CompressionRun.objects.filter(pk=run_pk).update(device="cuda")
    assert "<code>cuda</code> (requested" in page(client, engineer, f"/runs/{run_pk}/").split('id="run-device"')[1]
    assert f'href="/releases/{release.pk}/"' in run_page.split('id="releases"')[1]
    assert 'href="/runs/"' in run_page.split('class="crumbs"')[1].split("</p>")[0]

    experiment_page = page(client, officer, f"/experiments/{release.experiment_id}/")
    assert f'href="/releases/{release.pk}/"' in experiment_page.split('id="releases"')[1]
    artifact_page = page(client, officer, f"/artifacts/{candidate.pk}/")
    releases = artifact_page.split('id="releases"')[1].split("</section>")[0]
    assert f'href="/releases/{release.pk}/"' in releases and "candidate" in releases
    baseline = page(client, officer, f"/artifacts/{base_artifact.pk}/").split('id="releases"')[1].split("</section>")[0]
    assert f'href="/releases/{release.pk}/"' in baseline and "baseline" in baseline

    dashboard = page(client, officer, "/")
    for href in (f"/releases/{release.pk}/", f"/experiments/{release.experiment_id}/", f"/runs/{run_pk}/"):
        assert f'href="{href}"' in dashboard, href

    # A regulator reads the release under a grant: the same words, but no links to pages they cannot open.
    regulator_grant(actor=officer, release_id=release.pk, regulator_id=regulator.pk, days=5, reason="audit")
    lineage = page(client, regulator, f"/releases/{release.pk}/").split('id="candidate-lineage"')[1].split("</p>")[0]
    assert candidate.digest[:12] in lineage and f"run #{run_pk}" in lineage
    assert "/artifacts/" not in lineage and "/runs/" not in lineage


def test_an_artifact_used_by_many_experiments_lists_the_first_rows_and_links_the_rest(client, officer, engineer):
    from governance.web_inventory import DETAIL_ROWS

    base = artifact(engineer, "popular base")
    for i in range(DETAIL_ROWS + 3):
        experiment(engineer, base, name=f"exp {i:03d}")
    client.force_login(officer)

    page = client.get(f"/artifacts/{base.pk}/").content.decode()

    assert (
        page.count('href="/experiments/') - page.count('href="/experiments/?') - page.count('href="/experiments/"')
        == DETAIL_ROWS
    )
    assert f'href="/experiments/?q={base.digest[:12]}">all {DETAIL_ROWS + 3}</a>' in page
    listed = client.get(f"/experiments/?q={base.digest[:12]}").content.decode()
    assert f"{DETAIL_ROWS + 3} in all" in listed
