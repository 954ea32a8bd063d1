"""200 concurrent approve/halt attempts on one release, from threads, against PostgreSQL.

Exactly one attempt may change the release; every other must be refused (409 stale version or
invalid transition) and leave a ledger refusal. The release rows are created directly (no ML):
this measures the locking path of `release_decide`, not evaluation.

Needs PostgreSQL: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/...) names a server; the
benchmark creates and drops its own database `safeshrink_bench_approvals` there.
"""

import os
import threading
import time

from bench.databases import database_drop, database_recreate, postgres_server

ATTEMPTS = 200
# PostgreSQL allows 100 connections by default: 90 threads, each making its attempts in turn,
# all released at once by a barrier.
THREADS = 90
DB_NAME = "safeshrink_bench_approvals"


def _fixture():
    from accounts.models import User
    from compression.models import CompressionRun, Experiment, ModelArtifact, RunStatus
    from evaluations.models import Suite, SuiteVersion
    from governance.models import Release, ReleaseStatus, ThresholdPolicy, Zone
    from governance.services.monitoring import authority_grant

    engineer = User.objects.create_user("bench-engineer", role="engineer")
    base = ModelArtifact.objects.create(name="base", digest="a" * 64, format="hf-dir", size_bytes=1, manifest=[])
    candidate = ModelArtifact.objects.create(
        name="cand", digest="b" * 64, format="hf-dir", size_bytes=1, manifest=[], parent=base
    )
    experiment = Experiment.objects.create(
        name="bench", owner=engineer, risk_tier="medium", base_artifact=base, unsafe_labels=["unsafe"]
    )
    run = CompressionRun.objects.create(
        experiment=experiment,
        method="dynamic_int8",
        requested_by=engineer,
        status=RunStatus.SUCCEEDED,
        output_artifact=candidate,
    )
    suite = SuiteVersion.objects.create(
        suite=Suite.objects.create(name="bench"), number=1, digest="c" * 64, unsafe_labels=["unsafe"], example_count=0
    )
    policy = ThresholdPolicy.objects.create(name="bench", version=1)
    release = Release.objects.create(
        experiment=experiment,
        compression_run=run,
        candidate=candidate,
        candidate_digest=candidate.digest,
        suite_version=suite,
        policy=policy,
        created_by=engineer,
        status=ReleaseStatus.AWAITING_DECISION,
        gate_zone=Zone.GREEN,
    )
    officers = []
    for i in range(THREADS):
        officer = User.objects.create_user(f"bench-officer-{i}", role="officer")
        authority_grant(actor=None, user=officer, risk_tier="medium", level=1)
        officers.append(officer)
    return release, officers


def run() -> dict:
    server = postgres_server("approvals")
    url = database_recreate(server, DB_NAME)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from accounts.errors import Conflict
    from governance.models import Decision, Release
    from governance.services import releases as release_services
    from ledger.models import LedgerEvent
    from ledger.verification import ledger_verify

    try:
        call_command("migrate", verbosity=0)
        release, officers = _fixture()
        # The candidate files are not on disk here; the benchmark measures locking, not the store.
        release_services._candidate_intact = lambda _release: True
        version = release.version
        outcomes: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def worker(index: int) -> None:
            officer = officers[index]
            barrier.wait()
            for attempt in range(index, ATTEMPTS, THREADS):
                kind = "approve" if attempt % 2 else "halt"
                try:
                    release_services.release_decide(
                        actor=officer,
                        release_id=release.pk,
                        kind=kind,
                        rationale=f"attempt {attempt}",
                        expected_version=version,
                    )
                    result = f"ok:{kind}"
                except Conflict as exc:
                    result = f"refused:{exc.code}"
                with lock:
                    outcomes.append(result)
            connections.close_all()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        winners = [o for o in outcomes if o.startswith("ok")]
        final = Release.objects.get(pk=release.pk)
        refusals = LedgerEvent.objects.filter(action="access.denied").count()
        figures = {
            "attempts": len(outcomes),
            "threads": THREADS,
            "transitions": len(winners),
            "winner": winners[0] if winners else None,
            "refused": len(outcomes) - len(winners),
            "refusal_codes": sorted({o.split(":", 1)[1] for o in outcomes if o.startswith("refused")}),
            "final_status": final.status,
            "version_bumps": final.version - version,
            "decisions_recorded": Decision.objects.count(),
            "ledger_refusal_events": refusals,
            "ledger_verifies": ledger_verify().ok,
            "wall_seconds": round(elapsed, 3),
            "attempts_per_second": round(len(outcomes) / elapsed, 1),
        }
        figures["targets"] = {
            "exactly_one_transition": {
                "met": figures["transitions"] == 1
                and figures["version_bumps"] == 1
                and figures["decisions_recorded"] == 1
                and figures["refused"] == ATTEMPTS - 1
                and refusals == ATTEMPTS - 1
            }
        }
        return figures
    finally:
        connection.close()
        connections.close_all()
        database_drop(server, DB_NAME)
