from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters
from accounts.api.permissions import HasRole
from accounts.models import Role
from governance import selectors
from governance.models import ReleaseStatus, ThresholdPolicy, Zone
from governance.services.candidates import release_create_from_external_run
from governance.services.releases import release_create, release_decide, release_start_evaluation

from .serializers import (
    DecisionInput,
    PolicyOutput,
    ReleaseInput,
    ReleaseOutput,
    ReleaseSummaryOutput,
    StartEvaluationInput,
)

READERS = (Role.ENGINEER, Role.OFFICER)
RELEASE_READERS = (Role.ENGINEER, Role.OFFICER, Role.REGULATOR)


class PolicyList(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = PolicyOutput
    filters = (Filter.str("name", description="Every version of the policy with this name."),)

    def get_queryset(self):
        return apply_filters(self, ThresholdPolicy.objects.prefetch_related("rules").order_by("name", "version"))


class ReleaseListCreate(generics.ListAPIView):
    """Releases, newest first; filter with ?status=…&zone=… (regulators see the releases granted to them).
    List rows are summaries (no gate table, no decisions): GET /api/releases/{id}/ has the full record."""

    permission_classes = [HasRole]
    allowed_roles = RELEASE_READERS
    write_roles = (Role.ENGINEER,)
    serializer_class = ReleaseSummaryOutput
    filters = (Filter.choice("status", ReleaseStatus), Filter.choice("zone", Zone, field="gate_zone"))

    def get_queryset(self):
        qs = apply_filters(self, selectors.releases_visible_to(self.request.user))
        _record_regulator_read(self.request.user, "release list", "list")
        return (
            qs.select_related(None)
            .select_related("policy")
            .only(*ReleaseSummaryOutput.columns)
            .order_by("-created_at", "-pk")
        )

    @extend_schema(request=ReleaseInput, responses={201: ReleaseOutput})
    def post(self, request):
        data = ReleaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["external_run"] is not None:
            release = release_create_from_external_run(
                actor=request.user,
                external_run_id=v["external_run"],
                suite_version_id=v["suite_version"],
                policy_id=v["policy"],
            )
        else:
            release = release_create(
                actor=request.user,
                compression_run_id=v["compression_run"],
                suite_version_id=v["suite_version"],
                policy_id=v["policy"],
            )
        return Response(ReleaseOutput(release).data, status=status.HTTP_201_CREATED)


class ReleaseDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = RELEASE_READERS
    serializer_class = ReleaseOutput

    def get_queryset(self):
        return selectors.releases_visible_to(self.request.user)

    def get_object(self):
        # Recorded after the lookup: a refused read (404) is access.denied, only a successful one access.viewed.
        from governance.services.access import access_read

        pk = self.kwargs["pk"]
        return access_read(
            actor=self.request.user, request=self.request, what=f"release {pk}", object_id=pk, read=super().get_object
        )


def _record_regulator_read(user, what: str, object_id) -> None:
    from governance.services.access import access_record

    access_record(actor=user, what=what, object_id=object_id)


class ReleaseStartEvaluation(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)

    @extend_schema(request=StartEvaluationInput, responses={202: ReleaseOutput})
    def post(self, request, pk: int):
        generics.get_object_or_404(selectors.releases_visible_to(request.user), pk=pk)
        data = StartEvaluationInput(data=request.data)
        data.is_valid(raise_exception=True)
        release = release_start_evaluation(actor=request.user, release_id=pk, **data.validated_data)
        return Response(ReleaseOutput(release).data, status=status.HTTP_202_ACCEPTED)


class ReleaseDecide(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(request=DecisionInput, responses={200: ReleaseOutput})
    def post(self, request, pk: int):
        generics.get_object_or_404(selectors.releases_visible_to(request.user), pk=pk)
        data = DecisionInput(data=request.data)
        data.is_valid(raise_exception=True)
        release = release_decide(actor=request.user, release_id=pk, **data.validated_data)
        return Response(ReleaseOutput(release).data)
