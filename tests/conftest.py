"""Shared fixtures. In CI (CI=true) a missing PostgreSQL or Redis fails the run; it never skips."""

import os
import socket
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("SAFESHRINK_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session) -> None:
    if os.environ.get("CI") != "true":
        return
    problems = []
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        problems.append("CI=true but DATABASE_URL does not point at PostgreSQL")
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        problems.append("CI=true but CELERY_BROKER_URL does not point at Redis")
    for name, host, port in (("PostgreSQL", "127.0.0.1", 5432), ("Redis", "127.0.0.1", 6379)):
        if not _reachable(host, port):
            problems.append(f"{name} is not reachable at {host}:{port}")
    if problems:
        pytest.exit("; ".join(problems), returncode=3)


# RabbitMQ for the tests that run a worker on it (tests/test_worker_routing.py); CI runs one beside Redis.
AMQP_URL = os.environ.get("SAFESHRINK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def require_service(kind: str) -> None:
    """Tests that need a real service call this: outside CI they skip without it, in CI they fail."""
    from urllib.parse import urlsplit

    from django.db import connection

    if kind == "postgres":
        ok = connection.vendor == "postgresql"
    elif kind == "rabbitmq":
        amqp = urlsplit(AMQP_URL)
        ok = _reachable(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    else:
        ok = os.environ.get("CELERY_BROKER_URL", "").startswith("redis") and _reachable("127.0.0.1", 6379)
    if ok:
        return
    message = f"this test needs {kind} (set DATABASE_URL / CELERY_BROKER_URL / SAFESHRINK_TEST_AMQP_URL)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert (DATA_DIR / "hatexplain" / "hatexplain_merged.csv").is_file(), f"shared data missing at {DATA_DIR}"
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, data_dir) -> Path:
    """A tiny BERT classifier trained on a HateXplain sample, built once per test session."""
    from compression.engine.tiny import build_tiny_classifier

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_classifier(data_csv=data_dir / "hatexplain" / "hatexplain_merged.csv", out_dir=out, seed=0)
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (CI's 2 cores are shared), restored after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory) -> Path:
    """A tiny random chat model (Llama, ChatML template), built once per test session; tests only read it."""
    from compression.engine.tiny_chat import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "model", seed=0)


@pytest.fixture(scope="session")
def signing_dir(tmp_path_factory) -> Path:
    """System key and internal CA, created once per test session."""
    from trust.ca import create_internal_ca
    from trust.keys import generate_ed25519

    keys = tmp_path_factory.mktemp("keys")
    generate_ed25519(keys / "system.key.pem", keys / "system.pub.pem")
    create_internal_ca(keys / "ca", "SafeShrink test CA")
    return keys


def signing_settings(keys: Path) -> dict:
    return {
        "SYSTEM_KEY": keys / "system.key.pem",
        "SYSTEM_PUBLIC_KEY": keys / "system.pub.pem",
        "SIGNING_KEY": keys / "ca" / "signer.key.pem",
        "SIGNING_CERT": keys / "ca" / "signer.pem",
        "SIGNING_CHAIN": [keys / "ca" / "ca.pem"],
        "SIGNING_CRLS": [keys / "ca" / "crl.pem"],
        "TRUST_ROOTS": [keys / "ca" / "ca.pem"],
    }


@pytest.fixture(autouse=True)
def _artifact_root(request, tmp_path) -> None:
    """Every test gets its own artifact and export store, and the session's signing keys."""
    if not request.config.pluginmanager.hasplugin("django"):
        return  # engine tests may run without Django at all
    settings = request.getfixturevalue("settings")
    keys = request.getfixturevalue("signing_dir")
    settings.SAFESHRINK = {
        **settings.SAFESHRINK,
        "ARTIFACT_ROOT": tmp_path / "artifacts",
        "EXPORT_ROOT": tmp_path / "exports",
        "UPLOAD_ROOT": tmp_path / "uploads",
        **signing_settings(keys),
    }


@pytest.fixture
def make_user(db):
    from accounts.services import user_create

    def make(username: str, role: str):
        return user_create(actor=None, username=username, role=role, password=f"{username}-pass-123")

    return make


@pytest.fixture
def engineer(make_user):
    return make_user("eve", "engineer")


@pytest.fixture
def make_officer(make_user):
    """An officer holding authority over every risk tier at `level` (0 = no authority)."""
    from governance.services.monitoring import authority_grant

    def make(username: str, level: int = 2):
        user = make_user(username, "officer")
        for tier in ("low", "medium", "high") if level else ():
            authority_grant(actor=None, user=user, risk_tier=tier, level=level)
        return user

    return make


@pytest.fixture
def officer(make_officer):
    return make_officer("olga")


@pytest.fixture
def officer2(make_officer):
    return make_officer("otto")


@pytest.fixture
def reviewers(make_user):
    return [make_user("rev1", "reviewer"), make_user("rev2", "reviewer")]


@pytest.fixture
def regulator(make_user):
    return make_user("rita", "regulator")


def api_client_for(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def engineer_api(engineer):
    return api_client_for(engineer)


@pytest.fixture
def officer_api(officer):
    return api_client_for(officer)


@pytest.fixture
def demo_suite(db, engineer, data_dir):
    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, demo_suite_rows
    from evaluations.services.suites import ExampleRow, suite_version_import

    rows = [ExampleRow(**r) for r in demo_suite_rows(data_dir, routine=80, edge=60, adversarial=40, seed=1)]
    return suite_version_import(
        actor=engineer, suite_name="test suite", rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )


@pytest.fixture
def demo_policy(db, officer):
    from governance.demo import DEFAULT_POLICY_RULES, DEFAULT_TAXONOMY
    from governance.services.policies import taxonomy_publish, threshold_policy_publish

    taxonomy = taxonomy_publish(actor=officer, **DEFAULT_TAXONOMY)
    return threshold_policy_publish(actor=officer, name="policy", taxonomy=taxonomy, rules=DEFAULT_POLICY_RULES)


@pytest.fixture
def base_artifact(db, engineer, tiny_model_dir):
    from compression.services.artifacts import artifact_register

    return artifact_register(actor=engineer, name="tiny", path=str(tiny_model_dir))


# ---- chat models: a tiny chat model and a string-match judge as artifacts, a chat suite, the default chat policy


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
    from tests.evaluations.chat_rows import prompt_rows

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
