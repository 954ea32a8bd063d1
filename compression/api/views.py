"""REST endpoints for artifacts, experiments and compression runs. One view per operation;
views parse input, call one service and render the result."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters
from accounts.api.permissions import HasRole
from accounts.models import Role
from compression import selectors
from compression.models import ModelKind, RiskTier, RunStatus
from compression.services.artifacts import artifact_import
from compression.services.experiments import experiment_create
from compression.services.runs import compression_run_cancel, compression_run_request

from .serializers import (
    ArtifactOutput,
    ArtifactRegisterInput,
    ExperimentInput,
    ExperimentOutput,
    RunOutput,
    RunRequestInput,
    RunSummaryOutput,
)

WRITERS = (Role.ENGINEER,)
READERS = (Role.ENGINEER, Role.OFFICER)


class ArtifactListCreate(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = WRITERS
    serializer_class = ArtifactOutput
    filters = (
        Filter.str("name", description="Artifacts with exactly this name."),
        Filter.int("parent", field="parent_id", description="Artifacts derived from this artifact."),
        Filter.choice("kind", ModelKind),
    )

    def get_queryset(self):
        return apply_filters(self, selectors.artifacts_visible_to(self.request.user))

    @extend_schema(request=ArtifactRegisterInput, responses={201: ArtifactOutput})
    def post(self, request):
        data = ArtifactRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        artifact = artifact_import(
            actor=request.user,
            name=data.validated_data["name"],
            path=data.validated_data["path"],
            parent_id=data.validated_data.get("parent"),
        )
        return Response(ArtifactOutput(artifact).data, status=status.HTTP_201_CREATED)


class ArtifactDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ArtifactOutput

    def get_queryset(self):
        return selectors.artifacts_visible_to(self.request.user)


class ExperimentListCreate(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = WRITERS
    serializer_class = ExperimentOutput
    filters = (Filter.choice("risk_tier", RiskTier),)

    def get_queryset(self):
        return apply_filters(self, selectors.experiments_visible_to(self.request.user))

    @extend_schema(request=ExperimentInput, responses={201: ExperimentOutput})
    def post(self, request):
        data = ExperimentInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        experiment = experiment_create(
            actor=request.user,
            name=v["name"],
            description=v["description"],
            base_artifact_id=v["base_artifact"],
            risk_tier=v["risk_tier"],
            unsafe_labels=v.get("unsafe_labels"),
            generation=v.get("generation"),
        )
        return Response(ExperimentOutput(experiment).data, status=status.HTTP_201_CREATED)


class ExperimentDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ExperimentOutput

    def get_queryset(self):
        return selectors.experiments_visible_to(self.request.user)


class ExperimentRunRequest(APIView):
    permission_classes = [HasRole]
    allowed_roles = WRITERS

    @extend_schema(request=RunRequestInput, responses={202: RunOutput})
    def post(self, request, pk: int):
        experiment = generics.get_object_or_404(selectors.experiments_visible_to(request.user), pk=pk)
        data = RunRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = compression_run_request(
            actor=request.user,
            experiment_id=experiment.pk,
            method=v["method"],
            parameters=v["parameters"],
            seed=v["seed"],
            data_suite_version_id=v["data_suite_version"],
            device=v["device"],
            queue_anyway=v["queue_anyway"],
        )
        return Response(RunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class RunList(generics.ListAPIView):
    """Compression runs, as summaries (provenance on the detail); filter with ?status=…&experiment=…"""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = RunSummaryOutput
    filters = (Filter.choice("status", RunStatus), Filter.int("experiment", field="experiment_id"))

    def get_queryset(self):
        return apply_filters(self, selectors.runs_visible_to(self.request.user)).defer(
            "provenance", "provenance_envelope"
        )


class RunDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = RunOutput

    def get_queryset(self):
        return selectors.runs_visible_to(self.request.user)


class RunCancel(APIView):
    permission_classes = [HasRole]
    allowed_roles = WRITERS

    @extend_schema(request=None, responses={200: RunOutput})
    def post(self, request, pk: int):
        run = generics.get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
        return Response(RunOutput(compression_run_cancel(actor=request.user, run_id=run.pk)).data)
