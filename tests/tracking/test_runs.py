"""tracking.services.runs: recording an external run, logging to it in batches, finishing it; one ledger event
per request with the digest of what it added; a refused request stores nothing; only the owner writes."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from accounts.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ledger.actions import ACTIONS
from ledger.models import LedgerEvent
from tracking.models import ExternalRun, ExternalRunMetric, ExternalRunParam, ExternalRunTag
from tracking.selectors import metric_summary, run_contents_digest
from tracking.services.runs import external_run_create, external_run_finish, external_run_log
from trust.canonical import digest

pytestmark = pytest.mark.django_db

TRACKING_ACTIONS = {
    "external_run.created",
    "external_run.logged",
    "external_run.finished",
    "external_run.provenance_attached",
    "engineer_key.registered",
}


def _events(run) -> list[tuple[str, dict]]:
    return [
        (e.action, json.loads(e.payload_json))
        for e in LedgerEvent.objects.filter(object_type="external_run", object_id=str(run.pk)).order_by("id")
    ]


def _stored(run) -> tuple[int, int, int, int]:
    events = LedgerEvent.objects.filter(object_type="external_run", object_id=str(run.pk)).count()
    return run.params.count(), run.metrics.count(), run.tags.count(), events


def test_every_action_tracking_writes_is_in_the_ledger_vocabulary():
    """ledger.actions must list them (the lead adds them at integration; ledger_append refuses any other)."""
    assert TRACKING_ACTIONS <= ACTIONS


def test_create_records_everything_reported_and_one_event(world):
    eve, arts = world["eve"], world["artifacts"]["eve"]
    started = timezone.now() - dt.timedelta(hours=2)
    run = external_run_create(
        actor=eve,
        experiment_id=world["experiments"]["eve"].pk,
        method="GPTQ via AutoGPTQ",
        known_method="dynamic_int8",
        name="gptq-4bit",
        parameters={"bits": 4, "group_size": 128, "desc_act": False},
        code_reference={"url": "https://git.example.org/team/quant.git", "commit": "0a1b2c3d", "path": "q.py"},
        tool_versions={"auto-gptq": "0.7.1", "torch": "2.4.0"},
        hardware={"gpu": "A100 80GB", "count": 1},
        seeds=[0, 1, -5],
        tags={"team": "safety", "ticket": "SS-12"},
        input_artifact_ids=[arts["base"].pk, arts["base"].pk],
        output_artifact_id=arts["output"].pk,
        started_at=started,
    )
    run.refresh_from_db()
    assert (run.status, run.recorded_by, run.started_at, run.ended_at) == ("running", eve, started, None)
    assert len(run.run_uuid) == 32 and run.seeds == [0, 1, -5] and run.parameters["group_size"] == 128
    assert list(run.input_artifacts.all()) == [arts["base"]] and run.output_artifact == arts["output"]
    assert dict(run.tags.values_list("key", "value")) == {"team": "safety", "ticket": "SS-12"}
    [(action, payload)] = _events(run)
    assert action == "external_run.created"
    assert payload["source"] == "external" and payload["verification"] == "reported"
    assert payload["input_artifacts"] == [arts["base"].digest] and payload["output_artifact"] == arts["output"].digest
    assert payload["known_method"] == "dynamic_int8" and len(payload["record_digest"]) == 64


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"known_method": "gptq"}, "known_method"),
        ({"method": ""}, "method"),
        ({"method": "   "}, "method"),
        ({"method": "x" * 201}, "method"),
        ({"parameters": [1, 2]}, "parameters"),
        ({"parameters": {"x": float("nan")}}, "parameters"),
        ({"hardware": "A100"}, "hardware"),
        ({"code_reference": {"url": "u", "branch": "main"}}, "code_reference.branch"),
        ({"code_reference": {"commit": 12}}, "code_reference.commit"),
        ({"tool_versions": {"torch": 2}}, "tool_versions.torch"),
        ({"seeds": [1, "two"]}, "seeds[1]"),
        ({"seeds": [2**63]}, "seeds[0]"),
        ({"tags": {"bad/../key": "v"}}, "tags.bad/../key"),
        ({"tags": {"k": 3}}, "tags.k"),
        ({"input_artifact_ids": [999999]}, "input_artifacts[0]"),
        ({"output_artifact_id": 999999}, "output_artifact"),
    ],
)
def test_bad_fields_are_400_naming_the_field_and_nothing_is_stored(world, fields, name):
    body = {"actor": world["eve"], "experiment_id": world["experiments"]["eve"].pk, "method": "GPTQ", **fields}
    events = LedgerEvent.objects.count()
    with pytest.raises(ValidationFailed) as caught:
        external_run_create(**body)
    assert name in caught.value.details, caught.value.details
    assert ExternalRun.objects.count() == 0 and ExternalRunTag.objects.count() == 0
    assert LedgerEvent.objects.count() == events


def test_another_engineer_s_experiment_and_artifacts_are_unknown(world):
    eve, oscar = world["eve"], world["oscar"]
    with pytest.raises(ValidationFailed) as caught:
        external_run_create(actor=eve, experiment_id=world["experiments"]["oscar"].pk, method="AWQ")
    assert "experiment" in caught.value.details
    with pytest.raises(ValidationFailed) as caught:
        external_run_create(
            actor=eve,
            experiment_id=world["experiments"]["eve"].pk,
            method="AWQ",
            output_artifact_id=world["artifacts"]["oscar"]["output"].pk,
        )
    assert "output_artifact" in caught.value.details
    with pytest.raises(PermissionDenied):  # an admin sees every experiment but records runs only in their own
        external_run_create(actor=world["admin"], experiment_id=world["experiments"]["eve"].pk, method="AWQ")
    with pytest.raises(PermissionDenied):
        external_run_create(actor=world["officer"], experiment_id=world["experiments"]["eve"].pk, method="AWQ")
    assert ExternalRun.objects.count() == 0 and oscar


def test_log_batch_stores_rows_and_one_event_with_the_digest_of_what_it_added(world, eve_run):
    metrics = [{"key": "loss", "value": 1.0 / (i + 1), "step": i, "timestamp": 1000 + i} for i in range(250)]
    result = external_run_log(
        actor=world["eve"],
        run_id=eve_run.pk,
        params=[{"key": "bits", "value": "4"}],
        metrics=metrics,
        tags=[{"key": "stage", "value": "calibrating"}],
    )
    assert (result.params_added, result.metrics_added, result.tags_set) == (1, 250, 1)
    assert ExternalRunMetric.objects.filter(run=eve_run).count() == 250
    expected = digest(
        {
            "params": [["bits", "4"]],
            "metrics": [[m["key"], m["value"], m["step"], m["timestamp"]] for m in metrics],
            "tags": [["stage", "calibrating"]],
        }
    )
    logged = [p for a, p in _events(eve_run) if a == "external_run.logged"]
    assert (
        logged == [{"run_uuid": eve_run.run_uuid, "params": 1, "metrics": 250, "tags": 1, "digest": expected}]
        and result.digest == expected
    )

    # The same param again (same value) is accepted, not added twice; a tag is overwritten.
    again = external_run_log(
        actor=world["eve"],
        run_id=eve_run.pk,
        params=[{"key": "bits", "value": "4"}, {"key": "group_size", "value": "128"}],
        tags=[{"key": "stage", "value": "done"}],
    )
    assert (again.params_added, again.metrics_added, again.tags_set) == (1, 0, 1)
    assert dict(eve_run.params.values_list("key", "value")) == {"bits": "4", "group_size": "128"}
    assert dict(eve_run.tags.values_list("key", "value")) == {"stage": "done"}
    assert len([a for a, _ in _events(eve_run) if a == "external_run.logged"]) == 2

    # A request that adds nothing records nothing.
    nothing = external_run_log(actor=world["eve"], run_id=eve_run.pk, params=[{"key": "bits", "value": "4"}])
    assert nothing.digest is None and len(_events(eve_run)) == 3


def test_a_param_cannot_change_and_the_whole_batch_is_refused(world, eve_run):
    external_run_log(actor=world["eve"], run_id=eve_run.pk, params=[{"key": "bits", "value": "4"}])
    before = _stored(eve_run)
    with pytest.raises(ValidationFailed) as caught:
        external_run_log(
            actor=world["eve"],
            run_id=eve_run.pk,
            params=[{"key": "new", "value": "1"}, {"key": "bits", "value": "8"}],
            metrics=[{"key": "loss", "value": 0.5}],
            tags=[{"key": "t", "value": "v"}],
        )
    assert caught.value.code == "param_changed" and list(caught.value.details) == ["params[1].value"]
    assert "'4'" in caught.value.details["params[1].value"][0]
    assert _stored(eve_run) == before
    assert ExternalRunParam.objects.get(run=eve_run, key="bits").value == "4"


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"key": "loss", "value": float("nan")}, "metrics[1].value"),
        ({"key": "loss", "value": float("inf")}, "metrics[1].value"),
        ({"key": "loss", "value": "0.5"}, "metrics[1].value"),
        ({"key": "loss", "value": 0.5, "step": 2**63}, "metrics[1].step"),
        ({"key": "../loss", "value": 0.5}, "metrics[1].key"),
    ],
)
def test_a_bad_metric_refuses_the_whole_batch(world, eve_run, metric, field):
    before = _stored(eve_run)
    with pytest.raises(ValidationFailed) as caught:
        external_run_log(
            actor=world["eve"],
            run_id=eve_run.pk,
            params=[{"key": "bits", "value": "4"}],
            metrics=[{"key": "loss", "value": 1.0}, metric],
        )
    assert list(caught.value.details) == [field]
    assert _stored(eve_run) == before


def test_only_the_owner_logs(world, eve_run, oscar_run):
    with pytest.raises(NotFound):  # another engineer's run does not exist for them
        external_run_log(actor=world["oscar"], run_id=eve_run.pk, metrics=[{"key": "a", "value": 1}])
    with pytest.raises(NotFound):
        external_run_log(actor=world["eve"], run_id=999999, metrics=[{"key": "a", "value": 1}])
    with pytest.raises(PermissionDenied):  # an admin sees it but may not write to it
        external_run_log(actor=world["admin"], run_id=eve_run.pk, metrics=[{"key": "a", "value": 1}])
    with pytest.raises(PermissionDenied):
        external_run_log(actor=world["officer"], run_id=eve_run.pk, metrics=[{"key": "a", "value": 1}])
    with pytest.raises(NotFound):  # who before what: bad input from the wrong person is still a 404
        external_run_log(actor=world["oscar"], run_id=eve_run.pk, metrics=[{"key": "a", "value": "x"}])
    assert ExternalRunMetric.objects.count() == 0 and oscar_run.metrics.count() == 0


def test_finish_closes_the_record_with_its_contents_digest(world, eve_run):
    eve, output = world["eve"], world["artifacts"]["eve"]["output"]
    external_run_log(
        actor=eve,
        run_id=eve_run.pk,
        params=[{"key": "bits", "value": "4"}],
        metrics=[{"key": "loss", "value": v, "step": s, "timestamp": 10} for s, v in ((0, 2.0), (2, 0.5), (1, 1.0))],
        tags=[{"key": "t", "value": "v"}],
    )
    run = external_run_finish(actor=eve, run_id=eve_run.pk, status="finished", output_artifact_id=output.pk)
    assert run.status == "finished" and run.ended_at is not None and run.output_artifact == output
    assert run.contents_digest == run_contents_digest(run)
    [summary] = metric_summary(run)
    assert (summary["count"], summary["first_step"], summary["last_step"], summary["latest_value"]) == (3, 0, 2, 0.5)
    finished = [p for a, p in _events(run) if a == "external_run.finished"]
    assert finished == [
        {
            "run_uuid": run.run_uuid,
            "status": "finished",
            "ended_at": run.ended_at.isoformat(),
            "output_artifact": output.digest,
            "contents_digest": run.contents_digest,
            "params": 1,
            "metrics": 3,
            "tags": 1,
        }
    ]
    before = _stored(run)
    with pytest.raises(Conflict) as caught:
        external_run_log(actor=eve, run_id=run.pk, metrics=[{"key": "loss", "value": 0.1}])
    assert caught.value.code == "run_finished"
    with pytest.raises(Conflict):
        external_run_finish(actor=eve, run_id=run.pk, status="failed")
    assert _stored(run) == before


def test_the_contents_digest_changes_with_any_reported_value(world, eve_run, oscar_run):
    external_run_log(actor=world["eve"], run_id=eve_run.pk, metrics=[{"key": "loss", "value": 1.0, "timestamp": 1}])
    first = run_contents_digest(eve_run)
    ExternalRunMetric.objects.filter(run=eve_run).update(value=1.0000001)
    assert run_contents_digest(eve_run) != first


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"status": "running"}, "status"),
        ({"status": "succeeded"}, "status"),
        ({"ended_at": timezone.now() - dt.timedelta(days=1)}, "ended_at"),
        ({"output_artifact_id": 999999}, "output_artifact"),
    ],
)
def test_bad_finish_is_400_naming_the_field(world, eve_run, fields, name):
    with pytest.raises(ValidationFailed) as caught:
        external_run_finish(actor=world["eve"], run_id=eve_run.pk, **{"status": "finished", **fields})
    assert name in caught.value.details
    eve_run.refresh_from_db()
    assert eve_run.status == "running" and eve_run.contents_digest == ""
    assert [a for a, _ in _events(eve_run)] == ["external_run.created"]


def test_an_output_artifact_once_named_is_not_replaced(world):
    arts = world["artifacts"]["eve"]
    run = external_run_create(
        actor=world["eve"],
        experiment_id=world["experiments"]["eve"].pk,
        method="AWQ",
        output_artifact_id=arts["output"].pk,
    )
    with pytest.raises(ValidationFailed) as caught:
        external_run_finish(actor=world["eve"], run_id=run.pk, output_artifact_id=arts["base"].pk)
    assert "output_artifact" in caught.value.details
    assert external_run_finish(actor=world["eve"], run_id=run.pk, output_artifact_id=arts["output"].pk).is_ended
