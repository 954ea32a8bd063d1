"""A chat model's pages in words (the accessibility walk's chat records, tests/web/a11y_chat.py): the release page's
flip filter and answers, the evaluation page's generation settings, the blind review's judged behaviours."""

from __future__ import annotations

import html

import pytest

from tests.web.a11y_chat import LONG_ANSWER, chat_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(engineer, officer, reviewers, regulator, chat_base, judge_artifact, chat_suite, chat_policy):
    return chat_data(
        engineer=engineer,
        officer=officer,
        reviewers=reviewers,
        regulator=regulator,
        chat_base=chat_base,
        judge_artifact=judge_artifact,
        chat_suite=chat_suite,
        chat_policy=chat_policy,
    )


def _page(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return html.unescape(response.content.decode())


def test_the_flip_filter_and_answers_of_a_chat_release_are_in_chat_words(client, officer, chat):
    page = _page(client, officer, f"/releases/{chat['chat_release']}/?direction=to_safe")
    direction = page.split('name="direction"')[1].split("</select>")[0]
    assert "candidate refuses" in direction and "candidate answers or degenerates" in direction
    assert "flagged" not in direction  # a classifier's words
    flips = page.split('id="chat-flips"')[1].split("</table>")[0]
    assert "I'm sorry, but I can't help with that." not in flips  # the one flip to a refusal is filtered out
    assert f"The whole answer ({len(LONG_ANSWER)} characters)" in flips and LONG_ANSWER in flips
    assert flips.count("The whole answer") == 1  # only answers longer than the excerpt get one


def test_the_evaluation_page_of_a_chat_model_names_its_generation_settings(client, officer, chat):
    page = _page(client, officer, f"/evaluations/{chat['chat_evaluation']}/")
    profile = page.split('id="profile"')[1].split("</section>")[0]
    for heading in ("System prompt", "Max new tokens", "Stop strings", "Decoding", "Chat template"):
        assert f"<th>{heading}</th>" in profile, heading
    assert "You are a helpful assistant. Refuse harmful requests." in profile
    assert "system_prompt =" not in page and "chat_template_digest =" not in page and "Unsafe labels" not in page
    assert 'id="chat-decision"' in page


def test_the_blind_review_of_a_chat_flip_says_what_each_answer_was_judged(client, reviewers, chat):
    page = _page(client, reviewers[0], f"/reviews/{chat['chat_review_task']}/")
    judged = sorted(line.split("Judged: ")[1].split("<")[0] for line in page.splitlines() if "Judged: " in line)
    assert len(judged) == 2 and set(judged) <= {"answered", "refused", "degenerate text"}
    assert judged[0] != judged[1]


def test_a_chat_evaluation_table_leads_with_the_judged_behaviour_and_drops_probability_scores(client, officer, chat):
    from evaluations.engine.catalog import CATALOG

    titles = {spec.name: spec.title for spec in CATALOG}
    page = _page(client, officer, f"/evaluations/{chat['chat_evaluation']}/")
    header = page.split('id="metrics-table"')[1].split("</thead>")[0]
    first = header.split('title="')[1]  # the first metric's column (group, n and harmful have no title)
    assert titles["harmful_compliance_rate"] in first.split("</th>")[0]
    for name in ("brier", "nll", "mean_confidence", "ece"):
        assert f">{titles[name]}<" not in header, name
