"""Project-level guarantees: deploy checks, the OpenAPI schema, no torch in the web process."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_check_deploy_with_production_settings_reports_no_issues():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "sqlite:////tmp/safeshrink-deploy-check.sqlite3",
        "DJANGO_ALLOWED_HOSTS": "safeshrink.example",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DATABASE_URL": "sqlite:////tmp/x.sqlite3",
            "DJANGO_ALLOWED_HOSTS": "x",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_configure_the_shared_artifact_bucket_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings; from django.core.files.storage import "
        "storages; s = storages[settings.SAFESHRINK['ARTIFACT_STORAGE']]; "
        "print(type(s).__name__, s.bucket_name, s.endpoint_url, s.location, "
        "settings.STORAGES['staticfiles']['BACKEND'].rsplit('.', 1)[-1])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "sqlite:////tmp/x.sqlite3",
        "DJANGO_ALLOWED_HOSTS": "x",
        "SAFESHRINK_ARTIFACT_S3_BUCKET": "shared-models",
        "SAFESHRINK_ARTIFACT_S3_ENDPOINT_URL": "http://minio:9000",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "S3Storage",
        "shared-models",
        "http://minio:9000",
        "artifacts",
        "CompressedManifestStaticFilesStorage",
    ]


def test_web_process_never_imports_torch():
    code = (
        "import django, sys; django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import governance.views, governance.api.views, compression.api.views, evaluations.api.views;"
        "import config.celery;"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


@pytest.mark.django_db
def test_openapi_schema_and_docs(client, engineer):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/artifacts/",
        "/api/experiments/{id}/runs/",
        "/api/releases/{id}/decisions/",
        "/api/comparisons/{id}/flips/",
        "/api/ledger/verify/",
    ):
        assert path in text, path
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_api_requires_authentication(client):
    r = client.get("/api/releases/")
    assert r.status_code in (401, 403)
    assert set(r.json()) == {"code", "message", "details"}


def test_compose_file_declares_the_services_with_their_settings():
    import yaml

    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    default = {name for name, service in compose["services"].items() if "profiles" not in service}
    assert default == {"postgres", "redis", "migrate", "web", "worker", "beat", "sealer"}
    scale = {name for name, service in compose["services"].items() if "scale" in service.get("profiles", [])}
    assert scale == {"minio", "minio-bucket", "worker-cpu", "worker-io", "worker-gpu"}
    for name, queues in (("worker-cpu", "-Q cpu "), ("worker-io", "-Q io "), ("worker-gpu", "-Q gpu ")):
        assert queues in compose["services"][name]["command"], name
    [gpu] = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    # separate stores, as on separate machines: the cpu and gpu pools share artifacts only through the bucket
    for name in ("worker-cpu", "worker-gpu"):
        assert not [v for v in compose["services"][name]["volumes"] if v.startswith("artifacts:")], name
    assert "artifacts:/artifacts" in compose["services"]["worker"]["volumes"]
    for name in ("web", "worker", "beat", "sealer"):
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["CELERY_BROKER_URL"].startswith("redis://")
    assert "celery -A config worker" in compose["services"]["worker"]["command"]
    assert "celery -A config beat" in compose["services"]["beat"]["command"]
    assert compose["services"]["sealer"]["command"] == "python manage.py ledger_sealer"
    assert compose["services"]["web"]["environment"]["SAFESHRINK_LEDGER_SEALING"] == "sealer"
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().splitlines()
