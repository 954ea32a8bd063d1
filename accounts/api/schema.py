"""OpenAPI generation: every operation documents the error responses it can give, in the error model, and the
query filters its view declares (accounts.api.filters). REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS is AutoSchema;
SPECTACULAR_SETTINGS's POSTPROCESSING_HOOKS runs postprocess_schema, which also lists every app's error codes in the
error model (each app's `<app>/error_codes.py` registry, found by that convention: accounts imports no app above it)."""

import importlib
from enum import StrEnum

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


CODE_HELP = "Machine-readable, stable: invalid, not_found, permission_denied, ..."


class ErrorOutput(serializers.Serializer):
    """The one error model: a stable machine-readable code, a readable message, details by field."""

    code = serializers.CharField(help_text=CODE_HELP)
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
                parameters.append(
                    OpenApiParameter(
                        name=spec.name,
                        location=OpenApiParameter.QUERY,
                        required=False,
                        type=schema,
                        description=spec.description or _filter_description(spec),
                    )
                )
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
            responses.setdefault(
                status,
                {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": error}},
                },
            )
        return responses


def error_code_registries() -> dict[str, list[type[StrEnum]]]:
    """Each installed app's error-code registries: the StrEnums defined in `<app>/error_codes.py`. An app without
    that module has none (yet); a registry that fails to import for another reason is an error, not skipped."""
    from django.apps import apps

    registries: dict[str, list[type[StrEnum]]] = {}
    for config in apps.get_app_configs():
        name = f"{config.name}.error_codes"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        enums = [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, StrEnum) and value.__module__ == name
        ]
        if enums:
            registries[config.label] = enums
    return registries


def error_codes_by_app() -> dict[str, list[str]]:
    """app label -> its codes (in definition order), from error_code_registries()."""
    return {
        app: list(dict.fromkeys(str(member) for enum in enums for member in enum))
        for app, enums in error_code_registries().items()
    }


def error_code_description() -> str:
    listing = "; ".join(f"{app}: {', '.join(codes)}" for app, codes in error_codes_by_app().items())
    return (
        f"Machine-readable and stable. Every code an app raises is defined once, in its `error_codes.py` "
        f"registry: {listing}."
    )


def postprocess_schema(result, generator, request, public):
    """Path ids are positive bigints (anything else cannot name an object: 404). The error model's `code`
    lists every app's registered error codes."""
    from accounts.api.filters import INT_MAX

    code = result.get("components", {}).get("schemas", {}).get("Error", {}).get("properties", {}).get("code")
    if code is not None:
        code["description"] = error_code_description()

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
