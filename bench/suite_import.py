"""Importing a ~50 MiB suite file on PostgreSQL: `import_suite`, and an upload's request and worker parts.

Generates a seeded CSV of about 50 MiB (ids, texts of 10-50 words, some beginning with `=`, `+`, `-`,
`@`; labels, slices, subgroups, tags), then:
(a) `manage.py import_suite` end to end (read, parse and check every row, content digest, COPY of the
    examples, ledger event, commit), TRIALS times into new suites (identical content in the same suite
    would return the existing version), median trial with its phases (parse, digest) timed apart;
(b) the API's path: `suite_import_request` (what the web request does: stream the upload to the upload
    folder) and `suite_import_execute` (what the worker does), once.
Target: >= 20,000 rows/s for (a). Creates and drops its own database `safeshrink_bench_suite_import`.
"""

import csv
import io
import os
import random
import tempfile
import time
from pathlib import Path

DB_NAME = "safeshrink_bench_suite_import"
TARGET_BYTES = 50 * 1024 * 1024 - 256 * 1024  # just under the 50 MiB upload limit
TRIALS = 3
TARGET_ROWS_PER_SECOND = 20_000
WORDS = (  # noqa: SIM905 (a word list reads better as one string)
    "the you people kill process how go back where came from wonderful all are never ever python question "
    "answer hate love ok =SUM(A1) -dash @at +plus refugee women neighbour library fine"
).split()
LABELS = ("normal", "hatespeech", "offensive", "safe")
SLICES = ("routine", "edge", "adversarial")


def generate(path: Path, target_bytes: int = TARGET_BYTES, seed: int = 0) -> int:
    """Write the seeded CSV; return its number of rows."""
    rng = random.Random(seed)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "text", "label", "slice", "subgroup", "tags"])
        buffer = io.StringIO()
        chunk = csv.writer(buffer, lineterminator="\n")
        while handle.tell() < target_bytes:
            for _ in range(1000):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 50)))
                chunk.writerow(
                    [
                        f"ex-{rows}",
                        text,
                        rng.choice(LABELS),
                        rng.choice(SLICES),
                        rng.choice(("", "women", "refugee")),
                        "bench|synthetic",
                    ]
                )
                rows += 1
            handle.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    return rows


def run() -> dict:
    import psycopg

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base.startswith("postgres"):
        raise RuntimeError("bench/suite_import.py needs DATABASE_URL to point at PostgreSQL")
    server = base.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    tmp = Path(tempfile.mkdtemp(prefix="safeshrink-bench-suite-import-"))
    os.environ.update(
        {
            "DATABASE_URL": f"{server}/{DB_NAME}",
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "SAFESHRINK_ARTIFACT_ROOT": str(tmp / "artifacts"),
            "SAFESHRINK_UPLOAD_ROOT": str(tmp / "uploads"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("migrate", verbosity=0)
        from accounts.services import user_create
        from evaluations.models import SuiteImport, SuiteVersion
        from evaluations.services import suite_imports, suites

        engineer = user_create(actor=None, username="bench", role="engineer", password="bench-pass-123")
        path = tmp / "suite.csv"
        started = time.perf_counter()
        rows = generate(path)
        generate_seconds = time.perf_counter() - started
        size = path.stat().st_size
        labels = {"unsafe_labels": ["hatespeech", "offensive"], "safe_labels": ["normal", "safe"]}

        trials = []
        for trial in range(TRIALS):
            started, cpu = time.perf_counter(), time.process_time()
            call_command(
                "import_suite",
                "--suite",
                f"bench {trial}",
                "--file",
                str(path),
                "--as-user",
                "bench",
                "--unsafe-labels",
                ",".join(labels["unsafe_labels"]),
                "--safe-labels",
                ",".join(labels["safe_labels"]),
                stdout=io.StringIO(),
            )
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
            data = path.read_bytes()
            started = time.perf_counter()
            parsed = suites._parse(data, fmt="csv", mapping=None, default_slice="routine", **labels)
            parse_seconds = time.perf_counter() - started
            started = time.perf_counter()
            suites.suite_content_digest(parsed.rows, labels["unsafe_labels"])
            digest_seconds = time.perf_counter() - started
            del data, parsed
            trials.append(
                {
                    "seconds": round(seconds, 2),
                    "rows_per_second": round(rows / seconds),
                    "mib_per_second": round(size / 2**20 / seconds, 1),
                    "client_cpu_seconds": round(cpu_seconds, 2),
                    "phases_seconds": {
                        "parse_and_check": round(parse_seconds, 2),
                        "content_digest": round(digest_seconds, 2),
                        "copy_ledger_commit_and_rest": round(seconds - parse_seconds - digest_seconds, 2),
                    },
                }
            )
        assert SuiteVersion.objects.filter(example_count=rows).count() == TRIALS
        median = sorted(trials, key=lambda t: t["seconds"])[len(trials) // 2]

        queued = []
        original = suite_imports._enqueue_import
        suite_imports._enqueue_import = queued.append  # the bench plays the worker (eager tasks would run it inline)
        try:
            started = time.perf_counter()
            with path.open("rb") as handle:
                job = suite_imports.suite_import_request(
                    actor=engineer,
                    chunks=iter(lambda: handle.read(64 * 1024), b""),
                    file_name=path.name,
                    suite_name="bench upload",
                    fmt="csv",
                    mapping=None,
                    default_slice="routine",
                    **labels,
                )
            request_seconds = time.perf_counter() - started
        finally:
            suite_imports._enqueue_import = original
        started = time.perf_counter()
        suite_imports.suite_import_execute(import_id=job.pk)
        worker_seconds = time.perf_counter() - started
        job = SuiteImport.objects.get(pk=job.pk)
        assert job.status == "succeeded" and job.rows_done == rows, (job.status, job.error)

        value = median["rows_per_second"]
        return {
            "file": {
                "bytes": size,
                "mib": round(size / 2**20, 1),
                "rows": rows,
                "generate_seconds": round(generate_seconds, 1),
            },
            "import_suite": {**median, "trials": [t["seconds"] for t in trials]},
            "upload": {
                "request_seconds": round(request_seconds, 2),
                "worker_seconds": round(worker_seconds, 2),
                "worker_rows_per_second": round(rows / worker_seconds),
            },
            "targets": {
                f"import_suite >= {TARGET_ROWS_PER_SECOND:,} rows/s": {
                    "met": value >= TARGET_ROWS_PER_SECOND,
                    "value": f"{value:,} rows/s",
                }
            },
        }
    finally:
        connections.close_all()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
