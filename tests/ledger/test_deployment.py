"""docker/compose.yml: the schema is changed by the owner role alone, every long-running service runs
as the application's role but the ledger sealer, which runs as the sealer's role, and its defaults pass
`check --deploy --fail-level WARNING`."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
APP_SERVICES = ("web", "worker", "beat")


def _default(value: str) -> str:
    """The value compose uses when the variable is unset: ${NAME:-default} -> default."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", value)
    return match.group(1) if match else value


def _user(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


def test_migrations_run_as_the_owner_the_sealer_as_its_role_and_everything_else_as_the_app_role():
    services = COMPOSE["services"]
    migrate = services["migrate"]
    assert _user(migrate["environment"]["DATABASE_URL"]) == "safeshrink_owner"
    assert "migrate" in migrate["command"]
    assert "setup_db_roles --app-role safeshrink_app --sealer-role safeshrink_sealer" in migrate["command"]
    sealer = services["sealer"]
    assert _user(sealer["environment"]["DATABASE_URL"]) == "safeshrink_sealer"
    assert sealer["environment"]["SAFESHRINK_LEDGER_SEALING"] == "sealer"
    assert "ledger_sealer" in sealer["command"]
    assert "safeshrink_sealer" in (ROOT / "docker" / "postgres-init.sh").read_text()
    for name in APP_SERVICES + ("sealer",):
        service = services[name]
        if name != "sealer":
            assert _user(service["environment"]["DATABASE_URL"]) == "safeshrink_app", name
        assert "migrate" not in str(service.get("command", "")), name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert "POSTGRES_USER" not in services["postgres"]["environment"]  # the superuser is only `postgres`
    assert (ROOT / "docker" / "postgres-init.sh").is_file()


def test_compose_defaults_pass_the_deployment_checks():
    """Before: DJANGO_SECURE_SSL_REDIRECT defaulted to false, a security.W008 warning."""
    environment = COMPOSE["services"]["web"]["environment"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "localhost",
        "DATABASE_URL": "sqlite:///:memory:",
        "DJANGO_SECURE_SSL_REDIRECT": _default(environment["DJANGO_SECURE_SSL_REDIRECT"]),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert env["DJANGO_SECURE_SSL_REDIRECT"] == "true"
    assert done.returncode == 0, done.stdout + done.stderr
