"""Dossier generation plus signing, for a release with 5 candidates (5 releases of one experiment,
so the dossier's "alternatives considered" table has 5 rows), and its charts.

Uses the tiny demo model and suite so that the evaluation set-up stays quick; the figure measured
is `export_build` alone: collect the bundle, render the PDF (WeasyPrint), sign it (PAdES, pyHanko),
sign the bundle (DSSE), store both. Runs on a fresh SQLite database in a temporary folder.
"""

import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = 5
REPEATS = 3


def _pages(pdf: bytes) -> int:
    import subprocess

    info = subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True, check=True, text=False).stdout.decode()
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="safeshrink-bench-exports-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "SAFESHRINK_ARTIFACT_ROOT": str(tmp / "artifacts"),
            "SAFESHRINK_EXPORT_ROOT": str(tmp / "exports"),
            "SAFESHRINK_SYSTEM_KEY": str(tmp / "keys" / "system.key.pem"),
            "SAFESHRINK_SYSTEM_PUBLIC_KEY": str(tmp / "keys" / "system.pub.pem"),
            "SAFESHRINK_SIGNING_KEY": str(tmp / "keys" / "ca" / "signer.key.pem"),
            "SAFESHRINK_SIGNING_CERT": str(tmp / "keys" / "ca" / "signer.pem"),
            "SAFESHRINK_SIGNING_CHAIN": str(tmp / "keys" / "ca" / "ca.pem"),
            "SAFESHRINK_SIGNING_CRLS": str(tmp / "keys" / "ca" / "crl.pem"),
            "SAFESHRINK_TRUST_ROOTS": str(tmp / "keys" / "ca" / "ca.pem"),
            "SAFESHRINK_MODEL_CACHE": str(tmp / "models"),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("setup_signing", verbosity=0)
    call_command("load_demo", routine=120, adversarial=40, model="tiny", verbosity=0)

    from accounts.models import User
    from compression.models import ModelArtifact
    from compression.services.experiments import experiment_create
    from compression.services.runs import compression_run_request
    from evaluations.models import SuiteVersion
    from exports.models import Export
    from exports.services.exports import export_build, export_dir, export_verify
    from governance.models import Release, ThresholdPolicy
    from governance.services.releases import release_create, release_start_evaluation
    from ledger.services import ledger_append

    engineer, officer = User.objects.get(username="engineer"), User.objects.get(username="officer")
    base = ModelArtifact.objects.get(parent__isnull=True)
    suite = SuiteVersion.objects.order_by("-pk").first()
    policy = ThresholdPolicy.objects.order_by("-pk").first()
    experiment = experiment_create(
        actor=engineer, name="five candidates", base_artifact_id=base.pk, unsafe_labels=["hatespeech", "offensive"]
    )
    releases = []
    for seed, params in enumerate([{}, {"quantize_embeddings": True}, {}, {"quantize_embeddings": True}, {}]):
        run = compression_run_request(
            actor=engineer, experiment_id=experiment.pk, method="dynamic_int8", parameters=params, seed=seed
        )
        release = release_create(
            actor=engineer, compression_run_id=run.pk, suite_version_id=suite.pk, policy_id=policy.pk
        )
        release_start_evaluation(actor=engineer, release_id=release.pk)
        releases.append(Release.objects.get(pk=release.pk))
    target = releases[-1]
    timings, pages, sizes = [], [], []
    from django.db import transaction

    for _ in range(REPEATS):
        with transaction.atomic():
            export = Export.objects.create(release=target, requested_by=officer)
            ledger_append(
                actor=officer,
                action="export.requested",
                object_type="export",
                object_id=export.pk,
                payload={"release": target.pk},
            )
        started = time.perf_counter()
        export_build(export_id=export.pk)
        timings.append(time.perf_counter() - started)
        export.refresh_from_db()
        assert export.status == "succeeded", export.failure_reason
        pdf = (export_dir(export) / "dossier.pdf").read_bytes()
        assert export_verify(pdf).valid
        sizes.append(len(pdf))
        pages.append(_pages(pdf))
    digests = set(Export.objects.filter(release=target).values_list("bundle_digest", flat=True))
    median = statistics.median(timings)
    return {
        "candidates_in_dossier": CANDIDATES,
        "repeats": REPEATS,
        "seconds": [round(t, 2) for t in timings],
        "median_seconds": round(median, 2),
        "pages": pages[0],
        "pdf_bytes": sizes[0],
        "same_bundle_digest_every_time": len(digests) == 1,
        "targets": {"dossier_with_5_candidates_at_most_5s": {"met": median <= 5.0, "value": round(median, 2)}},
    }
