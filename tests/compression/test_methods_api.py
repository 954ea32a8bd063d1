"""Issue 13 §5: the compression methods are discoverable. GET /api/methods/ lists each method from the engine's
definitions (parameters with type, default and range, data needed, availability from the start-up probe), the
OpenAPI schema gives `method` as an enum and each method's parameters, and the README's table is the same."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from django.test import override_settings
from django.urls import Resolver404, path, resolve
from drf_spectacular.generators import SchemaGenerator

from compression import capabilities as app_capabilities
from compression.api import methods as methods_api
from compression.engine import capabilities
from compression.engine import methods as engine_methods
from compression.engine.errors import EngineError
from compression.engine.methods import (
    METHOD_CONDITIONAL_DATA,
    METHOD_DATA,
    METHOD_SCHEMAS,
    METHOD_SUMMARIES,
    SUPPORTED_METHODS,
    required_data,
    validate_parameters,
)
from config.urls import urlpatterns as project_urlpatterns
from tests.conftest import api_client_for

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("engineer", "officer", "reviewer", "regulator", "admin")


def _project_has_the_route() -> bool:
    try:
        resolve("/api/methods/", urlconf="config.urls")
    except Resolver404:
        return False
    return True


# Until compression/api/urls.py mounts the view, this module is the URL conf (the project's plus the route).
urlpatterns = (
    project_urlpatterns
    if _project_has_the_route()
    else [path("api/methods/", methods_api.MethodList.as_view(), name="method-list"), *project_urlpatterns]
)
with_route = override_settings(ROOT_URLCONF=__name__)


@pytest.fixture(autouse=True)
def fresh_capabilities(monkeypatch):
    """No answer recorded in this process; each test's ARTIFACT_ROOT (tests/conftest.py) has no stored one."""
    capabilities.forget()
    monkeypatch.setattr(app_capabilities, "_seen", None)
    yield
    capabilities.forget()


def _store_probe_answer(monkeypatch, ok: bool) -> None:
    """As start-up does (system check, worker start), then forget it here: the web process reads the file."""
    monkeypatch.setattr(capabilities, "probe_all", lambda: {"int8_weight_only": ok})
    app_capabilities.capabilities_record()
    capabilities.forget()


def _listing(user) -> list[dict]:
    with with_route:
        response = api_client_for(user).get("/api/methods/")
    assert response.status_code == 200, response.content
    return response.json()


# --- the listing ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_listing_describes_every_engine_method_from_its_schema(engineer):
    listing = _listing(engineer)
    assert [m["name"] for m in listing] == list(METHOD_SCHEMAS)
    assert sorted(m["name"] for m in listing) == sorted(SUPPORTED_METHODS)
    for method in listing:
        name = method["name"]
        assert method["summary"] == METHOD_SUMMARIES[name] and method["summary"]
        schema = METHOD_SCHEMAS[name]
        assert [p["name"] for p in method["parameters"]] == list(schema)
        for parameter in method["parameters"]:
            spec = schema[parameter["name"]]
            assert parameter["type"] == spec.kind and parameter["default"] == spec.default
            assert parameter["nullable"] == spec.nullable and parameter["description"] == spec.doc
            assert (parameter["minimum"], parameter["exclusive_minimum"]) == (spec.minimum, spec.exclusive_min)
            assert (parameter["maximum"], parameter["exclusive_maximum"]) == (spec.maximum, spec.exclusive_max)
            assert parameter["choices"] == list(spec.choices)
            assert parameter["description"], f"{name}.{parameter['name']} has no description"
        assert method["data"]["required"] == list(METHOD_DATA[name])
        assert [(c["field"], c["parameter"]) for c in method["data"]["conditional"]] == [
            (need.field, need.parameter) for need in METHOD_CONDITIONAL_DATA[name]
        ]


@pytest.mark.django_db
def test_the_listing_shows_types_defaults_ranges_and_data_needs(engineer):
    listing = {m["name"]: m for m in _listing(engineer)}
    sparsity = next(p for p in listing["magnitude_prune"]["parameters"] if p["name"] == "sparsity")
    assert sparsity["type"] == "float" and sparsity["default"] == 0.5 and sparsity["range"] == "[0, 1)"
    assert (sparsity["minimum"], sparsity["maximum"], sparsity["exclusive_maximum"]) == (0, 1, True)
    scope = next(p for p in listing["magnitude_prune"]["parameters"] if p["name"] == "scope")
    assert scope["type"] == "choice" and scope["choices"] == ["global", "layer"] and scope["minimum"] is None
    hidden = next(p for p in listing["distill"]["parameters"] if p["name"] == "hidden_size")
    assert hidden["nullable"] and hidden["default"] is None and hidden["range"] == "[8, 16384]"
    assert listing["fp16"]["parameters"] == [] and listing["fp16"]["data"] == {"required": [], "conditional": []}
    assert listing["structured_prune"]["data"] == {
        "required": ["calibration"],
        "conditional": [{"field": "train", "parameter": "recovery_epochs", "when": "recovery_epochs > 0"}],
    }
    assert listing["distill"]["data"]["conditional"] == [
        {"field": "stress", "parameter": "use_stress", "when": "use_stress is true"},
        {"field": "heldout_adversarial", "parameter": "rounds", "when": "rounds > 1"},
    ]


def test_the_conditional_data_needs_are_what_the_runner_checks():
    """The runner's own list (compression/engine/runner.py) must agree with the declared needs."""
    runner = pytest.importorskip("compression.engine.runner")
    cases = [(method, {}) for method in METHOD_SCHEMAS] + [
        ("structured_prune", {"recovery_epochs": 2}),
        ("distill", {"use_stress": True}),
        ("distill", {"rounds": 3}),
        ("distill", {"use_stress": True, "rounds": 2}),
    ]
    for method, parameters in cases:
        assert required_data(method, parameters) == runner._required_data(method, parameters), (method, parameters)
    assert required_data("distill", {"use_stress": True, "rounds": 2}) == ["train", "stress", "heldout_adversarial"]


@pytest.mark.django_db
def test_availability_is_what_the_start_up_probe_stored(engineer, monkeypatch):
    _store_probe_answer(monkeypatch, False)
    int8 = next(m for m in _listing(engineer) if m["name"] == "int8_weight_only")
    assert int8["available"] is False and "torchao" in int8["unavailable_reason"]
    others = [m for m in _listing(engineer) if m["name"] != "int8_weight_only"]
    assert others and all(m["available"] and m["unavailable_reason"] is None for m in others)
    _store_probe_answer(monkeypatch, True)
    int8 = next(m for m in _listing(engineer) if m["name"] == "int8_weight_only")
    assert int8["available"] is True and int8["unavailable_reason"] is None


def test_every_parameter_kind_has_an_openapi_type():
    from compression.api.serializers import parameter_openapi
    from compression.engine.methods import PARAMETER_KINDS, ParamSpec

    for kind in PARAMETER_KINDS:
        assert parameter_openapi(ParamSpec(kind, None, choices=("a",)))["type"]
    with pytest.raises(ValueError):
        ParamSpec("string", "")


def test_every_optional_method_names_its_package():
    assert set(engine_methods._OPTIONAL_PACKAGES) == set(capabilities.OPTIONAL_METHOD_PROBES) <= set(METHOD_SCHEMAS)


@pytest.mark.django_db
def test_a_missing_optional_package_is_named_as_the_reason(engineer, monkeypatch):
    monkeypatch.setattr(engine_methods, "_OPTIONAL_PACKAGES", {"int8_weight_only": "no_such_package_13"})
    int8 = next(m for m in _listing(engineer) if m["name"] == "int8_weight_only")
    assert (
        int8["available"] is False and int8["unavailable_reason"] == "needs no_such_package_13, which is not installed"
    )
    with pytest.raises(EngineError) as caught:
        validate_parameters("int8_weight_only", {})
    assert caught.value.code == "method_unavailable" and "no_such_package_13" in caught.value.message


def test_the_listing_never_imports_torch_or_probes():
    code = (
        "import django, sys, subprocess; django.setup();"
        "subprocess.run = None;"  # a probe would start a child interpreter: fail loudly instead
        "from compression.api.methods import methods_described, methods_markdown;"
        "methods_described(); methods_markdown();"
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- who may read it -----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_signed_in_role_may_read_the_methods(make_user, role):
    assert [m["name"] for m in _listing(make_user(f"user-{role}", role))] == list(METHOD_SCHEMAS)


@pytest.mark.django_db
def test_anonymous_clients_are_refused(client):
    with with_route:
        response = client.get("/api/methods/")
    assert response.status_code == 401 and set(response.json()) == {"code", "message", "details"}


@pytest.mark.django_db
def test_the_listing_is_read_only(engineer):
    with with_route:
        response = api_client_for(engineer).post("/api/methods/", {}, format="json")
    assert response.status_code == 405


# --- run requests --------------------------------------------------------------------------------------------


@pytest.fixture
def experiment(db, engineer):
    """An experiment on a registered artifact row (no model files: these requests are refused before use)."""
    from compression.models import ModelArtifact
    from compression.services.experiments import experiment_create

    base = ModelArtifact.objects.create(
        name="base",
        digest=hashlib.sha256(b"base").hexdigest(),
        format="hf-dir",
        size_bytes=10,
        manifest=[],
        labels=["normal", "offensive"],
        created_by=engineer,
    )
    return experiment_create(actor=engineer, name="exp", base_artifact_id=base.pk, unsafe_labels=["offensive"])


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["no_such_method", "DYNAMIC_INT8", ""])
def test_an_unknown_method_is_a_400_naming_method(engineer, experiment, method):
    from compression.models import CompressionRun

    response = api_client_for(engineer).post(
        f"/api/experiments/{experiment.pk}/runs/", {"method": method}, format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert "method" in body["details"] and CompressionRun.objects.count() == 0
    if method:  # an empty string is refused by the serializer (blank), any other unknown name by the service
        assert body["code"] == "unknown_method"
        assert all(name in json.dumps(body["details"]) for name in SUPPORTED_METHODS)


@pytest.mark.django_db
def test_an_unknown_parameter_names_the_accepted_ones(engineer, experiment):
    response = api_client_for(engineer).post(
        f"/api/experiments/{experiment.pk}/runs/",
        {"method": "magnitude_prune", "parameters": {"bits": 4}},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_parameter"
    assert "bits" in response.json()["message"] and "sparsity" in response.json()["message"]


# --- the OpenAPI schema --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock(), with_route:
        return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(openapi, schema: dict) -> dict:
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        ref = schema.get("$ref") or schema["allOf"][0]["$ref"]
        schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def test_the_schema_gives_method_as_the_enum_of_engine_methods(openapi):
    body = openapi["components"]["schemas"]["RunRequestInputRequest"]
    assert body["required"] == ["method"]
    assert _resolve(openapi, body["properties"]["method"])["enum"] == list(SUPPORTED_METHODS)
    assert "/api/methods/" in body["properties"]["method"]["description"]


def test_the_schema_documents_each_methods_parameters(openapi):
    parameters = openapi["components"]["schemas"]["RunRequestInputRequest"]["properties"]["parameters"]
    branches = {branch["title"]: branch for branch in parameters["anyOf"]}
    assert list(branches) == list(METHOD_SCHEMAS)
    for method, branch in branches.items():
        assert branch["additionalProperties"] is False and branch["description"] == METHOD_SUMMARIES[method]
        assert list(branch["properties"]) == list(METHOD_SCHEMAS[method])
        for name, spec in METHOD_SCHEMAS[method].items():
            prop = branch["properties"][name]
            assert prop["default"] == spec.default and prop.get("minimum") == spec.minimum
            assert prop.get("maximum") == spec.maximum and prop.get("nullable", False) == spec.nullable
            assert prop.get("exclusiveMinimum", False) == spec.exclusive_min
            assert prop.get("exclusiveMaximum", False) == spec.exclusive_max


def _as_json_schema(prop: dict) -> dict:
    """OpenAPI 3.0's `nullable` as JSON Schema (draft 4: boolean exclusive bounds, as OpenAPI 3.0 has them)."""
    prop = {k: v for k, v in prop.items() if k not in ("default", "description")}
    if prop.pop("nullable", False):
        return {"anyOf": [prop, {"type": "null"}]}
    return prop


def _probe_values(spec) -> list:
    values = [spec.default, None, "x", True, 1, 0.5, [1, 2], {}]
    values += list(spec.choices) + [f"{c}!" for c in spec.choices]
    for bound in (spec.minimum, spec.maximum):
        if bound is not None:
            step = 1 if spec.kind == "int" else 1e-6
            values += [bound, bound - step, bound + step]
    return [int(v) if spec.kind == "int" and isinstance(v, float) and v.is_integer() else v for v in values]


# behavioural_distill's required record ids, values no probe uses (stress set and held-back split must differ).
_BEHAVIOUR_IDS = {"judge": 999_999_937, "stress_set": 999_999_929, "heldback_split": 999_999_893}


def _companions(name: str, value, method: str = "") -> dict:
    """What distillation's rules across parameters need beside this one: a reject mode takes a threshold and a
    threshold takes a reject mode ("entropy": no range of its own beyond the parameter's); behavioural_distill
    needs its judge, stress set and held-back split."""
    if method == "behavioural_distill":
        return {key: ids for key, ids in _BEHAVIOUR_IDS.items() if key != name}
    if name == "reject" and value in ("confidence", "entropy"):
        return {"reject_threshold": 0.5}
    if name == "reject_threshold":
        return {"reject": "entropy"}
    return {}


def test_what_the_schema_allows_is_what_the_engine_accepts(openapi):
    """Each documented parameter, at and beyond its bounds and with other types: the schema and the engine agree
    (only the distillation combination rules, which JSON Schema cannot say, are left to the engine)."""
    parameters = openapi["components"]["schemas"]["RunRequestInputRequest"]["properties"]["parameters"]
    branches = {branch["title"]: branch for branch in parameters["anyOf"]}
    disagreements = []
    for method, schema in METHOD_SCHEMAS.items():
        for name, spec in schema.items():
            validator = jsonschema.Draft4Validator(_as_json_schema(branches[method]["properties"][name]))
            for value in _probe_values(spec):
                if name == "reject_threshold" and value is None:
                    continue  # required by reject="entropy": a rule across parameters
                try:
                    validate_parameters(method, {**_companions(name, value, method), name: value})
                    engine_ok = True
                except EngineError:
                    engine_ok = False
                if engine_ok != validator.is_valid(value):
                    disagreements.append(f"{method}.{name}={value!r}: engine {engine_ok}")
    assert disagreements == []


def test_the_schema_documents_the_listing_and_its_errors(openapi):
    operation = openapi["paths"]["/api/methods/"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["type"] == "array"
    item = _resolve(openapi, ok["items"])
    assert {"name", "summary", "parameters", "data", "available", "unavailable_reason"} <= set(item["required"])
    parameter = _resolve(openapi, item["properties"]["parameters"]["items"])
    assert {"type", "default", "minimum", "maximum", "choices", "range"} <= set(parameter["properties"])
    for status in ("401", "403"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }


# --- the README ----------------------------------------------------------------------------------------------


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Compression methods\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no 'Compression methods' section"
    return match.group(1)


def test_the_readme_table_lists_exactly_the_engine_methods():
    rows = [line for line in _readme_section().splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `([a-z0-9_]+)` \|", row).group(1) for row in rows] == list(METHOD_SCHEMAS)


@pytest.mark.django_db
def test_the_readme_table_is_the_generated_one():
    """Regenerate with the command the README gives when a method or parameter changes."""
    table = "\n".join(line for line in _readme_section().splitlines() if line.startswith("|")) + "\n"
    assert table == methods_api.methods_markdown()
