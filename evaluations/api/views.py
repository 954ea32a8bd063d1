from rest_framework import generics

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
