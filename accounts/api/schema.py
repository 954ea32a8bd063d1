"""OpenAPI generation: every operation documents the error responses it can give, in the error model, and the
query filters its view declares (accounts.api.filters). REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS is AutoSchema;
SPECTACULAR_SETTINGS's POSTPROCESSING_HOOKS runs postprocess_schema."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.settings import api_settings

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: a malformed body, query parameter or filter value, or a refused request. "
           "`details` names each field (or parameter) and what is wrong with it.",
    "401": "No credentials, or credentials that are not valid.",
    "403": "Your role may not use this endpoint, or a rule refuses this action (separation of duties, authority).",
    "404": "No such object (in the path or named in the body), or one you may not see; or a page past the last.",
    "409": "The object changed since you loaded it (`expected_version`), or its state does not allow this.",
    "413": "The request body is larger than the limit.",
    "415": "The request's content type is not accepted here.",
}


class ErrorOutput(serializers.Serializer):
    """The one error model: a stable machine-readable code, a readable message, details by field."""

    code = serializers.CharField(help_text="Machine-readable, stable: invalid, not_found, permission_denied, ...")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.JSONField(help_text="By field or parameter name: what is wrong with it.")

    class Meta:
        ref_name = "Error"


class AutoSchema(SpectacularAutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # DRF's allow_empty=False (ListField, many=True) is "minItems: 1"; spectacular leaves it out.
        if direction == "request" and getattr(field, "allow_empty", True) is False and schema.get("type") == "array":
            schema["minItems"] = max(1, schema.get("minItems", 0))
        return schema

    def map_parsers(self):
        # JSON is the API's format. Views that take files set their own parsers (multipart) and document them;
        # the others also parse forms (DRF's defaults, for the browsable API) but are documented as JSON only.
        if self.view.parser_classes is api_settings.DEFAULT_PARSER_CLASSES:
            return ["application/json"]
        return super().map_parsers()

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method == "GET":
            for spec in getattr(self.view, "filters", ()):
                schema = spec.openapi_schema()
                parameters.append(OpenApiParameter(
                    name=spec.name, location=OpenApiParameter.QUERY, required=False,
                    type=schema, description=spec.description or _filter_description(spec),
                ))
        return parameters

    def _error_statuses(self) -> list[str]:
        public = any(isinstance(p, AllowAny) for p in self.view.get_permissions())
        unsafe = self.method in ("POST", "PUT", "PATCH", "DELETE")
        statuses = ["400"]
        if not public:
            # 404: an id in the path or the body that names nothing you may see, or a page past the last.
            statuses += ["401", "403", "404"]
        if unsafe and not public:
            statuses.append("409")
        if unsafe:
            statuses += ["413", "415"]
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        error = self.resolve_serializer(ErrorOutput, "response").ref
        for status in self._error_statuses():
            responses.setdefault(status, {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": error}},
            })
        return responses


def postprocess_schema(result, generator, request, public):
    """Path ids are positive bigints (anything else cannot name an object: 404)."""
    from accounts.api.filters import INT_MAX

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    schema.setdefault("minimum", 1)
                    schema.setdefault("maximum", INT_MAX)
    return result


def _filter_description(spec) -> str:
    if spec.type == "choice":
        return f"One of: {', '.join(spec.choices)}. Any other value is a 400."
    if spec.type == "int":
        return "An id (positive integer); anything else is a 400."
    if spec.type == "datetime":
        return "A date (YYYY-MM-DD) or ISO 8601 date-time."
    return "Exact match."
