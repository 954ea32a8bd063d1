"""Releases written straight to the database (no model training, no evaluation): two artifacts, a suite, two
evaluation runs, a comparison and its flips, for tests of blind-review settings and sampling and of regulators'
pages. `twin_release` makes another release of the same baseline and candidate artifacts."""

import hashlib

from compression.models import CompressionRun, ModelArtifact, RunStatus
from compression.services.experiments import experiment_create
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, Flip, FlipDirection
from evaluations.services.suites import ExampleRow, suite_version_import
from governance.models import Release, ReleaseStatus

LABELS = ["normal", "offensive"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _artifact(engineer, name: str, parent=None) -> ModelArtifact:
    return ModelArtifact.objects.create(
        name=name,
        digest=_digest(name),
        format="hf-dir",
        size_bytes=10,
        parent=parent,
        manifest=[{"path": "config.json", "sha256": _digest(name + "/config"), "size": 10}],
        labels=LABELS,
        created_by=engineer,
    )


def comparison_with_flips(base, candidate, suite_version, examples, *, config: str = "a") -> Comparison:
    """A finished comparison of the two artifacts' evaluation runs under `config` (no stability pass: every
    flip may be sampled) that flipped every example given, each to unsafe."""
    runs = [
        EvaluationRun.objects.get_or_create(
            artifact=artifact,
            suite_version=suite_version,
            config_digest=_digest(config),
            defaults={"config": {"name": config}, "status": RunStatus.SUCCEEDED},
        )[0]
        for artifact in (base, candidate)
    ]
    comparison = Comparison.objects.create(
        baseline_run=runs[0],
        candidate_run=runs[1],
        status=ComparisonStatus.DONE,
        results={"groups": {}, "stability": None},
        flip_count=len(examples),
    )
    Flip.objects.bulk_create(
        Flip(
            comparison=comparison,
            example=example,
            baseline_prob=0.3,
            candidate_prob=0.7,
            direction=FlipDirection.TO_UNSAFE,
            candidate_correct=example.is_unsafe,
        )
        for example in examples
    )
    return comparison


def light_release(
    *, engineer, policy, flips: int = 12, status: str = ReleaseStatus.IN_REVIEW, name: str = "light"
) -> Release:
    """An amber release in review (by default) whose comparison flipped `flips` examples; no review tasks yet.
    `name` tells apart the artifacts, experiment and suite of several such releases in one test."""
    base = _artifact(engineer, f"{name} base")
    candidate = _artifact(engineer, f"{name} candidate", parent=base)
    experiment = experiment_create(
        actor=engineer, name=name, base_artifact_id=base.pk, risk_tier="medium", unsafe_labels=["offensive"]
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
            text=f"example text {i}",
            label="offensive" if i % 2 else "normal",
            slice="routine",
            external_id=str(i),
            line=i + 1,
        )
        for i in range(flips + 4)
    ]
    version = suite_version_import(
        actor=engineer, suite_name=f"{name} suite", rows=rows, unsafe_labels=["offensive"], safe_labels=["normal"]
    )
    examples = list(version.examples.order_by("position")[:flips])
    comparison = comparison_with_flips(base, candidate, version, examples)
    return Release.objects.create(
        experiment=experiment,
        compression_run=run,
        candidate=candidate,
        candidate_digest=candidate.digest,
        suite_version=version,
        policy=policy,
        comparison=comparison,
        baseline_evaluation=comparison.baseline_run,
        candidate_evaluation=comparison.candidate_run,
        status=status,
        gate_zone="amber",
        created_by=engineer,
    )


def twin_release(release: Release, *, comparison: Comparison | None = None, policy=None) -> Release:
    """Another release in review of the same baseline and candidate artifacts (by default the same comparison,
    so the very same flips, as when an identical release is proposed again)."""
    comparison = comparison or release.comparison
    return Release.objects.create(
        experiment=release.experiment,
        compression_run=release.compression_run,
        candidate=release.candidate,
        candidate_digest=release.candidate_digest,
        suite_version=release.suite_version,
        policy=policy or release.policy,
        comparison=comparison,
        baseline_evaluation=comparison.baseline_run,
        candidate_evaluation=comparison.candidate_run,
        status=ReleaseStatus.IN_REVIEW,
        gate_zone="amber",
        created_by=release.created_by,
    )
