"""Builders for records that need a real pipeline behind them."""

from compression.services.experiments import experiment_create
from compression.services.runs import compression_run_request
from governance.models import Release, ReleaseStatus
from governance.services.releases import release_create, release_start_evaluation


def evaluated_release(*, engineer, base_artifact, suite, policy, risk_tier="medium", force_zone=None) -> Release:
    """A release that went through compression, evaluation and gating (Celery runs eagerly in tests).

    `force_zone` overwrites the gate zone after the fact, for tests about decisions and workflows rather than
    evidence (the tiny model's own gate depends on the CPU's int8 kernels): "green"/"red" put the release
    straight into awaiting-decision; "amber" puts it in review and opens the blind reviews, as an amber gate does.
    """
    experiment = experiment_create(
        actor=engineer,
        name="exp",
        base_artifact_id=base_artifact.pk,
        risk_tier=risk_tier,
        unsafe_labels=["hatespeech", "offensive"],
    )
    run = compression_run_request(actor=engineer, experiment_id=experiment.pk, method="dynamic_int8")
    release = release_create(actor=engineer, compression_run_id=run.pk, suite_version_id=suite.pk, policy_id=policy.pk)
    release_start_evaluation(actor=engineer, release_id=release.pk)
    release.refresh_from_db()
    if force_zone == "amber":
        from django.db import transaction

        from evaluations.models import Flip
        from governance.models import ReviewTask
        from governance.services.reviews import review_tasks_create

        with transaction.atomic():
            # Blind review samples stable flips only (governance.selectors.review_pool), and whether the tiny
            # int8 candidate's few flips hold when the batches are recomposed depends on the CPU's kernels:
            # for workflow tests they count as stable. (If the tiny model's own gate was amber and found no
            # stable flip, its "nothing to review" escalation stays open.)
            Flip.objects.filter(comparison=release.comparison, stable=False).update(stable=True)
            Release.objects.filter(pk=release.pk).update(gate_zone=force_zone, status=ReleaseStatus.IN_REVIEW)
            release.refresh_from_db()
            if not ReviewTask.objects.filter(release=release).exists():
                review_tasks_create(release=release)
    elif force_zone and force_zone != "amber":
        Release.objects.filter(pk=release.pk).update(gate_zone=force_zone, status=ReleaseStatus.AWAITING_DECISION)
        release.refresh_from_db()
    return release
