from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.models import Role
from governance import selectors
from governance.models import ThresholdPolicy
from governance.services.releases import release_create, release_decide, release_start_evaluation

from .serializers import DecisionInput, PolicyOutput, ReleaseInput, ReleaseOutput, TransitionInput

READERS = (Role.ENGINEER, Role.OFFICER)
RELEASE_READERS = (Role.ENGINEER, Role.OFFICER, Role.REGULATOR)


class PolicyList(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = PolicyOutput
    queryset = ThresholdPolicy.objects.prefetch_related("rules")


class ReleaseListCreate(generics.ListAPIView):
    """Releases; filter with ?status=…&zone=… (regulators see the releases granted to them)."""

    permission_classes = [HasRole]
    allowed_roles = RELEASE_READERS
    write_roles = (Role.ENGINEER,)
    serializer_class = ReleaseOutput

    def get_queryset(self):
        _record_regulator_read(self.request.user, "release list", "list")
        qs = selectors.releases_visible_to(self.request.user).prefetch_related("decisions__actor")
        if status_ := self.request.query_params.get("status"):
            qs = qs.filter(status=status_)
        if zone := self.request.query_params.get("zone"):
            qs = qs.filter(gate_zone=zone)
        return qs

    @extend_schema(request=ReleaseInput, responses={201: ReleaseOutput})
    def post(self, request):
        data = ReleaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        release = release_create(actor=request.user, compression_run_id=v["compression_run"],
                                 suite_version_id=v["suite_version"], policy_id=v["policy"])
        return Response(ReleaseOutput(release).data, status=status.HTTP_201_CREATED)


class ReleaseDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = RELEASE_READERS
    serializer_class = ReleaseOutput

    def get_queryset(self):
        _record_regulator_read(self.request.user, f"release {self.kwargs['pk']}", self.kwargs["pk"])
        return selectors.releases_visible_to(self.request.user)


def _record_regulator_read(user, what: str, object_id) -> None:
    from governance.services.access import access_record

    access_record(actor=user, what=what, object_id=object_id)


class ReleaseStartEvaluation(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)

    @extend_schema(request=TransitionInput, responses={202: ReleaseOutput})
    def post(self, request, pk: int):
        generics.get_object_or_404(selectors.releases_visible_to(request.user), pk=pk)
        data = TransitionInput(data=request.data)
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
