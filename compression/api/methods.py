"""GET /api/methods/: the compression methods SafeShrink can run, described from the engine's own definitions
(compression.engine.methods), so the listing, the validation and the OpenAPI schema never disagree.

Availability comes from what start-up recorded (compression.capabilities): this view reads it and never
probes, so the web process imports no torch and starts no child interpreter.

The README's "Compression methods" table is ``methods_markdown()`` (regenerate it with
``python manage.py shell -c "from compression.api.methods import methods_markdown; print(methods_markdown())"``);
tests/compression/test_methods_api.py fails when the README differs."""

import json

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.models import Role
from compression.capabilities import capabilities_load
from compression.engine.methods import METHOD_SCHEMAS, describe_method

from .serializers import MethodOutput


def methods_described() -> list[dict]:
    """Every method, in the engine's definition order (simplest first), with this installation's availability."""
    capabilities_load()  # what start-up found about the optional methods (never probes here)
    return [describe_method(method) for method in METHOD_SCHEMAS]


def _parameter_markdown(parameter: dict) -> str:
    text = f"`{parameter['name']}` = {json.dumps(parameter['default'])}"
    if parameter["range"]:
        text += f", {parameter['range']}"
    if parameter["nullable"] and parameter["default"] is not None:
        text += ", or null"
    return text


def _data_markdown(data: dict) -> str:
    parts = [f"`{field}`" for field in data["required"]]
    parts += [f"`{need['field']}` when {need['when']}" for need in data["conditional"]]
    return "; ".join(parts) or "none"


def methods_markdown() -> str:
    """The README's table of methods: name, what it does, parameters (default, range), data needed. Built
    from the same descriptions as the listing, without availability (that depends on the installation)."""
    rows = ["| method | what it does | parameters (default, range) | data needed |", "|---|---|---|---|"]
    for method in methods_described():
        parameters = "<br>".join(_parameter_markdown(p) for p in method["parameters"]) or "none"
        rows.append(f"| `{method['name']}` | {method['summary']} | {parameters} | {_data_markdown(method['data'])} |")
    return "\n".join(rows) + "\n"


class MethodList(APIView):
    """The compression methods: parameters (type, default, range, meaning), the data each needs, and whether
    this installation can run it. Not paginated: the list is short and fixed by the installed version."""

    permission_classes = [HasRole]
    # Every signed-in role: engineers choose methods, officers, reviewers and regulators read what a run did.
    allowed_roles = tuple(Role)

    @extend_schema(responses={200: MethodOutput(many=True)})
    def get(self, request):
        return Response(MethodOutput(methods_described(), many=True).data)
