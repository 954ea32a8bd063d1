import datetime as dt

from django.conf import settings
from django.db import connection
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


def inventory_visible_to(user) -> bool:
    """Whether the user's role reads experiments, runs and artifacts at all: the compression API's readers
    (engineers, officers) and admins. For other roles the scopes above are empty and the API answers 403."""
    return user.role in (Role.ENGINEER, Role.OFFICER, Role.ADMIN)


def runs_using_artifact(user, artifact: ModelArtifact) -> QuerySet[CompressionRun]:
    """The visible compression runs that read the artifact: as their experiment's base, as a behavioural_distill
    run's refusal judge (``parameters.judge``) or as one of its extra teachers (``parameters.extra_teachers``)."""
    uses = Q(experiment__base_artifact=artifact) | Q(parameters__judge=artifact.pk)
    runs = runs_visible_to(user)
    if connection.features.supports_json_field_contains:
        uses |= Q(parameters__extra_teachers__contains=[artifact.pk])
    else:  # SQLite: no JSON containment; only runs naming extra teachers are read, and checked here
        teaching = runs.filter(parameters__has_key="extra_teachers").values_list("pk", "parameters")
        uses |= Q(pk__in=[pk for pk, p in teaching if artifact.pk in (p.get("extra_teachers") or [])])
    return runs.filter(uses)


def run_input_artifacts(user, run: CompressionRun) -> list[dict]:
    """What the run read, as {role, id, artifact}: the experiment's base, and a behavioural_distill run's extra
    teachers and refusal judge (its parameters name them by id). `artifact` is None for one outside the user's
    scope: only its id is shown, as the run's parameters show it."""
    parameters = run.parameters or {}
    wanted = [("base model", run.experiment.base_artifact_id)]
    wanted += [("teacher", pk) for pk in parameters.get("extra_teachers") or [] if isinstance(pk, int)]
    if isinstance(parameters.get("judge"), int):
        wanted.append(("refusal judge", parameters["judge"]))
    found = artifacts_visible_to(user).in_bulk([pk for _, pk in wanted])
    return [{"role": role, "id": pk, "artifact": found.get(pk)} for role, pk in wanted]


def job_lease() -> dt.timedelta:
    """How long a running job's worker may stay silent before the job counts as orphaned."""
    return dt.timedelta(seconds=settings.SAFESHRINK["RUN_LEASE_SECONDS"])


def jobs_orphaned(model: type[Model]) -> list[int]:
    """Ids of running jobs (compression or evaluation runs) whose worker stopped renewing the lease."""
    cutoff = timezone.now() - job_lease()
    return list(model.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True))
