"""Export endpoints: request, status, download of the three parts (each download is a ledger event), verify,
grants."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.errors import NotFound, ValidationFailed
from accounts.models import Role
from exports.models import Export
from exports.selectors import export_release_id, exports_visible_to
from exports.services.exports import (
    EXPORT_PARTS,
    export_open,
    export_request,
    export_verify,
    regulator_grant,
    regulator_grant_revoke,
)
from governance.selectors import releases_visible_to
from governance.services.access import access_read, access_refusal_record

READERS = (Role.OFFICER, Role.REGULATOR)
CONTENT_TYPES = {"pdf": "application/pdf", "json": "application/json", "gz": "application/gzip"}


class ExportOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = (
            "id",
            "release",
            "status",
            "progress",
            "bundle_digest",
            "pdf_sha256",
            "bundle_sha256",
            "pdf_bytes",
            "predictions_sha256",
            "predictions_bytes",
            "checkpoint",
            "failure_code",
            "failure_reason",
            "created_at",
            "finished_at",
        )

    def get_progress(self, export: Export) -> dict:
        return {"stage": export.progress_stage, "percent": export.progress_percent}


class ReleaseExports(generics.ListAPIView):
    """A release's exports. Officers POST to build a new signed dossier + bundle + predictions file (202, built
    by a worker)."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = (Role.OFFICER,)
    serializer_class = ExportOutput

    def get_queryset(self):
        pk = self.kwargs["pk"]
        access_read(
            actor=self.request.user,
            request=self.request,
            what=f"exports of release {pk}",
            object_id=pk,
            read=lambda: generics.get_object_or_404(releases_visible_to(self.request.user), pk=pk),
        )
        return exports_visible_to(self.request.user).filter(release_id=pk)

    @extend_schema(request=None, responses={202: ExportOutput})
    def post(self, request, pk: int):
        export = export_request(actor=request.user, release_id=pk)
        export.refresh_from_db()
        return Response(ExportOutput(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetail(generics.RetrieveAPIView):
    permission_classes = [HasRole]
    allowed_roles = READERS
    serializer_class = ExportOutput

    def get_queryset(self):
        return exports_visible_to(self.request.user)

    def get_object(self):
        # Recorded after the lookup: a refused read (404) is access.denied, only a successful one access.viewed.
        pk = self.kwargs["pk"]
        return access_read(
            actor=self.request.user,
            request=self.request,
            what=f"export {pk}",
            object_id=pk,
            read=super().get_object,
            release_id=lambda: export_release_id(pk),
        )


class ExportDownload(APIView):
    permission_classes = [HasRole]
    allowed_roles = READERS

    @extend_schema(
        operation_id="exports_download",
        parameters=[
            OpenApiParameter(
                "part",
                str,
                OpenApiParameter.PATH,
                enum=list(EXPORT_PARTS),
                description=(
                    "dossier: the signed PDF; bundle: the signed evidence bundle (JSON); predictions: every "
                    "example's predictions by both models (gzip CSV, sha256 in the bundle; 409 when the release "
                    "had no comparison)."
                ),
            )
        ],
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/gzip"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request, pk: int, part: str):
        try:
            # export_open records a successful download as access.downloaded.
            path, name = export_open(actor=request.user, export_id=pk, part=part)
        except NotFound:
            access_refusal_record(
                actor=request.user, request=request, release_id=export_release_id(pk), what=f"export {pk} {part}"
            )
            raise
        content_type = CONTENT_TYPES[name.rsplit(".", 1)[-1]]
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=f"release-export-{pk}-{name}", content_type=content_type
        )


class VerifyInput(serializers.Serializer):
    file = serializers.FileField(help_text="dossier.pdf or bundle.dsse.json")
    predictions = serializers.FileField(
        required=False, help_text="Optional, with a bundle: predictions.csv.gz, checked against the bundle's sha256."
    )


class ExportVerify(APIView):
    """Upload a dossier PDF or a bundle envelope (and, with a bundle, optionally the predictions file); get
    signer, signing time, integrity and trust, and whether the predictions file is the one the bundle records."""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.REGULATOR, Role.ENGINEER)
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(request={"multipart/form-data": VerifyInput}, responses={200: dict})
    def post(self, request):
        from django.conf import settings

        data = VerifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        uploads = {k: data.validated_data.get(k) for k in ("file", "predictions")}
        for field, upload in uploads.items():
            if upload is not None and upload.size > settings.SAFESHRINK["MAX_UPLOAD_BYTES"]:
                raise ValidationFailed("The file is larger than the upload limit.", details={field: ["Too large."]})
        predictions = uploads["predictions"].read() if uploads["predictions"] is not None else None
        return Response(export_verify(uploads["file"].read(), predictions).as_dict())


class GrantInput(serializers.Serializer):
    regulator = serializers.IntegerField()
    days = serializers.IntegerField(min_value=1, max_value=366)
    reason = serializers.CharField(max_length=2000)


class ReleaseGrant(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(request=GrantInput, responses={201: dict})
    def post(self, request, pk: int):
        data = GrantInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        grant = regulator_grant(
            actor=request.user, regulator_id=v["regulator"], release_id=pk, days=v["days"], reason=v["reason"]
        )
        return Response(
            {"id": grant.pk, "regulator": grant.regulator_id, "release": pk, "valid_until": grant.valid_until},
            status=status.HTTP_201_CREATED,
        )


class GrantRevoke(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, pk: int):
        grant = regulator_grant_revoke(actor=request.user, grant_id=pk)
        return Response({"id": grant.pk, "revoked_at": grant.revoked_at})
