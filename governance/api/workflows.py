"""Endpoints for rollouts, escalations, blind reviews, incidents, revalidation and policies."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters
from accounts.api.permissions import HasRole
from accounts.models import Role
from governance import selectors
from governance.models import EscalationStatus, MitigationTemplate, ReviewTask, RiskTaxonomy
from governance.selectors import review_task_view
from governance.services.escalations import escalation_acknowledge, escalation_resolve, incident_report
from governance.services.monitoring import revalidation_schedule
from governance.services.policies import threshold_policy_publish
from governance.services.releases import release_advance_rollout, release_start_rollout
from governance.services.reviews import review_submit

from .serializers import (
    EscalationOutput,
    IncidentInput,
    PolicyInput,
    PolicyOutput,
    ReleaseOutput,
    ResolutionInput,
    RevalidationInput,
    ReviewSubmitInput,
    RolloutInput,
    TransitionInput,
)

OFFICERS = (Role.OFFICER,)


def _release_for(request, pk: int):
    return get_object_or_404(selectors.releases_visible_to(request.user), pk=pk)


class ReleaseRollout(APIView):
    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=RolloutInput, responses={200: ReleaseOutput})
    def post(self, request, pk: int):
        _release_for(request, pk)
        data = RolloutInput(data=request.data)
        data.is_valid(raise_exception=True)
        release = release_start_rollout(actor=request.user, release_id=pk, **data.validated_data)
        return Response(ReleaseOutput(release).data)


class ReleaseRolloutAdvance(APIView):
    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=TransitionInput, responses={200: ReleaseOutput})
    def post(self, request, pk: int):
        _release_for(request, pk)
        data = TransitionInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            ReleaseOutput(release_advance_rollout(actor=request.user, release_id=pk, **data.validated_data)).data
        )


class EscalationList(generics.ListAPIView):
    """Escalations by deadline; filter with ?status=open|acknowledged|resolved&release=…"""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.ENGINEER)
    serializer_class = EscalationOutput
    filters = (Filter.choice("status", EscalationStatus), Filter.int("release", field="release_id"))

    def get_queryset(self):
        return apply_filters(self, selectors.escalations_visible_to(self.request.user))


class EscalationAcknowledge(APIView):
    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=None, responses={200: EscalationOutput})
    def post(self, request, pk: int):
        return Response(EscalationOutput(escalation_acknowledge(actor=request.user, escalation_id=pk)).data)


class EscalationResolve(APIView):
    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=ResolutionInput, responses={200: EscalationOutput})
    def post(self, request, pk: int):
        data = ResolutionInput(data=request.data)
        data.is_valid(raise_exception=True)
        escalation = escalation_resolve(actor=request.user, escalation_id=pk, **data.validated_data)
        return Response(EscalationOutput(escalation).data)


class ReviewQueue(APIView):
    """The signed-in reviewer's blind review tasks (outputs A and B; the mapping is revealed after submission).
    `expected_label` is null unless the release's policy shows reviewers the expected label
    (`expected_label_shown`); judgements carried to a later release of the same artifacts are listed once."""

    permission_classes = [HasRole]
    allowed_roles = (Role.REVIEWER,)

    @extend_schema(responses={200: dict})
    def get(self, request):
        tasks = (
            ReviewTask.objects.filter(reviewer=request.user, carried_from__isnull=True)
            .select_related("flip__example", "release__policy")
            .order_by("submitted_at", "deadline", "pk")
        )
        return Response({"count": tasks.count(), "results": [review_task_view(t) for t in tasks]})


class ReviewSubmit(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.REVIEWER,)

    @extend_schema(request=ReviewSubmitInput, responses={200: dict})
    def post(self, request, pk: int):
        data = ReviewSubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        task = review_submit(actor=request.user, task_id=pk, **data.validated_data)
        return Response(
            review_task_view(ReviewTask.objects.select_related("flip__example", "release__policy").get(pk=task.pk))
        )


class ReleaseIncident(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.ENGINEER)

    @extend_schema(request=IncidentInput, responses={201: dict})
    def post(self, request, pk: int):
        _release_for(request, pk)
        data = IncidentInput(data=request.data)
        data.is_valid(raise_exception=True)
        incident = incident_report(actor=request.user, release_id=pk, **data.validated_data)
        return Response(
            {"id": incident.pk, "release": pk, "severity": incident.severity}, status=status.HTTP_201_CREATED
        )


class ReleaseRevalidation(APIView):
    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=RevalidationInput, responses={200: dict})
    def post(self, request, pk: int):
        _release_for(request, pk)
        data = RevalidationInput(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = revalidation_schedule(actor=request.user, release_id=pk, **data.validated_data)
        return Response({"release": pk, "interval_hours": schedule.interval_hours, "next_run_at": schedule.next_run_at})


class PolicyPublish(APIView):
    """Publish a new version of a threshold policy (earlier versions, and verdicts pinned to them, never change)."""

    permission_classes = [HasRole]
    allowed_roles = OFFICERS

    @extend_schema(request=PolicyInput, responses={201: PolicyOutput})
    def post(self, request):
        data = PolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        taxonomy = get_object_or_404(RiskTaxonomy, pk=v["taxonomy"]) if v["taxonomy"] else None
        policy = threshold_policy_publish(
            actor=request.user,
            name=v["name"],
            rules=[dict(r) for r in v["rules"]],
            taxonomy=taxonomy,
            description=v["description"],
            flip_basis=v["flip_basis"],
            required_profile=v["required_profile"],
            reviewers_see_expected_label=v["reviewers_see_expected_label"],
            forbid_training_data_overlap=v["forbid_training_data_overlap"],
        )
        return Response(PolicyOutput(policy).data, status=status.HTTP_201_CREATED)


class TaxonomyList(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.ENGINEER)

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(
            {
                "results": [
                    {
                        "id": t.pk,
                        "name": t.name,
                        "version": t.version,
                        "description": t.description,
                        "failure_modes": [
                            {
                                "code": m.code,
                                "category": m.category,
                                "title": m.title,
                                "severity": m.severity,
                                "likelihood": m.likelihood,
                                "measures": m.measures,
                                "regulatory_refs": m.regulatory_refs,
                            }
                            for m in t.failure_modes.all()
                        ],
                    }
                    for t in RiskTaxonomy.objects.prefetch_related("failure_modes")
                ]
            }
        )


class MitigationList(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.ENGINEER)

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(
            {
                "results": list(
                    MitigationTemplate.objects.order_by("code").values(
                        "code", "title", "kind", "description", "failure_mode_codes"
                    )
                )
            }
        )


class ExperimentSeedSpread(APIView):
    """For runs of one method and parameters with several seeds: the spread of every delta between seeds."""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.ENGINEER)

    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        from compression.selectors import experiments_visible_to
        from governance.selectors import seed_spread

        get_object_or_404(experiments_visible_to(request.user), pk=pk)
        return Response({"experiment": pk, "results": seed_spread(experiment_id=pk)})
