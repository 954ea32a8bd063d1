"""Issue 10 §7: schemathesis against /api/schema/, every role, every built-in check.

Runs in-process against the Django WSGI app (no server, no network), in the test's database transaction, with
a fixed seed and derandomized generation, so a run is repeatable and fails the same way twice. Per operation: the
examples, coverage (boundary and missing/invalid values, undeclared methods) and fuzzing phases, positive data
as every role and negative data as the engineer and the admin (NEGATIVE_ROLES), bounded by FUZZ_MAX_EXAMPLES (env
SAFESHRINK_FUZZ_MAX_EXAMPLES).

Enqueued jobs never run here: tasks are sent on commit and the test's transaction never commits.
"""

import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

ROLES = ("engineer", "officer", "regulator", "reviewer", "admin")
# A request that breaks the schema is sent as the roles that pass the role checks of the write endpoints (the
# engineer's and the admin's), so it reaches input parsing; the other roles are refused before any input is read
# (HasRole), by the path every positive request also exercises for them. This halves the file's time (measured:
# 2,723 of 3,714 coverage cases are negative; about 10 ms of CPU per request).
NEGATIVE_ROLES = ("engineer", "admin")
FUZZ_MAX_EXAMPLES = int(os.environ.get("SAFESHRINK_FUZZ_MAX_EXAMPLES", "6"))
SEED = 20261130


# Operations where a schema-valid request may still be a 400, and why. JSON Schema cannot say that an id in a
# body must name an existing object, that a time range must not be inverted, or that a method name must be one
# the worker knows: these are refused with 400 naming the field. Everything else in positive_data_acceptance
# stays as schemathesis has it (2xx, 401, 403, 404, 409 ...), and every other check applies everywhere.
SEMANTIC_400 = {
    ("POST", "/api/auth/token/"): "wrong credentials (DRF's ObtainAuthToken answers 400)",
    ("POST", "/api/artifacts/"): "the path must be a model folder inside an allowed root; parent must exist",
    ("POST", "/api/experiments/"): "base_artifact must exist",
    ("POST", "/api/experiments/{id}/runs/"): "method must be a known compression method; data suite must exist",
    ("POST", "/api/releases/"): "compression_run, suite_version and policy must exist and fit together",
    ("POST", "/api/releases/{id}/grants/"): "regulator must be a regulator's id",
    ("POST", "/api/releases/{id}/rollout/"): "stages must rise in percent and time and end at 100",
    ("POST", "/api/policies/publish/"): "taxonomy must exist; rules must name known metrics and groups",
    ("POST", "/api/suite-versions/{id}/perturb/"): "kinds must be known perturbations",
    ("POST", "/api/suites/import/"): "the file must parse with the mapping, and the labels must occur in it",
    ("GET", "/api/ledger/"): "until must be later than since",
    ("POST", "/api/external-runs/"): "experiment and artifacts must exist and be yours; tag keys must be valid names",
    ("POST", "/api/external-runs/{id}/log/"): "a param keeps its first value; keys must be valid names",
    ("POST", "/api/external-runs/{id}/finish/"): "output_artifact must exist; a run cannot end before it started",
    ("POST", "/api/external-runs/{id}/provenance/"): "the payload must be base64 of an in-toto Statement",
    ("POST", "/api/engineer-keys/"): "public_key must be an Ed25519 public key",
}


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Data generation taking long on a busy machine says nothing about the API (timing must not fail CI).
            "suppress-health-check": ["too_slow"],
            "generation": {
                "max-examples": FUZZ_MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # NUL is refused everywhere (PostgreSQL cannot store it); tests/api/test_bad_input.py covers it.
                "allow-x00": False,
            },
            # Every built-in check stays enabled (the default); nothing is excluded.
            "operations": [
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409"]
                        }
                    },
                }
                for method, path in SEMANTIC_400
            ],
        }
    )


def _load_schema():
    config = fuzz_config()
    return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=config)


schema = _load_schema()


@pytest.fixture
def _keep_test_connection():
    """The raw WSGI app closes the database connection after each request (close_old_connections), which
    would end the test's transaction; Django's test client unhooks it the same way."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(light_world, _keep_test_connection) -> dict[str, str]:
    from rest_framework.authtoken.models import Token

    return {role: Token.objects.get_or_create(user=light_world["users"][role])[0].key for role in ROLES}


@pytest.mark.django_db
@schema.parametrize()
# One world per operation, shared by its examples on purpose (what one request stores, the next may read).
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case, tokens):
    """Each schema-valid request is sent once per role, each schema-breaking one as the engineer and the admin;
    every response must pass every check."""
    meta = case.meta
    negative = meta is not None and meta.generation.mode == schemathesis.GenerationMode.NEGATIVE
    for role in NEGATIVE_ROLES if negative else ROLES:
        try:
            case.call_and_validate(headers={"Authorization": f"Token {tokens[role]}"})
        except BaseException as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"(sent as the {role})")
            raise
