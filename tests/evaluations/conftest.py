"""Chat-model fixtures shared by the evaluations tests (and the behavioural distillation tests): a tiny chat
model and a string-match judge registered as artifacts, chat suites from the shared data, the default chat
policy."""

from __future__ import annotations

import pytest

from tests.evaluations.chat_rows import prompt_rows


@pytest.fixture(scope="session")
def string_judge_dir(tmp_path_factory):
    from evaluations.engine.judges.refusal import write_string_match_judge

    return write_string_match_judge(tmp_path_factory.mktemp("judge") / "string-match")


@pytest.fixture
def chat_base(engineer, tiny_chat_dir):
    from compression.services.artifacts import artifact_register

    return artifact_register(actor=engineer, name="tiny-chat", path=str(tiny_chat_dir))


@pytest.fixture
def judge_artifact(engineer, string_judge_dir):
    from compression.services.artifacts import artifact_register

    return artifact_register(actor=engineer, name="string-match judge", path=str(string_judge_dir))


@pytest.fixture
def chat_suite(engineer_api, judge_artifact, data_dir):
    response = engineer_api.post(
        "/api/chat-suites/",
        {"suite": "chat suite", "judge": judge_artifact.pk, "rows": prompt_rows(data_dir)},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.fixture
def chat_policy(officer):
    from governance.demo_chat import CHAT_POLICY_RULES, CHAT_TAXONOMY
    from governance.services.policies import taxonomy_publish, threshold_policy_publish

    taxonomy = taxonomy_publish(actor=officer, **CHAT_TAXONOMY)
    return threshold_policy_publish(actor=officer, name="chat policy", taxonomy=taxonomy, rules=CHAT_POLICY_RULES)
