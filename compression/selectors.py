import datetime as dt

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from accounts.models import Role
from compression.models import CompressionRun, Experiment, ModelArtifact, RunStatus


def experiments_visible_to(user) -> QuerySet[Experiment]:
    qs = Experiment.objects.select_related("owner", "base_artifact")
    if user.role == Role.ENGINEER:
        return qs.filter(owner=user)
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    return qs.none()


def runs_visible_to(user) -> QuerySet[CompressionRun]:
    return CompressionRun.objects.select_related("experiment", "output_artifact").filter(
        experiment__in=experiments_visible_to(user)
    )


def artifacts_visible_to(user) -> QuerySet[ModelArtifact]:
    """Officers and admins see every artifact. An engineer sees the artifacts they registered (first or
    again) and those their experiments reach: each experiment's base and its runs' outputs. Regulators
    and reviewers see none through the API (a regulator gets the release and its signed export)."""
    qs = ModelArtifact.objects.select_related("parent")
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    if user.role == Role.ENGINEER:
        experiments = Experiment.objects.filter(owner=user)
        reachable = (
            Q(created_by=user)
            | Q(pk__in=ModelArtifact.registrants.through.objects.filter(user=user).values("modelartifact_id"))
            | Q(pk__in=experiments.values("base_artifact_id"))
            | Q(
                pk__in=CompressionRun.objects.filter(experiment__in=experiments, output_artifact__isnull=False).values(
                    "output_artifact_id"
                )
            )
        )
        return qs.filter(reachable)
    return qs.none()


def job_lease() -> dt.timedelta:
    """How long a running job's worker may stay silent before the job counts as orphaned."""
    return dt.timedelta(seconds=settings.SAFESHRINK["RUN_LEASE_SECONDS"])


def jobs_orphaned(model: type[Model]) -> list[int]:
    """Ids of running jobs (compression or evaluation runs) whose worker stopped renewing the lease."""
    cutoff = timezone.now() - job_lease()
    return list(model.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True))
