"""Builders for records that need a real pipeline behind them."""

from compression.services.experiments import experiment_create
from compression.services.runs import compression_run_request
from governance.models import Release, ReleaseStatus
from governance.services.releases import release_create, release_start_evaluation


def evaluated_release(*, engineer, base_artifact, suite, policy, risk_tier="medium", force_zone=None) -> Release:
    """A release that went through compression, evaluation and gating (Celery runs eagerly in tests).

    `force_zone` overwrites the gate zone after the fact and puts the release straight into
    awaiting-decision, for tests about decisions rather than evidence.
    """
    experiment = experiment_create(actor=engineer, name="exp", base_artifact_id=base_artifact.pk, risk_tier=risk_tier,
                                   unsafe_labels=["hatespeech", "offensive"])
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    release = release_create(actor=engineer, compression_run_id=run.pk, suite_version_id=suite.pk, policy_id=policy.pk)
    release_start_evaluation(actor=engineer, release_id=release.pk)
    release.refresh_from_db()
    if force_zone:
        Release.objects.filter(pk=release.pk).update(gate_zone=force_zone, status=ReleaseStatus.AWAITING_DECISION)
        release.refresh_from_db()
    return release
