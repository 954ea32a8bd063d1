"""The optional methods' probe runs at start-up (system check, worker start), never on a request."""

import json
import subprocess
import sys

import pytest

from compression import capabilities as app_capabilities
from compression.engine import capabilities
from compression.engine.errors import EngineError
from compression.engine.methods import method_available, validate_parameters


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    capabilities.forget()
    monkeypatch.setattr(app_capabilities, "_seen", None)
    monkeypatch.setattr(app_capabilities, "capabilities_path", lambda: tmp_path / "capabilities.json")
    yield tmp_path / "capabilities.json"
    capabilities.forget()


def _no_subprocess(*args, **kwargs):
    raise AssertionError(f"a child interpreter was started: {args}")


def test_a_torch_free_process_never_starts_a_probe_on_the_request_path(monkeypatch):
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in the web process
    assert method_available("int8_weight_only")  # nothing recorded: the worker checks again before running
    capabilities.record({"int8_weight_only": False})
    assert not method_available("int8_weight_only")
    with pytest.raises(EngineError) as caught:
        validate_parameters("int8_weight_only", {})
    assert caught.value.code == "method_unavailable"


def test_a_worker_with_nothing_recorded_probes_in_process_once(monkeypatch):
    pytest.importorskip("torch")
    calls = []
    monkeypatch.setattr(capabilities, "probe", lambda method: calls.append(method) or False)
    assert not method_available("int8_weight_only") and not method_available("int8_weight_only")
    assert calls == ["int8_weight_only"]


def test_startup_stores_the_answer_for_this_environment_and_requests_read_it(fresh, monkeypatch):
    none = {m: False for m in capabilities.OPTIONAL_METHOD_PROBES}  # int8 and int4 weight-only
    monkeypatch.setattr(capabilities, "probe_all", lambda: none)
    assert app_capabilities.capabilities_ensure() == none
    stored = json.loads(fresh.read_text())
    assert stored == {"environment": capabilities.environment(), "methods": none}
    capabilities.forget()
    monkeypatch.setattr(capabilities, "probe_all", _no_subprocess)
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    app_capabilities.capabilities_load()  # the request path: reads, never probes
    assert capabilities.recorded("int8_weight_only") is False
    assert app_capabilities.capabilities_ensure() == none  # a second start-up reuses it


def test_an_answer_stored_for_another_environment_is_not_used(fresh):
    fresh.write_text(
        json.dumps(
            {"environment": {**capabilities.environment(), "torch": "0.0"}, "methods": {"int8_weight_only": False}}
        )
    )
    app_capabilities.capabilities_load()
    assert capabilities.recorded("int8_weight_only") is None and app_capabilities.capabilities_stored() is None


def test_system_check_warns_when_a_method_cannot_run(monkeypatch):
    from compression.checks import optional_methods

    monkeypatch.setattr(capabilities, "probe_all", lambda: {m: False for m in capabilities.OPTIONAL_METHOD_PROBES})
    warnings = optional_methods(None)  # one per method that cannot run here
    assert [w.id for w in warnings] == ["compression.W001"] * len(capabilities.OPTIONAL_METHOD_PROBES)
    capabilities.forget()
    monkeypatch.setattr(app_capabilities, "capabilities_stored", lambda: None)
    monkeypatch.setattr(capabilities, "probe_all", lambda: {"int8_weight_only": True})
    assert optional_methods(None) == []


def test_worker_start_records_the_answer(monkeypatch, fresh):
    from compression.tasks import record_method_capabilities

    monkeypatch.setattr(capabilities, "probe_all", lambda: {"int8_weight_only": True})
    record_method_capabilities(sender=None)
    assert capabilities.recorded("int8_weight_only") is True and fresh.is_file()


@pytest.mark.django_db(transaction=True)
def test_the_api_refuses_a_method_start_up_found_unusable(engineer_api, engineer, base_artifact, fresh, monkeypatch):
    from compression.models import CompressionRun
    from compression.services.experiments import experiment_create

    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    monkeypatch.setattr(capabilities, "probe_all", lambda: {m: False for m in capabilities.OPTIONAL_METHOD_PROBES})
    app_capabilities.capabilities_record()
    capabilities.forget()  # another process: only the stored file tells it
    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech"]
    )
    r = engineer_api.post(f"/api/experiments/{experiment.pk}/runs/", {"method": "int8_weight_only"}, format="json")
    assert r.status_code == 400 and r.json()["code"] == "method_unavailable", r.content
    assert "parameters" in r.json()["details"] and CompressionRun.objects.count() == 0
