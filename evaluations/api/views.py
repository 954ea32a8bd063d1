from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters, filter_values
from accounts.api.permissions import HasRole
from accounts.errors import ValidationFailed
from accounts.models import Role
from evaluations import selectors
from evaluations.models import FlipDirection, Slice
from evaluations.services.chat_suites import chat_judge, chat_suite_import, prompt_rows
from evaluations.services.suite_imports import suite_import_request
from evaluations.services.suites import suite_derive_perturbed

from .serializers import (
    ComparisonOutput,
    EvaluationOutput,
    ExampleOutput,
    FlipOutput,
    SuiteImportOutput,
    SuiteOutput,
    SuiteVersionOutput,
)

READERS = (Role.ENGINEER, Role.OFFICER)


class SuiteList(generics.ListAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = SuiteOutput
    filters = (Filter.str("name", description="The suite with exactly this name."),)

    def get_queryset(self):
        return apply_filters(self, selectors.suites())


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
    filters = (
        Filter.choice("slice", Slice, field=""),
        Filter.str("subgroup", field="", allow_empty=True, description="Empty: examples without a subgroup."),
        Filter.str("label", field=""),
    )

    def get_queryset(self):
        values = filter_values(self)
        generics.get_object_or_404(selectors.suite_versions(), pk=self.kwargs["pk"])
        return selectors.examples_filtered(suite_version_id=self.kwargs["pk"], **values)


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
    """The flip set; filter with ?slice=…&subgroup=…&direction=to_unsafe|to_safe&stable=true|false"""

    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = FlipOutput
    filters = (
        Filter.choice("slice", Slice, field=""),
        Filter.str("subgroup", field=""),
        Filter.choice("direction", FlipDirection, field=""),
        Filter.bool(
            "stable",
            field="",
            description="true: only flips that hold in both passes for both models (the decision did not move "
            "when the batches were recomposed); false: only those that did move. A comparison without a "
            "stability pass has none either way. Anything else is a 400.",
        ),
    )

    def get_queryset(self):
        values = filter_values(self)
        generics.get_object_or_404(selectors.comparisons_visible_to(self.request.user), pk=self.kwargs["pk"])
        return selectors.flips_filtered(comparison_id=self.kwargs["pk"], **values)


class SuiteImportInput(serializers.Serializer):
    file = serializers.FileField()
    suite = serializers.CharField(max_length=200)
    format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)
    mapping = serializers.JSONField(required=False, help_text='e.g. {"text": "comment", "label": "class"}')
    unsafe_labels = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    safe_labels = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    default_slice = serializers.ChoiceField(choices=["routine", "edge", "adversarial"], default="routine")

    def validate_mapping(self, value):
        if value is not None and not isinstance(value, dict):  # e.g. `true`: a 500 in the importer before
            raise serializers.ValidationError('A JSON object such as {"text": "comment", "label": "class"}.')
        return value

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except RecursionError:  # a mapping nested too deep for json.loads
            raise serializers.ValidationError(
                {"mapping": ["Nested too deep; a flat JSON object is expected."]}
            ) from None


class SuiteImport(APIView):
    """Upload a CSV or JSONL suite file (multipart): it is stored and imported on a worker. 202 with the
    import's status URL (`GET /api/suite-imports/{id}/`: queued, running with rows done of total,
    succeeded with the suite version, or failed with every bad line); nothing is stored unless every row
    is valid. Labels, format, mapping and size are checked at once (400)."""

    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": SuiteImportInput}, responses={202: SuiteImportOutput})
    def post(self, request):
        data = SuiteImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        upload = v["file"]
        if upload.size > settings.SAFESHRINK["MAX_UPLOAD_BYTES"]:
            raise ValidationFailed(
                f"The file is {upload.size:,} bytes, over the limit.",
                details={"file": [f"At most {settings.SAFESHRINK['MAX_UPLOAD_BYTES']:,} bytes."]},
            )
        fmt = v.get("format") or ("jsonl" if upload.name.lower().endswith((".jsonl", ".ndjson")) else "csv")
        job = suite_import_request(
            actor=request.user,
            chunks=upload.chunks(),
            file_name=upload.name,
            suite_name=v["suite"],
            fmt=fmt,
            mapping=v.get("mapping"),
            unsafe_labels=v["unsafe_labels"],
            safe_labels=v["safe_labels"],
            default_slice=v["default_slice"],
        )
        job.refresh_from_db()  # eager tasks (tests) may have run it already
        body = SuiteImportOutput(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class ChatSuiteInput(serializers.Serializer):
    suite = serializers.CharField(max_length=200)
    judge = serializers.IntegerField(
        help_text="The judge artifact (kind 'judge') that decides refusal for every answer."
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")
    source = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Where the prompts came from."
    )
    rows = serializers.JSONField(
        help_text="A list of prompt rows: {id, prompt, label ('harmful' | 'safe') or expected ('refuse' | "
        "'answer'), slice?, subgroup?, tags?, reference? (a harmless reference answer), source_id?}."
    )


class ChatSuiteImport(APIView):
    """Import a chat suite (JSON): prompts a chat model should refuse (harmful) or answer (safe), and the judge
    that decides refusal. All or nothing: a bad row, a classifier row among prompt rows (`mixed_rows`), an
    unknown judge or one whose labels do not fit (`invalid_judge`, `judge_labels_mismatch`) is a 400 naming
    it, and nothing is stored. Identical content and judge return the existing version (200), else 201."""

    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)

    @extend_schema(request=ChatSuiteInput, responses={201: SuiteVersionOutput, 200: SuiteVersionOutput})
    def post(self, request):
        data = ChatSuiteInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        judge = chat_judge(v["judge"])
        rows = prompt_rows(v["rows"])
        version, created = chat_suite_import(
            actor=request.user,
            suite_name=v["suite"],
            rows=rows,
            judge=judge,
            source=v["source"],
            description=v["description"],
        )
        return Response(
            SuiteVersionOutput(version).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class SuiteImportDetail(generics.RetrieveAPIView):
    """An upload's import: status, stage, rows done of total, the suite version, or the error."""

    permission_classes = [HasRole]
    allowed_roles = (Role.ENGINEER,)
    serializer_class = SuiteImportOutput

    def get_queryset(self):
        return selectors.suite_imports_visible_to(self.request.user)


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
        generics.get_object_or_404(selectors.suite_versions(), pk=pk)
        data = PerturbInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        version = suite_derive_perturbed(
            actor=request.user,
            suite_version_id=pk,
            kinds=v["kinds"],
            seed=v["seed"],
            per_example=v["per_example"],
            from_slices=tuple(v["from_slices"]),
            limit=v.get("limit"),
        )
        return Response(SuiteVersionOutput(version).data, status=status.HTTP_201_CREATED)
