"""A light world for API tests: one object of each listed kind, written straight to the database (no model
training, no evaluation), so that list endpoints have rows and detail endpoints have something to find."""

import datetime as dt
import hashlib

import pytest
from django.utils import timezone


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def light_world(db, make_user, make_officer, demo_policy):
    from compression.models import CompressionRun, ModelArtifact, RunStatus
    from compression.services.experiments import experiment_create
    from evaluations.services.suites import ExampleRow, suite_version_import
    from governance.models import Escalation, EscalationTrigger, RegulatorGrant, Release, ReleaseStatus

    engineer = make_user("eng", "engineer")
    officer = make_officer("off")
    regulator = make_user("reg", "regulator")
    reviewer = make_user("revw", "reviewer")
    admin = make_user("adm", "admin")
    base = ModelArtifact.objects.create(
        name="base",
        digest=_digest("base"),
        format="hf-dir",
        size_bytes=10,
        manifest=[{"path": "config.json", "sha256": _digest("c"), "size": 10}],
        labels=["normal", "offensive"],
        created_by=engineer,
    )
    candidate = ModelArtifact.objects.create(
        name="candidate",
        digest=_digest("candidate"),
        format="torch-quantized",
        size_bytes=5,
        parent=base,
        manifest=[],
        labels=["normal", "offensive"],
        created_by=engineer,
    )
    experiment = experiment_create(
        actor=engineer, name="exp", base_artifact_id=base.pk, risk_tier="medium", unsafe_labels=["offensive"]
    )
    run = CompressionRun.objects.create(
        experiment=experiment,
        method="dynamic_int8",
        requested_by=engineer,
        status=RunStatus.SUCCEEDED,
        output_artifact=candidate,
    )
    rows = [
        ExampleRow(
            text=f"example {i}",
            label="offensive" if i % 2 else "normal",
            slice="routine",
            external_id=str(i),
            line=i + 1,
        )
        for i in range(4)
    ]
    version = suite_version_import(
        actor=engineer, suite_name="light suite", rows=rows, unsafe_labels=["offensive"], safe_labels=["normal"]
    )
    release = Release.objects.create(
        experiment=experiment,
        compression_run=run,
        candidate=candidate,
        candidate_digest=candidate.digest,
        suite_version=version,
        policy=demo_policy,
        status=ReleaseStatus.AWAITING_DECISION,
        gate_zone="amber",
        created_by=engineer,
    )
    Escalation.objects.create(
        release=release,
        trigger=EscalationTrigger.RED_ZONE,
        summary="s",
        level=1,
        owner_role="officer",
        deadline=timezone.now() + dt.timedelta(days=1),
    )
    RegulatorGrant.objects.create(
        regulator=regulator,
        release=release,
        granted_by=officer,
        reason="audit",
        valid_from=timezone.now() - dt.timedelta(days=1),
        valid_until=timezone.now() + dt.timedelta(days=30),
    )
    from tracking.services.runs import external_run_create, external_run_log

    external_run = external_run_create(actor=engineer, experiment_id=experiment.pk, method="GPTQ (elsewhere)")
    external_run_log(
        actor=engineer,
        run_id=external_run.pk,
        params=[{"key": "bits", "value": "4"}],
        metrics=[{"key": "loss", "value": 1}],
    )
    users = {"engineer": engineer, "officer": officer, "regulator": regulator, "reviewer": reviewer, "admin": admin}
    return {
        "users": users,
        "release": release,
        "run": run,
        "experiment": experiment,
        "suite_version": version,
        "artifact": base,
        "external_run": external_run,
    }
