"""The unmodified MLflow client (mlflow-skinny, as an engineer's script uses it) against a real SafeShrink server
process: `manage.py runserver` on a free port, on the test database (PostgreSQL, so the server sees what the test
commits), with MLFLOW_TRACKING_URI=http://.../mlflow and MLFLOW_TRACKING_TOKEN=<the engineer's API token>."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, pathlib, sys
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

out = {}
model_dir = pathlib.Path(sys.argv[1])
mlflow.set_experiment(os.environ["EXP_NAME"])
client = MlflowClient()
with mlflow.start_run(run_name="gptq try", tags={"safeshrink.method": "GPTQ 4-bit"}) as run:
    rid = run.info.run_id
    mlflow.log_param("bits", 4)
    mlflow.log_params({"group_size": 128, "desc_act": False})
    mlflow.log_metric("loss", 0.5, step=1, timestamp=1700000000000)
    mlflow.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
    client.log_batch(rid, metrics=[Metric("ppl", 10.0 - i, 1700000000000 + i, i) for i in range(5)],
                     params=[Param("seed", "7")], tags=[RunTag("stage", "batch")])
    mlflow.set_tag("team", "safety")
    try:
        mlflow.log_metric("bad", float("nan"))
    except MlflowException as e:
        out["nan_error"] = e.error_code
    # The client itself refuses a non-numeric value; a script posting JSON by hand meets the server's refusal.
    import requests
    raw = requests.post(
        os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric",
        json={"run_id": rid, "key": "bad", "value": "abc", "timestamp": 1},
        headers={"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]},
    )
    out["non_numeric_error"] = [raw.status_code, raw.json()["error_code"], "metrics[0].value" in raw.json()["message"]]
    try:
        mlflow.log_param("bits", 8)
    except MlflowException as e:
        out["param_error"] = e.error_code
    mlflow.log_artifacts(str(model_dir), artifact_path="model")
    out["artifacts"] = sorted(f.path for f in client.list_artifacts(rid, "model"))
    out["history"] = [[m.step, m.value, m.timestamp] for m in client.get_metric_history(rid, "loss")]
out["search"] = [r.info.run_id for r in client.search_runs([run.info.experiment_id], "params.bits = '4'")]
got = client.get_run(rid)
out["status"] = got.info.status
out["metrics"] = got.data.metrics
try:
    client.delete_run(rid)
except MlflowException as e:
    out["unsupported"] = e.error_code
mv = mlflow.register_model(f"runs:/{rid}/model", "tiny-gptq")
out["version"] = [mv.name, mv.version, mv.status]
out["run_id"] = rid
print("RESULT " + json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(settings, tmp_path):
    require_service("postgres")
    db = connection.settings_dict
    roots = {"ARTIFACT_ROOT": tmp_path / "store", "TRACKING_ARTIFACT_ROOT": tmp_path / "runs"}
    settings.SAFESHRINK = {**settings.SAFESHRINK, **roots}
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SAFESHRINK_ARTIFACT_ROOT": str(roots["ARTIFACT_ROOT"]),
        "SAFESHRINK_TRACKING_ARTIFACT_ROOT": str(roots["TRACKING_ARTIFACT_ROOT"]),
        "SAFESHRINK_SYSTEM_KEY": str(settings.SAFESHRINK["SYSTEM_KEY"]),
        "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(settings.SAFESHRINK["SYSTEM_PUBLIC_KEY"]),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start:\n{log.read_text()[-4000:]}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mlflow", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.django_db(transaction=True)
def test_an_ordinary_mlflow_script_against_a_real_server(world, server, tmp_path):
    from rest_framework.authtoken.models import Token

    from compression.engine.manifest import manifest_digest
    from ledger.models import LedgerEvent
    from tracking.models import ExternalRun, RegisteredModelVersion

    uri, log = server
    model_dir = tmp_path / "tiny-model"
    (model_dir / "extra").mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps({"id2label": {"0": "normal", "1": "offensive"}}))
    (model_dir / "model.safetensors").write_bytes(os.urandom(4096))
    (model_dir / "extra" / "notes.txt").write_text("quantised with GPTQ")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    token, _ = Token.objects.get_or_create(user=world["eve"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_TOKEN": token.key,
        "EXP_NAME": world["experiments"]["eve"].name,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    done = subprocess.run(
        [sys.executable, str(script), str(model_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}\n{log.read_text()[-3000:]}"
    out = json.loads(lines[0][len("RESULT ") :])

    assert out["nan_error"] == "INVALID_PARAMETER_VALUE"
    assert out["non_numeric_error"] == [400, "INVALID_PARAMETER_VALUE", True]
    assert out["param_error"] == "INVALID_PARAMETER_VALUE"
    assert out["unsupported"] == "ENDPOINT_NOT_FOUND"
    assert out["artifacts"] == ["model/config.json", "model/extra", "model/model.safetensors"]
    assert out["history"] == [[1, 0.5, 1700000000000], [2, 0.25, out["history"][1][2]]]
    assert out["search"] == [out["run_id"]] and out["status"] == "FINISHED"
    assert out["metrics"] == {"loss": 0.25, "acc": 0.9, "ppl": 6.0}
    assert out["version"] == ["tiny-gptq", "1", "READY"]

    run = ExternalRun.objects.get(run_uuid=out["run_id"])
    assert (run.name, run.method, run.status, run.experiment) == (
        "gptq try",
        "GPTQ 4-bit",
        "finished",
        world["experiments"]["eve"],
    )
    assert dict(run.params.values_list("key", "value")) == {
        "bits": "4",
        "group_size": "128",
        "desc_act": "False",
        "seed": "7",
    }
    assert run.metrics.count() == 1 + 2 + 5 and not run.metrics.filter(key="bad").exists()
    tags = dict(run.tags.values_list("key", "value"))
    assert tags["team"] == "safety" and tags["stage"] == "batch" and tags["safeshrink.method"] == "GPTQ 4-bit"
    version = RegisteredModelVersion.objects.get(run=run)
    assert version.artifact.digest == manifest_digest(model_dir)
    assert run.output_artifact == version.artifact and run.contents_digest
    actions = list(
        LedgerEvent.objects.filter(object_type="external_run", object_id=run.pk).values_list("action", flat=True)
    )
    assert actions[0] == "external_run.created" and actions[-1] == "external_run.model_registered"
    assert actions.count("external_run.artifact_logged") == 3 and "external_run.finished" in actions
    assert LedgerEvent.objects.filter(action="artifact.registered", object_id=version.artifact_id).exists()
