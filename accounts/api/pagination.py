from rest_framework.pagination import PageNumberPagination

from accounts.errors import ValidationFailed


class Pagination(PageNumberPagination):
    """Page-number pagination that refuses a malformed `page` or `page_size` (400 in the error model) instead
    of silently falling back to the default, and says so in the schema (minimum / maximum)."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 3 or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationFailed(
                f"Query parameter 'page_size' must be an integer from 1 to {self.max_page_size}.",
                details={"page_size": [f"An integer from 1 to {self.max_page_size}."]},
            )
        return int(raw)

    def paginate_queryset(self, queryset, request, view=None):
        raw = request.query_params.get(self.page_query_param)
        if (
            raw is not None
            and raw not in self.last_page_strings
            and (not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1)
        ):
            raise ValidationFailed(
                f"Query parameter '{self.page_query_param}' must be a positive integer.",
                details={self.page_query_param: ["A positive integer."]},
            )
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters
