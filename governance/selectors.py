from django.db.models import QuerySet

from accounts.models import Role
from governance.models import Escalation, Release


def releases_visible_to(user) -> QuerySet[Release]:
    qs = Release.objects.select_related("experiment", "experiment__owner", "candidate", "policy", "suite_version")
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    if user.role == Role.ENGINEER:
        return qs.filter(experiment__owner=user)
    return qs.none()  # regulators: object-level grants arrive with the exports work


def escalations_visible_to(user) -> QuerySet[Escalation]:
    return Escalation.objects.filter(release__in=releases_visible_to(user)).select_related("release").order_by(
        "status", "deadline")
