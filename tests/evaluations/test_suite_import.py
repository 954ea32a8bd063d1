"""Suite uploads imported on a worker (202 + status URL, all or nothing, idempotent), the field limits
shared by CSV and JSONL, NUL bytes, `import_suite` errors, COPY, and CSV formula neutralisation."""

import csv
import datetime as dt
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DataError, connection
from django.utils import timezone

from evaluations.engine import tabular
from evaluations.engine.tabular import MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_SUBGROUP_CHARS, MAX_TEXT_CHARS
from evaluations.models import Example, Suite, SuiteImport, SuiteVersion
from evaluations.services import suite_imports, suites
from evaluations.services.suite_imports import suite_import_execute, suite_imports_requeue_stale
from evaluations.spreadsheet import csv_text, neutralise_cell
from evaluations.tasks import import_suite_file
from ledger.models import LedgerEvent
from tests.conftest import api_client_for, require_service

DB = pytest.mark.django_db(transaction=True)  # imports commit, and tasks run on commit
CSV = (
    b"id,comment,class,part\n"
    b"a1,you are all wonderful,normal,routine\n"
    b'a2,=HYPERLINK("http://x"),hatespeech,routine\n'
    b"a3,how do I kill a python process,safe,edge\n"
)
MAPPING = '{"text": "comment", "label": "class", "slice": "part"}'


@pytest.fixture(autouse=True)
def _upload_root(settings, tmp_path):
    # Every file here goes the large-file way (checked on the worker only) unless a test says otherwise.
    settings.SAFESHRINK = {
        **settings.SAFESHRINK,
        "UPLOAD_ROOT": tmp_path / "uploads",
        "IMPORT_CHECK_IN_REQUEST_BYTES": 0,
    }
    return tmp_path / "uploads"


def _upload(api, data: bytes, name="suite.csv", **fields):
    body = {
        "file": SimpleUploadedFile(name, data),
        "suite": "uploaded",
        "unsafe_labels": ["hatespeech"],
        "safe_labels": ["normal", "safe"],
        **({"mapping": MAPPING} if name.endswith(".csv") else {}),
        **fields,
    }
    return api.post("/api/suites/import/", body, format="multipart")


def _jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _status(api, response) -> dict:
    assert response.status_code == 202, response.content
    status = api.get(response.json()["url"])
    assert status.status_code == 200, status.content
    return status.json()


def _stored_uploads(root) -> list:
    return sorted(root.iterdir()) if root.exists() else []


def _nothing_stored() -> None:
    assert Suite.objects.count() == 0 and SuiteVersion.objects.count() == 0 and Example.objects.count() == 0
    assert not LedgerEvent.objects.filter(action="suite.imported").exists()


# --- 202, status URL, eventual success -------------------------------------------------------------


@DB
def test_upload_is_accepted_with_a_status_url_and_imported_on_a_worker(engineer_api, make_user, _upload_root):
    r = _upload(engineer_api, CSV)
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["url"] == f"/api/suite-imports/{body['id']}/" and r["Location"] == body["url"]
    status = _status(engineer_api, r)  # eager tasks: the worker's part already ran
    assert status["status"] == "succeeded" and status["error"] is None
    assert status["progress"] == {"stage": "done", "rows_done": 3, "rows_total": 3}
    version = SuiteVersion.objects.get(pk=status["suite_version"]["id"])
    assert version.example_count == 3 and status["suite_version"]["suite"] == "uploaded"
    assert list(version.examples.values_list("external_id", "slice", "is_unsafe")) == [
        ("a1", "routine", False),
        ("a2", "routine", True),
        ("a3", "edge", False),
    ]
    assert version.examples.get(external_id="a2").text == '=HYPERLINK("http://x")'  # stored verbatim
    assert _stored_uploads(_upload_root) == []  # the stored upload is removed once imported
    job = SuiteImport.objects.get(pk=body["id"])
    assert len(job.file_sha256) == 64 and job.file_size == len(CSV) and job.attempts == 1
    assert LedgerEvent.objects.filter(action="suite.import_requested", object_id=str(job.pk)).count() == 1
    # another engineer cannot see it; an officer may not use the endpoint
    assert api_client_for(make_user("other", "engineer")).get(body["url"]).status_code == 404
    assert api_client_for(make_user("olga", "officer")).get(body["url"]).status_code == 403
    again = _status(engineer_api, _upload(engineer_api, CSV))  # identical content: the same version
    assert again["status"] == "succeeded" and again["suite_version"]["id"] == version.pk


@DB
def test_row_problems_fail_the_import_with_the_error_model_and_store_nothing(engineer_api, _upload_root):
    data = CSV + b"a4,fine text,unknown-label,routine\n"  # the last row is bad
    status = _status(engineer_api, _upload(engineer_api, data))
    assert status["status"] == "failed" and status["suite_version"] is None
    error = status["error"]
    assert error["code"] == "invalid_rows" and set(error) == {"code", "message", "details"}
    assert any(line.startswith("line 5: unknown label 'unknown-label'") for line in error["details"]["file"])
    _nothing_stored()
    assert LedgerEvent.objects.filter(action="suite.import_failed").count() == 1
    assert _stored_uploads(_upload_root) == []


@DB
def test_a_small_file_with_a_bad_row_is_refused_at_once_and_nothing_is_queued(engineer_api, settings, _upload_root):
    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_CHECK_IN_REQUEST_BYTES": 1024}
    r = _upload(engineer_api, CSV + b"a4,fine text,unknown-label,routine\n")
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["code"] == "invalid_rows" and set(body) == {"code", "message", "details"}
    assert any(line.startswith("line 5: unknown label 'unknown-label'") for line in body["details"]["file"])
    _nothing_stored()
    assert SuiteImport.objects.count() == 0 and _stored_uploads(_upload_root) == []
    assert not LedgerEvent.objects.filter(action="suite.import_requested").exists()
    # over the threshold the same file is accepted and fails on the worker, with the same error
    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_CHECK_IN_REQUEST_BYTES": 10}
    status = _status(engineer_api, _upload(engineer_api, CSV + b"a4,fine text,unknown-label,routine\n"))
    assert status["status"] == "failed" and status["error"]["details"] == body["details"]
    # a good small file is still imported on the worker (202)
    settings.SAFESHRINK = {**settings.SAFESHRINK, "IMPORT_CHECK_IN_REQUEST_BYTES": 1024}
    assert _status(engineer_api, _upload(engineer_api, CSV))["status"] == "succeeded"


@DB
def test_a_failure_while_storing_the_last_row_stores_nothing(engineer, engineer_api, monkeypatch):
    require_service("postgres")
    # Let a 100-character label past the checks so that PostgreSQL itself refuses the last row.
    monkeypatch.setattr(tabular, "MAX_LABEL_CHARS", 1000)
    monkeypatch.setattr(suites, "MAX_LABEL_CHARS", 1000)
    monkeypatch.setattr(suite_imports, "MAX_LABEL_CHARS", 1000)
    monkeypatch.setattr(suite_imports, "_enqueue_import", lambda pk: None)  # the test plays the worker
    long_label = "x" * 100
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "normal"} for i in range(50)]
    rows.append({"id": "last", "text": "the last one", "label": long_label})
    r = _upload(engineer_api, _jsonl(*rows), name="suite.jsonl", unsafe_labels=[long_label])
    job_id = r.json()["id"]
    with pytest.raises(DataError):
        suite_import_execute(import_id=job_id)
    job = SuiteImport.objects.get(pk=job_id)
    assert job.status == "failed" and job.error["code"] == "import_error"
    _nothing_stored()


@DB
def test_task_delivered_twice_imports_once(engineer_api):
    r = _upload(engineer_api, CSV)
    job_id = r.json()["id"]
    import_suite_file(job_id)  # a second and a third delivery of the same message
    import_suite_file.apply(args=[job_id])
    job = SuiteImport.objects.get(pk=job_id)
    assert job.status == "succeeded" and job.attempts == 1
    assert SuiteVersion.objects.count() == 1 and Example.objects.count() == 3
    assert LedgerEvent.objects.filter(action="suite.imported").count() == 1


@DB
def test_a_delivery_while_another_worker_runs_the_import_does_nothing(engineer_api, monkeypatch):
    require_service("postgres")
    import psycopg

    monkeypatch.setattr(suite_imports, "_enqueue_import", lambda pk: None)
    job_id = _upload(engineer_api, CSV).json()["id"]
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:  # "the other worker"
        other.execute("SELECT pg_advisory_lock(%s, %s)", (suite_imports._LOCK_CLASS, job_id))
        suite_import_execute(import_id=job_id)
        assert SuiteImport.objects.get(pk=job_id).status == "queued" and Example.objects.count() == 0
    # that worker died (its connection, and so its lock, are gone) while running: a redelivery takes over
    SuiteImport.objects.filter(pk=job_id).update(status="running", attempts=1)
    suite_import_execute(import_id=job_id)
    job = SuiteImport.objects.get(pk=job_id)
    assert job.status == "succeeded" and job.attempts == 2 and Example.objects.count() == 3


@DB
def test_progress_is_visible_while_the_import_transaction_is_open(engineer_api, monkeypatch):
    require_service("postgres")
    import psycopg

    monkeypatch.setattr(suite_imports, "_enqueue_import", lambda pk: None)
    monkeypatch.setattr(suites, "PROGRESS_EVERY", 2)
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": "normal"} for i in range(7)]
    job_id = _upload(engineer_api, _jsonl(*rows), name="suite.jsonl").json()["id"]
    seen = []
    original = suite_imports._ProgressWriter.__call__

    def observe(self, done, total):
        original(self, done, total)
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as watcher:  # a poller
            seen.append(
                watcher.execute(
                    "SELECT status, stage, rows_done, rows_total FROM evaluations_suiteimport WHERE id = %s", (job_id,)
                ).fetchone()
            )

    monkeypatch.setattr(suite_imports._ProgressWriter, "__call__", observe)
    suite_import_execute(import_id=job_id)
    assert seen == [("running", "storing", n, 7) for n in (2, 4, 6, 7)]
    assert SuiteImport.objects.get(pk=job_id).status == "succeeded"


@DB
def test_lost_messages_are_sent_again_by_the_sweep(engineer_api, monkeypatch, settings):
    monkeypatch.setattr(suite_imports, "_enqueue_import", lambda pk: None)
    job_id = _upload(engineer_api, CSV).json()["id"]  # queued, and its message lost
    assert suite_imports_requeue_stale() == []  # younger than the lease
    lease = dt.timedelta(seconds=settings.SAFESHRINK["RUN_LEASE_SECONDS"])
    SuiteImport.objects.filter(pk=job_id).update(created_at=timezone.now() - 2 * lease)
    monkeypatch.undo()  # messages are sent (and, eager, run) again
    assert suite_imports_requeue_stale() == [job_id]
    assert SuiteImport.objects.get(pk=job_id).status == "succeeded"


# --- NUL bytes ----------------------------------------------------------------------------------------


@DB
def test_nul_byte_upload_is_refused_at_once_naming_the_line(engineer_api, _upload_root):
    data = b"id,comment,class,part\na1,fine,normal,routine\na2,bad\x00text,normal,routine\n"
    r = _upload(engineer_api, data)
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["code"] == "invalid_rows" and body["details"]["file"][0].startswith("line 3: a NUL byte (0x00)")
    assert SuiteImport.objects.count() == 0 and not _stored_uploads(_upload_root)
    _nothing_stored()


@DB
def test_escaped_nul_in_jsonl_fails_the_import_naming_line_and_field(engineer_api):
    data = _jsonl({"id": "a", "text": "fine", "label": "normal"}, {"id": "b", "text": "bad\u0000", "label": "normal"})
    status = _status(engineer_api, _upload(engineer_api, data, name="suite.jsonl"))
    assert status["status"] == "failed"
    assert status["error"]["details"]["file"] == [
        "line 2: text (column 'text') contains a NUL character (U+0000) at character 4, which cannot be stored"
    ]
    _nothing_stored()


@DB
def test_import_suite_command_refuses_a_nul_byte_readably(engineer, tmp_path, capsys):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"id,text,label\na1,fine,normal\na2,bad\x00,normal\n")
    args = [
        "--suite",
        "s",
        "--file",
        str(path),
        "--unsafe-labels",
        "hatespeech",
        "--safe-labels",
        "normal",
        "--as-user",
        engineer.username,
    ]
    with pytest.raises(CommandError) as refused:
        call_command("import_suite", *args)
    assert "line 3: text (column 'text') contains a NUL character" in str(refused.value)
    # as from a shell: a message on stderr, exit status 1, no traceback
    from evaluations.management.commands.import_suite import Command

    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "import_suite", *args])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "CommandError:" in err and "line 3" in err and "Traceback" not in err
    _nothing_stored()


# --- one limit for CSV and JSONL ------------------------------------------------------------------------


@DB
def test_a_100000_character_id_is_refused_naming_line_and_field(engineer_api, engineer, tmp_path):
    data = _jsonl({"id": "x" * 100_000, "text": "hi", "label": "normal"})
    status = _status(engineer_api, _upload(engineer_api, data, name="suite.jsonl"))
    assert status["status"] == "failed"
    message = status["error"]["details"]["file"][0]
    assert message == f"line 1: id (column 'id') has 100,000 characters, over the limit of {MAX_ID_CHARS:,}"
    path = tmp_path / "long.jsonl"
    path.write_bytes(data)
    with pytest.raises(CommandError, match="line 1: id"):
        call_command(
            "import_suite",
            "--suite",
            "s",
            "--file",
            str(path),
            "--unsafe-labels",
            "hatespeech",
            "--safe-labels",
            "normal",
        )
    _nothing_stored()


@DB
def test_long_jsonl_text_is_refused(engineer_api):
    data = _jsonl({"id": "a", "text": "x" * 10_000_000, "label": "normal"})
    status = _status(engineer_api, _upload(engineer_api, data, name="suite.jsonl"))
    assert status["status"] == "failed"
    assert status["error"]["details"]["file"] == [
        f"line 1: text (column 'text') has 10,000,000 characters, over the limit of {MAX_TEXT_CHARS:,}"
    ]
    _nothing_stored()


def _csv_file(text: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([["id", "comment", "class", "part"], ["a1", text, "normal", "routine"]])
    return out.getvalue().encode()


@DB
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_text_limit_is_the_same_for_csv_and_jsonl_at_its_boundary(engineer_api, fmt):
    def upload(text):
        if fmt == "csv":
            return _upload(engineer_api, _csv_file(text))
        return _upload(engineer_api, _jsonl({"id": "a1", "text": text, "label": "normal"}), name="suite.jsonl")

    column, line = ("comment", 2) if fmt == "csv" else ("text", 1)
    over = _status(engineer_api, upload("y" * (MAX_TEXT_CHARS + 1)))
    assert over["status"] == "failed"
    assert over["error"]["details"]["file"] == [
        f"line {line}: text (column '{column}') has {MAX_TEXT_CHARS + 1:,} characters, over the limit of "
        f"{MAX_TEXT_CHARS:,}"
    ]
    _nothing_stored()
    exact = _status(engineer_api, upload("y" * MAX_TEXT_CHARS))
    assert exact["status"] == "succeeded", exact
    assert len(Example.objects.get().text) == MAX_TEXT_CHARS


def test_limits_are_defined_once_and_match_the_columns():
    fields = {f.name: f for f in Example._meta.get_fields()}
    assert fields["external_id"].max_length == MAX_ID_CHARS
    assert fields["label"].max_length == MAX_LABEL_CHARS and fields["subgroup"].max_length == MAX_SUBGROUP_CHARS
    assert MAX_TEXT_CHARS == 131_072


@DB
def test_shared_and_derived_rows_are_held_to_the_same_limits(engineer):
    from accounts.errors import ValidationFailed
    from evaluations.services.suites import ExampleRow, suite_version_import

    rows = [
        ExampleRow(external_id="a", text="x" * (MAX_TEXT_CHARS + 1), label="normal", slice="routine", line=2),
        ExampleRow(external_id="b", text="nul\x00", label="normal", slice="routine", line=3),
    ]
    with pytest.raises(ValidationFailed) as refused:
        suite_version_import(
            actor=engineer, suite_name="s", rows=rows, unsafe_labels=["hatespeech"], safe_labels=["normal"]
        )
    assert [line[:7] for line in refused.value.details["rows"]] == ["line 2:", "line 3:"]
    _nothing_stored()


# --- CSV out: formulas neutralised -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("plain = text", "plain = text"),
        (-0.25, -0.25),
        (None, ""),
    ],
)
def test_csv_cells_that_would_run_as_formulas_are_neutralised(cell, shown):
    assert neutralise_cell(cell) == shown


def test_csv_text_round_trips_with_every_formula_cell_quoted():
    text = csv_text(["id", "text", "delta"], [["a2", "=cmd|' /C calc'!A0", -0.5], ["a3", "@x", 1]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "text", "delta"], ["a2", "'=cmd|' /C calc'!A0", "-0.5"], ["a3", "'@x", "1"]]


# --- the Python client ------------------------------------------------------------------------------------


@DB
def test_python_client_uploads_a_suite_and_waits_for_its_import(live_server, engineer, tmp_path):
    from rest_framework.authtoken.models import Token

    from safeshrink_client import ApiError, Client

    api = Client(live_server.url, token=Token.objects.get_or_create(user=engineer)[0].key)
    path = tmp_path / "my suite.csv"
    path.write_bytes(CSV)
    job = api.upload_suite(
        path,
        "client suite",
        unsafe_labels=["hatespeech"],
        safe_labels=["normal", "safe"],
        mapping={"text": "comment", "label": "class", "slice": "part"},
        interval=0.05,
    )
    assert job["status"] == "succeeded" and job["suite_version"]["example_count"] == 3
    assert job["file_name"] == "my suite.csv"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_jsonl({"id": "x" * 300, "text": "t", "label": "normal"}))
    failed = api.upload_suite(bad, "client suite", unsafe_labels=["hatespeech"], safe_labels=["normal"], interval=0.05)
    assert failed["status"] == "failed" and failed["error"]["details"]["file"][0].startswith("line 1: id")
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"id,text,label\na,b\x00,normal\n")
    with pytest.raises(ApiError) as refused:
        api.upload_suite(nul, "client suite", unsafe_labels=["hatespeech"], safe_labels=["normal"])
    assert refused.value.status == 400 and refused.value.code == "invalid_rows"


def test_content_digest_is_the_canonical_json_digest_of_the_examples():
    """Identical content must keep returning the existing version: the digest's definition may not drift."""
    from evaluations.services.suites import ExampleRow, suite_content_digest
    from ledger.canonical import digest

    rows = [
        ExampleRow(external_id="a", text="=1+1 ünïcode", label="normal", slice="routine", line=2, tags=("x", "y")),
        ExampleRow(
            external_id="b",
            text="variant",
            label="hatespeech",
            slice="adversarial",
            line=3,
            subgroup="women",
            source_id="a",
        ),
    ]
    expected = digest(
        {
            "unsafe_labels": ["hatespeech"],
            "examples": [
                {
                    "id": "a",
                    "text": "=1+1 ünïcode",
                    "label": "normal",
                    "slice": "routine",
                    "subgroup": "",
                    "tags": ["x", "y"],
                },
                {
                    "id": "b",
                    "text": "variant",
                    "label": "hatespeech",
                    "slice": "adversarial",
                    "subgroup": "women",
                    "tags": [],
                    "source": "a",
                },
            ],
        }
    )
    assert suite_content_digest(rows, ["hatespeech"]) == expected


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"mapping": "[1, 2]"}, "mapping"),
        ({"mapping": "5"}, "mapping"),
        ({"mapping": '{"text": "com\\u0000ment"}'}, "mapping"),
        ({"mapping": "[" * 50_000 + "]" * 50_000}, "mapping"),
        ({"unsafe_labels": ["x" * (MAX_LABEL_CHARS + 1)]}, "unsafe_labels"),
        ({"safe_labels": ["normal", "y" * (MAX_LABEL_CHARS + 1)]}, "safe_labels"),
    ],
)
@DB
def test_bad_form_fields_are_refused_at_once(engineer_api, _upload_root, fields, field):
    r = _upload(engineer_api, CSV, **fields)
    assert r.status_code == 400, r.content
    body = r.json()
    assert set(body) == {"code", "message", "details"} and field in body["details"], body
    assert SuiteImport.objects.count() == 0 and not _stored_uploads(_upload_root)


def test_a_models_output_with_nul_or_a_lone_surrogate_is_stored_with_a_replacement_character():
    from evaluations.services.suites import storable_text

    assert storable_text("ok\x00then \ud800 end") == "ok\ufffdthen \ufffd end"
    assert storable_text("plain answer") == "plain answer"
