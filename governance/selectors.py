from django.db.models import QuerySet

from accounts.models import Role
from django.db.models import Q
from django.utils import timezone

from governance.models import Escalation, RegulatorGrant, Release


def releases_visible_to(user) -> QuerySet[Release]:
    qs = Release.objects.select_related("experiment", "experiment__owner", "candidate", "policy", "suite_version")
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    if user.role == Role.ENGINEER:
        return qs.filter(experiment__owner=user)
    if user.role == Role.REGULATOR:
        return qs.filter(pk__in=active_grants(user).values("release"))
    return qs.none()


def active_grants(user) -> QuerySet[RegulatorGrant]:
    now = timezone.now()
    return RegulatorGrant.objects.filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now), regulator=user,
                                         valid_from__lte=now, valid_until__gt=now)


def escalations_visible_to(user) -> QuerySet[Escalation]:
    return Escalation.objects.filter(release__in=releases_visible_to(user)).select_related("release").order_by(
        "status", "deadline")
