"""Export endpoints: request, status, download (each download is a ledger event), verify, grants."""

from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.errors import ValidationFailed
from accounts.models import Role
from exports.models import Export
from governance.selectors import releases_visible_to
from governance.services.access import access_record
from exports.services.exports import (
    export_open, export_request, export_verify, exports_visible_to, regulator_grant,
    regulator_grant_revoke,
)

READERS = (Role.OFFICER, Role.REGULATOR)


class ExportOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ("id", "release", "status", "progress", "bundle_digest", "pdf_sha256", "bundle_sha256", "pdf_bytes",
                  "checkpoint", "failure_code", "failure_reason", "created_at", "finished_at")

    def get_progress(self, export: Export) -> dict:
        return {"stage": export.progress_stage, "percent": export.progress_percent}


class ReleaseExports(generics.ListAPIView):
    """A release's exports. Officers POST to build a new signed dossier + bundle (202, built by a worker)."""

    permission_classes = [HasRole]
    allowed_roles = READERS
    write_roles = (Role.OFFICER,)
    serializer_class = ExportOutput

    def get_queryset(self):
        generics.get_object_or_404(releases_visible_to(self.request.user), pk=self.kwargs["pk"])
        access_record(actor=self.request.user, what=f"exports of release {self.kwargs['pk']}",
                      object_id=self.kwargs["pk"])
        return exports_visible_to(self.request.user).filter(release_id=self.kwargs["pk"])

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
        access_record(actor=self.request.user, what=f"export {self.kwargs['pk']}", object_id=self.kwargs["pk"])
        return exports_visible_to(self.request.user)


class ExportDownload(APIView):
    permission_classes = [HasRole]
    allowed_roles = READERS

    @extend_schema(operation_id="exports_download", responses={(200, "application/octet-stream"): bytes})
    def get(self, request, pk: int, part: str):
        path, name = export_open(actor=request.user, export_id=pk, part=part)
        content_type = "application/pdf" if name.endswith(".pdf") else "application/json"
        return FileResponse(path.open("rb"), as_attachment=True, filename=f"release-export-{pk}-{name}",
                            content_type=content_type)


class VerifyInput(serializers.Serializer):
    file = serializers.FileField()


class ExportVerify(APIView):
    """Upload a dossier PDF or a bundle envelope; get signer, signing time, integrity and trust."""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER, Role.REGULATOR, Role.ENGINEER)
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(request={"multipart/form-data": VerifyInput}, responses={200: dict})
    def post(self, request):
        data = VerifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        from django.conf import settings

        if upload.size > settings.SAFESHRINK["MAX_UPLOAD_BYTES"]:
            raise ValidationFailed("The file is larger than the upload limit.", details={"file": ["Too large."]})
        return Response(export_verify(upload.read()).as_dict())


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
        grant = regulator_grant(actor=request.user, regulator_id=v["regulator"], release_id=pk, days=v["days"],
                                reason=v["reason"])
        return Response({"id": grant.pk, "regulator": grant.regulator_id, "release": pk,
                         "valid_until": grant.valid_until}, status=status.HTTP_201_CREATED)


class GrantRevoke(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, pk: int):
        grant = regulator_grant_revoke(actor=request.user, grant_id=pk)
        return Response({"id": grant.pk, "revoked_at": grant.revoked_at})
