from django.db.models import QuerySet

from accounts.models import Role
from compression.models import CompressionRun, Experiment, ModelArtifact


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
    if user.role in (Role.ENGINEER, Role.OFFICER, Role.ADMIN):
        return ModelArtifact.objects.select_related("parent")
    return ModelArtifact.objects.none()
