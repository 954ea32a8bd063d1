"""OpenSSF model-signing material for artifacts SafeShrink produced (compression/services/signatures.py):

GET /api/artifacts/{id}/model-signature/   the bundle `model_signing verify key --signature` reads (JSON)
GET /api/artifacts/model-signing-key/      SafeShrink's model-signing public key (PEM, EC P-256)

    model_signing verify key --signature model.sig --public_key safeshrink-model-signing.pub.pem <folder>
"""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.errors import NotFound
from accounts.models import Role
from compression import selectors
from compression.error_codes import CompressionErrorCode
from compression.services.signatures import model_signing_public_key

READERS = (Role.ENGINEER, Role.OFFICER)
PEM_TYPE = "application/x-pem-file"


class ArtifactModelSignature(APIView):
    """SafeShrink's model-signing signature (a Sigstore bundle, JSON) over the files of an artifact it
    produced; save it as model.sig and check the artifact's folder with `model_signing verify key`.
    404 `not_signed` for an artifact SafeShrink did not produce (a signature it arrived with is one of its
    files, model.sig, and its check is the artifact's signature_status)."""

    permission_classes = [HasRole]
    allowed_roles = READERS

    @extend_schema(operation_id="artifacts_model_signature", responses={(200, "application/json"): OpenApiTypes.OBJECT})
    def get(self, request, pk: int):
        artifact = generics.get_object_or_404(selectors.artifacts_visible_to(request.user), pk=pk)
        if artifact.system_signature is None:
            raise NotFound(
                "SafeShrink has not signed this artifact: it signs the artifacts it produces (compression runs).",
                code=CompressionErrorCode.NOT_SIGNED,
            )
        response = Response(artifact.system_signature)
        response["Content-Disposition"] = f'attachment; filename="{artifact.digest[:16]}.model.sig"'
        return response


class ModelSigningKey(APIView):
    """The public key (PEM) that verifies SafeShrink's model-signing signatures."""

    permission_classes = [HasRole]
    allowed_roles = READERS

    @extend_schema(operation_id="artifacts_model_signing_key", responses={(200, PEM_TYPE): OpenApiTypes.STR})
    def get(self, request):
        response = HttpResponse(model_signing_public_key(), content_type=PEM_TYPE)
        response["Content-Disposition"] = 'attachment; filename="safeshrink-model-signing.pub.pem"'
        return response
