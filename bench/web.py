"""Server time and page weight of the heaviest web pages, with Django's test client (issue 16).

Seeds a dedicated database (never the configured one: a fresh PostgreSQL database `safeshrink_bench_web` on the
server DATABASE_URL names, dropped afterwards, and a SQLite file in a temporary folder) with:

- the demo users, taxonomy, policy, suite and tiny base model (`load_demo --model tiny`);
- two releases through the real pipeline (tests/factories.py `evaluated_release`: compression, both evaluations,
  comparison, gate), one green and one amber (blind reviews);
- one release with FLIPS flips: a suite version of EXAMPLES examples imported through `suite_version_import`, a
  baseline and a candidate evaluation whose stored predictions disagree on FLIPS examples (Parquet files; nothing is
  inferred), then `release_complete_evaluation` (the real comparison with its bootstrap, flip set and paired
  runtime; the gate; its escalation);
- clones of the green release (experiment, compression run, candidate artifact, release: bulk_create, statuses
  spread over every state, some open escalations) up to RELEASES releases.

Each page in PAGES is requested WARMUP times, then REQUESTS times timed (server time: from the test client's
request to the full response, in this process, no network), then once more inside CaptureQueriesContext (queries,
their summed database time, the slowest ones and the statements repeated with only their literals changed, the
mark of an N+1). Page weight: bytes of the HTML, of its inline <svg> elements, and of the HTML gzipped. A page that
answers 404 (not built yet) is listed under `skipped`. The parent process runs one child per backend: PostgreSQL
(when DATABASE_URL names it; its figures are the ones judged) and SQLite.
"""

import copy
import datetime as dt
import gzip
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "safeshrink_bench_web"
RELEASES = 100
EXAMPLES = 12_000
FLIPS = 10_000
WARMUP = 3
REQUESTS = int(os.environ.get("SAFESHRINK_BENCH_WEB_REQUESTS", "30"))
TARGET_MS = 200.0
MARKER = "@@WEB@@"

FILTER = "slice=adversarial&direction=to_safe&stable=true"
# Data-driven: (label, path template, role). {heavy} is the release with FLIPS flips, {green} a real release.
# New pages are listed here; a 404 is reported as skipped, so the list can run ahead of the views.
PAGES = [
    ("dashboard", "/", "officer"),
    ("dashboard, page 4", "/?page=4", "officer"),
    ("release with 10,000 flips", "/releases/{heavy}/", "officer"),
    ("release with 10,000 flips, filtered", f"/releases/{{heavy}}/?{FILTER}", "officer"),
    ("release with 10,000 flips, last flips page", "/releases/{heavy}/?page=500", "officer"),
    ("release with 10,000 flips, as a regulator (each read is a ledger event)", "/releases/{heavy}/", "regulator"),
    ("release (pipeline, few flips)", "/releases/{green}/", "officer"),
    ("review queue", "/reviews/", "reviewer"),
    ("release progress fragment (polled)", "/releases/{heavy}/progress/", "officer"),
    ("running now fragment (polled)", "/running/", "officer"),
    ("flips of the 10,000-flip release", "/releases/{heavy}/flips/", "officer"),
    ("flips, filtered", f"/releases/{{heavy}}/flips/?{FILTER}", "officer"),
    ("runs", "/runs/", "officer"),
    ("artifacts", "/artifacts/", "officer"),
    ("experiments", "/experiments/", "officer"),
    ("experiment of the 10,000-flip release", "/experiments/{experiment}/", "officer"),
    ("artifact: the base model (lineage of every run)", "/artifacts/{base}/", "officer"),
    ("external runs", "/external-runs/", "officer"),
]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- parent


def run() -> dict:
    configured = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    backends = ["postgresql", "sqlite"] if configured.startswith("postgres") else ["sqlite"]
    cache = Path(tempfile.mkdtemp(prefix="safeshrink-bench-web-models-"))
    figures: dict = {
        "releases": RELEASES,
        "flips_in_heavy_release": FLIPS,
        "examples_in_heavy_suite": EXAMPLES,
        "requests_per_page": REQUESTS,
        "warmup_requests": WARMUP,
        "target_ms": TARGET_MS,
        "backends": {},
        "targets": {},
    }
    for backend in backends:
        result = subprocess.run(
            [sys.executable, "-m", "bench.web", "--backend", backend, "--model-cache", str(cache)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        marker = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
        if result.returncode != 0 or not marker:
            raise RuntimeError(f"bench/web.py ({backend}) failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        sys.stderr.write(result.stderr[-4000:])
        measured = json.loads(marker[-1][len(MARKER) :])
        figures["backends"][backend] = measured
        heaviest = measured["heaviest_page"]
        figures["targets"][f"heaviest page median <= {TARGET_MS:.0f} ms ({backend})"] = {
            "met": heaviest["median_ms"] <= TARGET_MS,
            "value": f"{heaviest['median_ms']} ms ({heaviest['page']})",
        }
    return figures


# ----------------------------------------------------------------------------------------------- child


def _environment(backend: str, tmp: Path, model_cache: Path) -> tuple[str | None, str | None]:
    """Point Django at a database of its own and stores in `tmp`; (PostgreSQL server, database) to drop later."""
    server = None
    if backend == "postgresql":
        from bench.databases import database_recreate, postgres_server

        server = postgres_server("web")
        url = database_recreate(server, DB_NAME)
    else:
        url = f"sqlite:///{tmp / 'db.sqlite3'}"
    keys = tmp / "keys"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": url,
            "SAFESHRINK_ARTIFACT_ROOT": str(tmp / "artifacts"),
            "SAFESHRINK_EXPORT_ROOT": str(tmp / "exports"),
            "SAFESHRINK_UPLOAD_ROOT": str(tmp / "uploads"),
            "SAFESHRINK_SYSTEM_KEY": str(keys / "system.key.pem"),
            "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(keys / "system.pub.pem"),
            "SAFESHRINK_SIGNING_KEY": str(keys / "ca" / "signer.key.pem"),
            "SAFESHRINK_SIGNING_CERT": str(keys / "ca" / "signer.pem"),
            "SAFESHRINK_SIGNING_CHAIN": str(keys / "ca" / "ca.pem"),
            "SAFESHRINK_SIGNING_CRLS": str(keys / "ca" / "crl.pem"),
            "SAFESHRINK_TRUST_ROOTS": str(keys / "ca" / "ca.pem"),
            "SAFESHRINK_MODEL_CACHE": str(model_cache),
            "DJANGO_LOG_LEVEL": "WARNING",
        }
    )
    return server, DB_NAME if server else None


def _heavy_suite(engineer):
    """EXAMPLES HateXplain posts (train, cycled with unique ids) spread over the three slices, imported."""
    from django.conf import settings

    from evaluations.datasets import SAFE_LABELS, UNSAFE_LABELS, hatexplain_rows
    from evaluations.services.suites import ExampleRow, suite_version_import

    source = hatexplain_rows(Path(settings.SAFESHRINK["DATA_DIR"]), split="train")
    slices = ["routine"] * 7 + ["edge"] * 2 + ["adversarial"]
    rows = []
    for i in range(EXAMPLES):
        row = source[i % len(source)]
        rows.append(
            ExampleRow(
                **{**row, "external_id": f"web-{i}", "line": i + 2, "slice": slices[i % len(slices)], "tags": ()}
            )
        )
    return suite_version_import(
        actor=engineer, suite_name="web bench suite", rows=rows, unsafe_labels=UNSAFE_LABELS, safe_labels=SAFE_LABELS
    )


COLUMNS = (  # of a made-up prediction (evaluations.services.prediction_files.PREDICTIONS_SCHEMA)
    "position",
    "example_id",
    "unsafe_prob",
    "probs",
    "predicted_label",
    "decision_unsafe",
    "recomposed_unsafe_prob",
    "stable",
)


def _heavy_release(template, version):
    """A release of `template`'s candidate on `version` whose two stored evaluations disagree on FLIPS examples;
    the comparison, flip set, gate and escalation come from release_complete_evaluation."""
    from compression.models import RunStatus
    from evaluations.models import Example
    from evaluations.services.prediction_files import predictions_file_link, predictions_table
    from governance.models import ReleaseStatus
    from governance.services.releases import release_complete_evaluation

    rng = random.Random(0)
    runs = []
    for source in (template.baseline_evaluation, template.candidate_evaluation):
        clone = copy.copy(source)
        clone.pk = clone.id = None
        clone._state.adding = True
        clone.suite_version = version
        clone.status = RunStatus.SUCCEEDED
        clone.chunk_files, clone.predictions_digest = {}, ""  # its own predictions file is linked below
        clone.save()
        runs.append(clone)
    baseline, candidate = runs
    labels = baseline.artifact.labels
    unsafe_labels = set(version.unsafe_labels)
    examples = list(
        Example.objects.filter(suite_version=version).order_by("position").values_list("pk", "is_unsafe", "position")
    )
    flipped = set(rng.sample(range(len(examples)), FLIPS))
    columns = {run.pk: {key: [] for key in COLUMNS} for run in runs}

    def prediction(run, example_id, position: int, unsafe: bool) -> None:
        p = min(0.97, max(0.03, (0.8 if unsafe else 0.2) + rng.uniform(-0.15, 0.15)))
        label = next(x for x in labels if (x in unsafe_labels) == unsafe)
        stable = rng.random() > 0.1
        rest = [x for x in labels if x != label]
        probs = {label: p if unsafe else 1 - p, **{x: (1 - (p if unsafe else 1 - p)) / len(rest) for x in rest}}
        values = (position, example_id, p, [probs[x] for x in labels], label, unsafe, p if stable else 1 - p, stable)
        for key, value in zip(COLUMNS, values, strict=True):
            columns[run.pk][key].append(value)

    for index, (example_id, truth, position) in enumerate(examples):
        prediction(baseline, example_id, position, truth)
        prediction(candidate, example_id, position, (not truth) if index in flipped else truth)
    for run in runs:
        predictions_file_link(run, predictions_table(columns[run.pk]))

    release = copy.copy(template)
    release.pk = release.id = None
    release._state.adding = True
    release.suite_version = version
    release.status = ReleaseStatus.EVALUATING
    release.baseline_evaluation, release.candidate_evaluation = baseline, candidate
    release.comparison, release.gate, release.gate_zone, release.version = None, None, "", 1
    release.save()
    return release_complete_evaluation(release_id=release.pk)


def _clone(obj, **changes):
    clone = copy.copy(obj)
    clone.pk = clone.id = None
    clone._state.adding = True
    for name, value in changes.items():
        setattr(clone, name, value)
    return clone


def _dashboard_releases(template, count: int) -> None:
    """`count` more releases cloned from `template`, each with its own experiment, run and candidate artifact."""
    from django.utils import timezone

    from compression.models import CompressionRun, Experiment, ModelArtifact
    from governance.models import Escalation, EscalationTrigger, Release, ReleaseStatus

    run = template.compression_run
    experiments = Experiment.objects.bulk_create(
        [_clone(template.experiment, name=f"web bench experiment {i}") for i in range(count)]
    )
    artifacts = ModelArtifact.objects.bulk_create(
        [_clone(template.candidate, name=f"web bench candidate {i}", digest=_digest(f"web-{i}")) for i in range(count)]
    )
    runs = CompressionRun.objects.bulk_create(
        [_clone(run, experiment=e, output_artifact=a) for e, a in zip(experiments, artifacts, strict=True)]
    )
    states = ReleaseStatus.values
    releases = Release.objects.bulk_create(
        [
            _clone(
                template,
                experiment=e,
                compression_run=r,
                candidate=a,
                candidate_digest=a.digest,
                status=states[i % len(states)],
            )
            for i, (e, r, a) in enumerate(zip(experiments, runs, artifacts, strict=True))
        ]
    )
    now = timezone.now()
    Escalation.objects.bulk_create(
        [
            Escalation(
                release=release,
                trigger=EscalationTrigger.RED_ZONE,
                summary=f"Red zone: bench escalation {i}.",
                level=1 + i % 3,
                owner_role="officer",
                deadline=now + dt.timedelta(hours=i - 10),
            )
            for i, release in enumerate(releases[:30])
        ]
    )


def _seed() -> dict:
    from django.core.management import call_command

    from accounts.models import User
    from compression.models import ModelArtifact
    from evaluations.models import SuiteVersion
    from exports.services.exports import regulator_grant
    from governance.models import Release, ThresholdPolicy
    from tests.factories import evaluated_release

    call_command("migrate", verbosity=0)
    call_command("setup_signing", verbosity=0)
    call_command("load_demo", routine=120, adversarial=40, model="tiny", verbosity=0)
    engineer = User.objects.get(username="engineer")
    base = ModelArtifact.objects.get(parent__isnull=True, name="tiny-hatexplain-bert")
    suite = SuiteVersion.objects.order_by("-pk").first()
    policy = ThresholdPolicy.objects.order_by("-pk").first()
    timings = {}
    started = time.perf_counter()
    green = evaluated_release(engineer=engineer, base_artifact=base, suite=suite, policy=policy, force_zone="green")
    amber = evaluated_release(engineer=engineer, base_artifact=base, suite=suite, policy=policy, force_zone="amber")
    timings["pipeline_releases_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    heavy = _heavy_release(green, _heavy_suite(engineer))
    timings["heavy_release_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    _dashboard_releases(green, RELEASES - Release.objects.count())
    timings["clones_s"] = round(time.perf_counter() - started, 1)
    officer, regulator = User.objects.get(username="officer"), User.objects.get(username="regulator")
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=heavy.pk, days=30, reason="web bench")
    heavy.refresh_from_db()
    return {
        "green": green.pk,
        "amber": amber.pk,
        "heavy": heavy.pk,
        "experiment": heavy.experiment_id,
        "base": base.pk,
        "seed_seconds": timings,
        "heavy_release": {
            "status": heavy.status,
            "gate_zone": heavy.gate_zone,
            "flips": heavy.comparison.flips.count(),
            "examples": heavy.suite_version.example_count,
        },
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


SVG = re.compile(rb"<svg\b.*?</svg>", re.S)
LITERALS = re.compile(r"'[^']*'|\b\d+\b")


def _gist(sql: str) -> str:
    """A statement in a few words: its verb (COUNT for a count) and the table it reads or writes."""
    table = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
    verb = "COUNT" if "COUNT(" in sql[:40] else sql.split(None, 1)[0]
    return f"{verb} {table.group(1) if table else sql[:60]}"


def _queries(captured) -> dict:
    """Count, summed database time, the slowest statement and those repeated with other literals (an N+1)."""
    shapes: dict[str, int] = {}
    for query in captured:
        shape = LITERALS.sub("?", query["sql"])
        shapes[shape] = shapes.get(shape, 0) + 1
    slowest = max(captured, key=lambda q: float(q["time"]))
    repeated = sorted(((n, s) for s, n in shapes.items() if n > 1), reverse=True)
    return {
        "count": len(captured),
        "db_ms": round(1000 * sum(float(q["time"]) for q in captured), 1),
        "slowest_ms": round(1000 * float(slowest["time"]), 1),
        "slowest": _gist(slowest["sql"]),
        "repeated": ", ".join(f"{n}x {_gist(s)}" for n, s in repeated[:3]) or "none",
    }


def _measure(client, path: str) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = client.get(path)
    if first.status_code == 404:
        return {"skipped": "404: no such page yet"}
    if first.status_code != 200:
        raise RuntimeError(f"{path} answered {first.status_code}")
    for _ in range(WARMUP - 1):
        client.get(path)
    times, cpu = [], []
    for _ in range(REQUESTS):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        times.append(1000 * (time.perf_counter() - started))
        cpu.append(1000 * (time.process_time() - started_cpu))
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as captured:
        html = client.get(path).content
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(_percentile(times, 0.95), 1),
        # This process's CPU time (view, ORM, template; not the database server's): steadier than the wall
        # time when other processes share the CPU.
        "median_cpu_ms": round(statistics.median(cpu), 1),
        "html_bytes": len(html),
        "html_gzip_bytes": len(gzip.compress(html, 6)),
        "svg_bytes": sum(len(m) for m in SVG.findall(html)),
        "svg_elements": len(SVG.findall(html)),
        "queries": _queries(captured.captured_queries),
    }


def _child(backend: str, model_cache: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"safeshrink-bench-web-{backend}-"))
    server, database = _environment(backend, tmp, model_cache)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, connections
    from django.test import Client

    try:
        started = time.perf_counter()
        ids = _seed()
        seed_seconds = round(time.perf_counter() - started, 1)
        from accounts.models import User

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        load_before = round(os.getloadavg()[0], 2)
        clients = {}
        pages, skipped = {}, {}
        for label, template, role in PAGES:
            if role not in clients:
                clients[role] = Client()
                clients[role].force_login(User.objects.filter(role=role).earliest("pk"))
            path = template.format(**{k: v for k, v in ids.items() if isinstance(v, int)})
            figures = _measure(clients[role], path)
            if "skipped" in figures:
                skipped[label] = f"{path}: {figures['skipped']}"
            else:
                pages[label] = {"path": path, "role": role, **figures}
        heaviest = max(pages, key=lambda k: pages[k]["median_ms"])
        return {
            "database": connection.vendor,
            # Other processes on the machine take CPU from the measurement: the load before and after it.
            "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
            "seed_seconds": seed_seconds,
            "seed_parts": ids["seed_seconds"],
            "heavy_release": ids["heavy_release"],
            "pages": pages,
            "skipped": skipped,
            "heaviest_page": {"page": heaviest, "median_ms": pages[heaviest]["median_ms"]},
        }
    finally:
        connections.close_all()
        if server and database:
            from bench.databases import database_drop

            database_drop(server, database)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["postgresql", "sqlite"])
    parser.add_argument("--model-cache", type=Path)
    args = parser.parse_args()
    if args.backend:
        print(MARKER + json.dumps(_child(args.backend, args.model_cache)), flush=True)
    else:
        print(json.dumps(run(), indent=2))
