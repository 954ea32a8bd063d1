from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import ValidationFailed
from evaluations.services.suites import suite_derive_perturbed, suite_import_file

from accounts.api.permissions import HasRole
from accounts.models import Role
from evaluations import selectors

from .serializers import (
    ComparisonOutput, EvaluationOutput, ExampleOutput, FlipOutput, SuiteOutput, SuiteVersionOutput,
)

READERS = (Role.ENGINEER, Role.OFFICER)


class SuiteList(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = SuiteOutput
    queryset = selectors.suites()


class SuiteVersionDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = SuiteVersionOutput
    queryset = selectors.suite_versions()


class SuiteVersionExamples(generics.ListAPIView):
    """Examples of a suite version; filter with ?slice=…&subgroup=…&label=…"""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ExampleOutput

    def get_queryset(self):
        return selectors.examples_filtered(suite_version_id=self.kwargs["pk"], **self._filters())

    def _filters(self) -> dict:
        return {k: v for k in ("slice", "subgroup", "label") if (v := self.request.query_params.get(k)) is not None}


class EvaluationDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = EvaluationOutput

    def get_queryset(self):
        return selectors.evaluation_runs_visible_to(self.request.user)


class ComparisonDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ComparisonOutput

    def get_queryset(self):
        return selectors.comparisons_visible_to(self.request.user)


class ComparisonFlips(generics.ListAPIView):
    """The flip set; filter with ?slice=…&subgroup=…&direction=to_unsafe|to_safe"""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = FlipOutput

    def get_queryset(self):
        params = self.request.query_params
        generics.get_object_or_404(selectors.comparisons_visible_to(self.request.user), pk=self.kwargs["pk"])
        return selectors.flips_filtered(
            comparison_id=self.kwargs["pk"], slice=params.get("slice"), subgroup=params.get("subgroup"),
            direction=params.get("direction"),
        )


class SuiteImportInput(serializers.Serializer):
    file = serializers.FileField()
    suite = serializers.CharField(max_length=200)
    format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)
    mapping = serializers.JSONField(required=False, help_text='e.g. {"text": "comment", "label": "class"}')
    unsafe_labels = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    safe_labels = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    default_slice = serializers.ChoiceField(choices=["routine", "edge", "adversarial"], default="routine")


class SuiteImport(APIView):
    """Import a suite version from a CSV or JSONL upload (multipart). 400 lists every bad line."""

    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": SuiteImportInput}, responses={201: SuiteVersionOutput})
    def post(self, request):
        data = SuiteImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        upload = v["file"]
        if upload.size > settings.SAFESHRINK["MAX_UPLOAD_BYTES"]:
            raise ValidationFailed(f"The file is {upload.size:,} bytes, over the limit.",
                                   details={"file": [f"At most {settings.SAFESHRINK['MAX_UPLOAD_BYTES']:,} bytes."]})
        fmt = v.get("format") or ("jsonl" if upload.name.lower().endswith((".jsonl", ".ndjson")) else "csv")
        version = suite_import_file(actor=request.user, suite_name=v["suite"], data=upload.read(), fmt=fmt,
                                    mapping=v.get("mapping"), unsafe_labels=v["unsafe_labels"],
                                    safe_labels=v["safe_labels"], default_slice=v["default_slice"],
                                    source=f"upload {upload.name}")
        return Response(SuiteVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PerturbInput(serializers.Serializer):
    kinds = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    seed = serializers.IntegerField(default=0, min_value=0)
    per_example = serializers.IntegerField(default=1, min_value=1, max_value=10)
    from_slices = serializers.ListField(child=serializers.CharField(), default=lambda: ["routine"])
    limit = serializers.IntegerField(required=False, min_value=1)


class SuiteVersionPerturb(APIView):
    """Derive the next version with seeded adversarial variants, each linked to its source example."""

    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)

    @extend_schema(request=PerturbInput, responses={201: SuiteVersionOutput})
    def post(self, request, pk: int):
        data = PerturbInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        version = suite_derive_perturbed(actor=request.user, suite_version_id=pk, kinds=v["kinds"], seed=v["seed"],
                                         per_example=v["per_example"], from_slices=tuple(v["from_slices"]),
                                         limit=v.get("limit"))
        return Response(SuiteVersionOutput(version).data, status=status.HTTP_201_CREATED)
