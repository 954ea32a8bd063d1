"""REST endpoints for external runs and engineers' signing keys. One view per operation; views parse input, call
one service and render the result. Engineers write (to their own experiments' runs only); officers read."""

from collections.abc import Mapping

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters
from accounts.api.pagination import Pagination
from accounts.api.permissions import HasRole
from accounts.errors import ValidationFailed
from accounts.models import Role
from tracking.models import MAX_KEY_LENGTH, ExternalRun, ExternalRunProvenance, ExternalRunStatus
from tracking.selectors import engineer_keys_visible_to, external_runs_visible_to, metric_history
from tracking.services.batch import MISSING
from tracking.services.provenance import engineer_key_register, external_run_attach_provenance
from tracking.services.runs import external_run_create, external_run_finish, external_run_log, run_for_writing

from .serializers import (
    EngineerKeyInput,
    EngineerKeyOutput,
    ExternalRunInput,
    ExternalRunOutput,
    ExternalRunSummaryOutput,
    FinishInput,
    LogBatchInput,
    LogOutput,
    MetricOutput,
    ProvenanceInput,
    ProvenanceOutput,
)

WRITERS = (Role.ENGINEER,)
READERS = (Role.ENGINEER, Role.OFFICER)


def _json_object(request, run_id: int) -> Mapping:
    """The body, which must be a JSON object (checked after who may write to the run: who before what)."""
    if not isinstance(request.data, Mapping):
        run_for_writing(request.user, run_id, lock=False)
        raise ValidationFailed("The body must be a JSON object.", details={"non_field_errors": ["Send a JSON object."]})
    return request.data


def _run_detail_queryset(user):
    return external_runs_visible_to(user).prefetch_related(
        "input_artifacts",
        Prefetch(
            "provenance",
            queryset=ExternalRunProvenance.objects.select_related("attached_by", "run__output_artifact"),
        ),
    )


class ExternalRunListCreate(generics.ListAPIView):
    """External runs (done outside SafeShrink, reported by their engineers), as summaries; filter with
    ?experiment=…&status=…. POST records one in one of your experiments."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = WRITERS
    serializer_class = ExternalRunSummaryOutput
    filters = (
        Filter.int("experiment", field="experiment_id", description="External runs of this experiment."),
        Filter.choice("status", ExternalRunStatus, description="External runs in this status."),
    )

    def get_queryset(self):
        return apply_filters(self, external_runs_visible_to(self.request.user))

    @extend_schema(request=ExternalRunInput, responses={201: ExternalRunOutput})
    def post(self, request):
        data = ExternalRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = external_run_create(
            actor=request.user,
            experiment_id=v["experiment"],
            method=v["method"],
            known_method=v.get("known_method") or "",
            name=v["name"],
            parameters=v.get("parameters"),
            code_reference=v.get("code_reference"),
            tool_versions=v.get("tool_versions"),
            hardware=v.get("hardware"),
            seeds=v.get("seeds"),
            tags=v.get("tags"),
            input_artifact_ids=v.get("input_artifacts") or (),
            output_artifact_id=v.get("output_artifact"),
            started_at=v.get("started_at"),
        )
        return Response(
            ExternalRunOutput(_run_detail_queryset(request.user).get(pk=run.pk)).data, status=status.HTTP_201_CREATED
        )


class ExternalRunDetail(generics.RetrieveAPIView):
    """One external run: what was reported (method, parameters, code, tools, hardware, seeds, artifacts), its
    params and tags, a summary of each metric (history: /metrics/?key=…) and its provenance statements."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ExternalRunOutput

    def get_queryset(self):
        return _run_detail_queryset(self.request.user)


class ExternalRunLog(APIView):
    """Log params, metrics and tags in one batch (MLflow's log_batch): all or nothing; a refused batch names each
    bad item (`metrics[3].value`) and stores nothing. One ledger event per request."""

    permission_classes = [HasRole]
    allowed_roles = WRITERS

    @extend_schema(request=LogBatchInput, responses={200: LogOutput})
    def post(self, request, pk: int):
        body = _json_object(request, pk)
        result = external_run_log(
            actor=request.user,
            run_id=pk,
            params=body.get("params", MISSING),
            metrics=body.get("metrics", MISSING),
            tags=body.get("tags", MISSING),
        )
        return Response(LogOutput(result).data)


class ExternalRunFinish(APIView):
    """End the run (finished, failed or killed), optionally naming its output artifact. Its record then closes."""

    permission_classes = [HasRole]
    allowed_roles = WRITERS

    @extend_schema(request=FinishInput, responses={200: ExternalRunOutput})
    def post(self, request, pk: int):
        run_for_writing(request.user, pk, lock=False)  # who before what
        data = FinishInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        run = external_run_finish(
            actor=request.user,
            run_id=pk,
            status=v["status"],
            ended_at=v.get("ended_at"),
            output_artifact_id=v.get("output_artifact"),
        )
        return Response(ExternalRunOutput(_run_detail_queryset(request.user).get(pk=run.pk)).data)


class MetricPagination(Pagination):
    """The default pagination, and the page says the values are reported, not verified."""

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["source"], response.data["verification"] = ExternalRun.SOURCE, ExternalRun.VERIFICATION
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["source"] = {"type": "string", "enum": [ExternalRun.SOURCE]}
        schema["properties"]["verification"] = {"type": "string", "enum": [ExternalRun.VERIFICATION]}
        schema["required"] = sorted({*schema.get("required", ()), "source", "verification"})
        return schema


class ExternalRunMetrics(generics.ListAPIView):
    """A run's metrics in (key, step, timestamp) order; with ?key=…, that metric's history (MLflow's
    get_metric_history). Paginated."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = MetricOutput
    pagination_class = MetricPagination
    filters = (Filter.str("key", field="key", max_length=MAX_KEY_LENGTH, description="The metric's key."),)

    def get_queryset(self):
        run = generics.get_object_or_404(external_runs_visible_to(self.request.user), pk=self.kwargs["pk"])
        return apply_filters(self, metric_history(run))


class ExternalRunProvenanceAttach(APIView):
    """Attach a provenance statement (an in-toto Statement in a DSSE envelope, signed with a key you registered
    at /api/engineer-keys/). SafeShrink verifies the signature: one that does not verify is stored with
    `signature_verified: false` and the reason; an envelope that is not an in-toto Statement is a 400."""

    permission_classes = [HasRole]
    allowed_roles = WRITERS

    @extend_schema(request=ProvenanceInput, responses={201: ProvenanceOutput})
    def post(self, request, pk: int):
        body = _json_object(request, pk)
        if "envelope" not in body:
            run_for_writing(request.user, pk, lock=False)  # who before what
            raise ValidationFailed("envelope is required.", details={"envelope": ["This field is required."]})
        record = external_run_attach_provenance(actor=request.user, run_id=pk, envelope=body["envelope"])
        return Response(ProvenanceOutput(record).data, status=status.HTTP_201_CREATED)


class EngineerKeyListCreate(generics.ListAPIView):
    """Engineers' Ed25519 public keys for signing provenance statements (yours; officers see all). POST registers
    yours: registering it again returns it (200); a key someone else registered is a 409."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = WRITERS
    serializer_class = EngineerKeyOutput

    def get_queryset(self):
        return engineer_keys_visible_to(self.request.user)

    @extend_schema(request=EngineerKeyInput, responses={201: EngineerKeyOutput, 200: EngineerKeyOutput})
    def post(self, request):
        data = EngineerKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, created = engineer_key_register(
            actor=request.user, public_key=data.validated_data["public_key"], name=data.validated_data["name"]
        )
        return Response(EngineerKeyOutput(key).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
