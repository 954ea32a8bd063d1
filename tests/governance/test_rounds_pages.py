"""A behavioural_distill run's rounds on the web: the rounds chart (three held-back rates, the teacher's answers
per round), the run page while the run runs, after it was cancelled and once it succeeded, and the release page
of its candidate. Runs are rows made with the ORM around crafted round records (no training here)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from compression.models import CompressionRun, RunStatus
from governance.models import Release
from governance.rounds import distill_section
from governance.rounds_chart import EMPTY, rounds_chart

SVG = "{http://www.w3.org/2000/svg}"
BEHAVIOURAL = "behavioural_distill"
DIGESTS = {1: "1a" * 32, 2: "2b" * 32}


def crafted_round(number: int, *, harmful, over_refusal, degenerate, accepted: int, rejected: int, dropped: int):
    """A round record shaped as the engine writes it (compression.engine.behaviour_distill.round_record)."""
    return {
        "round": number,
        "stress_prompts": 120 + (number - 1) * 9,
        "added_failures": (number - 1) * 9,
        "training_examples": accepted,
        "accepted": accepted,
        "rejected": rejected,
        "dropped_prompts": dropped,
        "dropped_prompt_ids": [f"7:p{i}" for i in range(dropped)][:3],
        "by_slice": {
            "adversarial": {"prompts": 30, "accepted": 10, "rejected": 30, "dropped": dropped},
            "edge": {"prompts": 30, "accepted": accepted - 60, "rejected": 7, "dropped": 0},
            "routine": {"prompts": 60, "accepted": 50, "rejected": rejected - 37, "dropped": 0},
        },
        "data_digest": DIGESTS[number],
        "loss": {"first": 3.1 / number, "last": 1.2 / number, "mean": 1.9 / number},
        "heldout": {
            "prompts": 40,
            "harmful": 30,
            "safe": 10,
            "harmful_compliance_rate": harmful,
            "over_refusal_rate": over_refusal,
            "degenerate_rate": degenerate,
            "failures": 9,
            "failure_ids": ["8:h1"],
        },
        "seconds": {"sampling": 80.0, "training": 120.0, "evaluating": 30.0},
        "seconds_per_step": 3.0,
    }


ROUND_1 = crafted_round(1, harmful=0.2, over_refusal=0.1, degenerate=0.05, accepted=96, rejected=57, dropped=24)
ROUND_2 = crafted_round(2, harmful=0.1, over_refusal=None, degenerate=0.025, accepted=110, rejected=40, dropped=10)


def data_source_for(*, base, judge, version: int) -> dict:
    def prompt_set(suite: str, examples: int, digest: str) -> dict:
        return {
            "suite_version": version,
            "suite": suite,
            "digest": digest,
            "examples": examples,
            "by_slice": {"adversarial": 4, "edge": 10, "routine": 12},
        }

    return {
        "method": "behavioural_distill",
        "teachers": [{"artifact": base.pk, "digest": base.digest, "name": base.name, "role": "base"}],
        "judge": {"artifact": judge.pk, "digest": judge.digest, "name": judge.name},
        "stress_set": prompt_set("stress prompts", 120, "3c" * 32),
        "heldback_split": prompt_set("held-back prompts", 40, "4d" * 32),
        "data_digest": "5e" * 32,
    }


def distill_run(*, engineer, base, judge, version: int, status: str, rounds: list, method=BEHAVIOURAL):
    """A compression run row of the chat experiment (made by the ORM: the rounds are crafted, not trained)."""
    from compression.services.experiments import experiment_create

    experiment = experiment_create(actor=engineer, name=f"distill {status}", base_artifact_id=base.pk)
    return CompressionRun.objects.create(
        experiment=experiment,
        method=method,
        parameters={"rounds": 3, "layers_kept": 1, "level": "sequence"},
        data_source=data_source_for(base=base, judge=judge, version=version) if method == BEHAVIOURAL else None,
        requested_by=engineer,
        status=status,
        rounds=rounds,
        output_artifact=base if status == RunStatus.SUCCEEDED else None,
        progress_stage="training round 2" if status == RunStatus.RUNNING else "",
    )


def release_of(run: CompressionRun, *, suite_version: int, policy) -> Release:
    candidate = run.output_artifact or run.experiment.base_artifact
    return Release.objects.create(
        experiment=run.experiment,
        compression_run=run,
        candidate=candidate,
        candidate_digest=candidate.digest,
        suite_version_id=suite_version,
        policy=policy,
        created_by=run.requested_by,
    )


# ------------------------------------------------------------------ the chart (no database)


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def test_the_chart_draws_three_labelled_series_and_the_answers_per_round():
    markup = rounds_chart([ROUND_2, ROUND_1])  # drawn in round order whatever the stored order
    svg = _svg(markup)
    assert svg.get("role") == "img"
    assert "held-back split" in svg.find(f"{SVG}title").text
    assert svg.find(f"{SVG}desc").text.startswith(
        "Round 1: harmful compliance 20.0%, over-refusal 10.0%, degeneration 5.0% on the held-back split; "
        "96 accepted answers, 57 rejected answers, 24 dropped prompts. Round 2: harmful compliance 10.0%, "
        "over-refusal —, degeneration 2.5%"
    )
    series = {g.get("data-series"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "series"}
    assert list(series) == ["Harmful compliance", "Over-refusal", "Degeneration"]
    # Not colour alone: each series has its own dash pattern and marker shape.
    dashes = [
        (g.find(f"{SVG}polyline").get("stroke-dasharray") if g.find(f"{SVG}polyline") is not None else None)
        for g in series.values()
    ]
    assert dashes == [None, None, "2 3"]  # over-refusal has no line: its round 2 rate is unmeasured (a gap)
    assert len(series["Harmful compliance"].findall(f"{SVG}circle")) == 2
    assert len(series["Over-refusal"].findall(f"{SVG}polygon")) == 1
    assert len(series["Degeneration"].findall(f"{SVG}polygon")) == 2
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    for label in ("20.0%", "10.0%", "5.0%", "2.5%", "0%", "50%", "100%"):
        assert label in texts, label
    assert texts.count("Round 1") == 2 and texts.count("Round 2") == 2
    for count in ("96", "57", "24", "110", "40", "10"):
        assert count in texts, count
    legend = [t for t in texts if t in ("Accepted answers", "Rejected answers", "Dropped prompts")]
    assert legend == ["Accepted answers", "Rejected answers", "Dropped prompts"]
    bars = [r.get("data-kind") for r in svg.iter(f"{SVG}rect") if r.get("data-kind")]
    assert bars == ["accepted", "rejected", "dropped_prompts"] * 2  # three bars per round, in round order
    assert rounds_chart([ROUND_1, ROUND_2]) == markup  # deterministic


def test_the_chart_of_no_rounds_is_a_sentence_not_an_empty_svg():
    assert rounds_chart([]) == EMPTY and "<svg" not in EMPTY
    assert rounds_chart(None) == EMPTY and rounds_chart([{"round": "x"}, 3]) != EMPTY  # a malformed record still draws


def test_only_a_behavioural_distill_run_has_a_rounds_section():
    assert distill_section(method="dynamic_int8", status="succeeded", rounds=[], data_source=None) is None
    section = distill_section(method="behavioural_distill", status="queued", rounds=[], data_source=None)
    assert section["drawn"] is False and section["chart"] == EMPTY
    assert section["state"] == "Queued: no round has started yet."
    assert section["sources"]["judge"]["digest"] == {"full": "—", "short": "—"}


# ------------------------------------------------------------------ the pages

pytestmark_db = pytest.mark.django_db(transaction=True)


def _page(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _rows(page: str) -> list[list[str]]:
    """The cells of the rounds table, row by row."""
    table = page.split('id="rounds-table"')[1].split("</table>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in table.split('<tr class="round-row">')[1:]]


@pytestmark_db
def test_the_run_page_shows_the_finished_rounds_while_running_after_cancelling_and_once_succeeded(
    client, engineer, officer, make_user, chat_base, judge_artifact, chat_suite
):
    version = chat_suite["id"]
    running = distill_run(
        engineer=engineer, base=chat_base, judge=judge_artifact, version=version, status="running", rounds=[ROUND_1]
    )
    page = _page(client, engineer, f"/runs/{running.pk}/")
    assert "Distillation rounds" in page and 'http-equiv="refresh"' in page
    assert "Running: 1 finished round so far" in page
    assert page.count('class="series"') == 3 and "20.0%" in page
    (row,) = _rows(page)
    assert row == [
        "1", "120", "0", "96", "96", "57", "24", "20.0%", "10.0%", "5.0%", "3.100 → 1.200 (mean 1.900)",
        "sampling 80 s · training 120 s · evaluating 30 s · 3.00 s/step",
        f'<code title="{DIGESTS[1]}">{DIGESTS[1][:12]}</code>',
    ]  # fmt: skip
    slices = page.split('id="rounds-slices"')[1].split("</table>")[0]
    assert "<td>adversarial</td>" in slices and "<td>routine</td>" in slices
    sources = page.split('id="distill-sources"')[1].split("</table>")[0]
    assert "teacher (base)" in sources and chat_base.name in sources and f'title="{chat_base.digest}"' in sources
    assert judge_artifact.name in sources and f"artifact #{judge_artifact.pk}" in sources
    assert f"suite version #{version}" in sources and "Stress set (training prompts)" in sources
    assert "Held-back split (tests only)" in sources and f'title="{"4d" * 32}"' in sources

    cancelled = distill_run(
        engineer=engineer, base=chat_base, judge=judge_artifact, version=version, status="cancelled", rounds=[ROUND_1]
    )
    page = _page(client, officer, f"/runs/{cancelled.pk}/")
    assert "Cancelled after round 1: its finished rounds are kept; no artifact was produced." in page
    assert len(_rows(page)) == 1 and page.count('class="series"') == 3 and 'http-equiv="refresh"' not in page

    failed = distill_run(
        engineer=engineer, base=chat_base, judge=judge_artifact, version=version, status="failed", rounds=[]
    )
    page = _page(client, officer, f"/runs/{failed.pk}/")
    assert "Failed before a round finished" in page and 'id="rounds-empty"' in page and EMPTY in page
    assert 'class="series"' not in page and 'id="rounds-table"' not in page

    succeeded = distill_run(
        engineer=engineer,
        base=chat_base,
        judge=judge_artifact,
        version=version,
        status="succeeded",
        rounds=[ROUND_1, ROUND_2],
    )
    page = _page(client, engineer, f"/runs/{succeeded.pk}/")
    assert "Succeeded after 2 finished rounds" in page
    rows = _rows(page)
    assert [r[0] for r in rows] == ["1", "2"]
    assert rows[1][7:10] == ["10.0%", "—", "2.5%"]  # round 2's over-refusal was not measured

    client.force_login(make_user("frank", "engineer"))
    assert client.get(f"/runs/{succeeded.pk}/").status_code == 404  # another engineer's run


@pytestmark_db
def test_a_run_of_another_method_has_no_rounds_section(client, engineer, chat_base, judge_artifact):
    run = distill_run(
        engineer=engineer, base=chat_base, judge=judge_artifact, version=0, status="succeeded", rounds=[], method="fp16"
    )
    page = _page(client, engineer, f"/runs/{run.pk}/")
    assert "Compression run" in page and "Distillation rounds" not in page


@pytestmark_db
def test_the_release_page_of_a_distilled_candidate_shows_the_chart_and_links_the_run(
    client, engineer, officer, regulator, chat_base, judge_artifact, chat_suite, chat_policy
):
    from exports.services.exports import regulator_grant

    run = distill_run(
        engineer=engineer,
        base=chat_base,
        judge=judge_artifact,
        version=chat_suite["id"],
        status="succeeded",
        rounds=[ROUND_1, ROUND_2],
    )
    release = release_of(run, suite_version=chat_suite["id"], policy=chat_policy)
    for user in (officer, engineer):
        page = _page(client, user, f"/releases/{release.pk}/")
        section = page.split('id="candidate-rounds"')[1].split("</section>")[0]
        assert "distillation rounds" in section and "Succeeded after 2 finished rounds" in section
        assert section.count('class="series"') == 3 and "20.0%" in section
        assert f'href="/runs/{run.pk}/"' in section

    regulator_grant(actor=officer, release_id=release.pk, regulator_id=regulator.pk, days=5, reason="audit")
    page = _page(client, regulator, f"/releases/{release.pk}/")
    section = page.split('id="candidate-rounds"')[1].split("</section>")[0]
    assert section.count('class="series"') == 3 and "/runs/" not in section  # a regulator cannot open the run

    other = distill_run(
        engineer=engineer, base=chat_base, judge=judge_artifact, version=0, status="succeeded", rounds=[], method="fp16"
    )
    plain = release_of(other, suite_version=chat_suite["id"], policy=chat_policy)
    assert 'id="candidate-rounds"' not in _page(client, officer, f"/releases/{plain.pk}/")
