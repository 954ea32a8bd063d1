"""REST endpoints for resumable model uploads (compression/services/uploads.py says how they work).

POST /api/uploads/                    declare the folder's files -> 201, the upload
GET  /api/uploads/?status=open&manifest_digest=...   find one to resume
GET  /api/uploads/{id}/               bytes received per file
PUT  /api/uploads/{id}/chunks/?path=&offset=&sha256=   raw bytes (application/octet-stream)
POST /api/uploads/{id}/finish/        digest checks, then the artifact
POST /api/uploads/{id}/abort/         remove its bytes
"""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters
from accounts.api.permissions import HasRole
from accounts.api.schema import AutoSchema
from accounts.error_codes import AccountsErrorCode
from accounts.errors import DomainError, ValidationFailed
from accounts.models import Role
from compression.models import ArtifactUpload, UploadStatus
from compression.services import uploads as service

from .serializers import ArtifactOutput

SHA256 = r"^[0-9a-fA-F]{64}$"
SHA256_PATTERN = re.compile(SHA256)
MAX_OFFSET = 2**63 - 1


class DeclaredFileInput(serializers.Serializer):
    path = serializers.CharField(
        max_length=service.MAX_PATH_CHARS,
        trim_whitespace=False,
        help_text="Relative POSIX path inside the model folder ('tokenizer/vocab.txt'): no '..', no leading '/'.",
    )
    size = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET)
    sha256 = serializers.RegexField(
        SHA256, required=False, allow_blank=True, help_text="Of the whole file; or give it in the finish manifest."
    )
    type = serializers.CharField(
        max_length=32, required=False, default="file", help_text="Only 'file': links ('symlink', ...) are refused."
    )
    target = serializers.CharField(required=False, help_text="A link's target: refused, never followed.")


class ManifestFileInput(serializers.Serializer):
    path = serializers.CharField(max_length=service.MAX_PATH_CHARS, trim_whitespace=False)
    size = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET)
    sha256 = serializers.RegexField(SHA256)


class UploadCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="Name of the artifact it becomes.")
    parent = serializers.IntegerField(required=False, allow_null=True, help_text="The artifact it derives from.")
    files = DeclaredFileInput(many=True, allow_empty=False)


class UploadFinishInput(serializers.Serializer):
    files = ManifestFileInput(
        many=True,
        required=False,
        help_text="The manifest [{path, size, sha256}] of every declared file; needed when sha256 was not "
        "declared at creation, checked against the declared files when it was.",
    )


class UploadFileOutput(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField(help_text="Declared sha256 ('' until the finish manifest gives it).")
    received = serializers.IntegerField(help_text="Bytes received from the start; the next chunk starts here.")


class UploadOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    received_bytes = serializers.SerializerMethodField()
    chunk_bytes = serializers.SerializerMethodField(help_text="The largest chunk one PUT may carry.")
    expires_at = serializers.SerializerMethodField(help_text="When it is removed unless a chunk arrives first.")
    files = UploadFileOutput(many=True, read_only=True)
    artifact = ArtifactOutput(read_only=True, allow_null=True)

    class Meta:
        model = ArtifactUpload
        fields = (
            "id",
            "url",
            "name",
            "parent",
            "status",
            "total_bytes",
            "received_bytes",
            "manifest_digest",
            "chunk_bytes",
            "files",
            "artifact",
            "failure_code",
            "failure_reason",
            "created_at",
            "expires_at",
            "finished_at",
        )

    def get_url(self, upload: ArtifactUpload) -> str:
        return reverse("upload-detail", args=[upload.pk], request=self.context.get("request"))

    def get_received_bytes(self, upload: ArtifactUpload) -> int:
        return sum(f.received for f in upload.files.all())

    def get_chunk_bytes(self, upload: ArtifactUpload) -> int:
        return service.chunk_limit()

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_expires_at(self, upload: ArtifactUpload):
        moment = service.upload_expires_at(upload)
        return moment.isoformat() if moment else None


class UploadSummaryOutput(UploadOutput):
    """An upload as a list row: without its files, and its artifact by id."""

    artifact = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta(UploadOutput.Meta):
        fields = tuple(f for f in UploadOutput.Meta.fields if f not in ("files", "received_bytes"))


class RawBytesParser(BaseParser):
    """Declares application/octet-stream; the view reads the body itself, in pieces (never parsed whole)."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


ENGINEERS = (Role.ENGINEER,)


def _body(request, upload: ArtifactUpload) -> Response:
    return Response(UploadOutput(upload, context={"request": request}).data)


class UploadListCreate(generics.ListAPIView):
    """Your uploads, newest first (rows without their files). POST declares a model folder's files and opens
    an upload; a client resumes one by finding it with ?status=open&manifest_digest=<digest>."""

    permission_classes = [HasRole]
    allowed_roles = ENGINEERS
    serializer_class = UploadSummaryOutput
    filters = (
        Filter.choice("status", UploadStatus),
        Filter.str(
            "manifest_digest",
            max_length=64,
            description="Uploads whose declared manifest has this digest (the artifact's digest to be).",
        ),
    )

    def get_queryset(self):
        return apply_filters(self, service.uploads_visible_to(self.request.user))

    @extend_schema(request=UploadCreateInput, responses={201: UploadOutput})
    def post(self, request):
        data = UploadCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        upload = service.upload_create(actor=request.user, name=v["name"], files=v["files"], parent_id=v.get("parent"))
        body = UploadOutput(upload, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


class UploadDetail(generics.RetrieveAPIView):
    """An upload and, per file, how many bytes arrived: resume each file at its `received`."""

    permission_classes = [HasRole]
    allowed_roles = ENGINEERS
    serializer_class = UploadOutput

    def get_queryset(self):
        return service.uploads_visible_to(self.request.user).prefetch_related("files")


def _query_int(request, name: str) -> int:
    raw = request.query_params.get(name)
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_OFFSET:
        raise ValidationFailed(
            f"Query parameter {name} must be a byte offset (a whole number from 0).",
            details={name: ["A whole number from 0."]},
        )
    return int(raw)


def _query_str(request, name: str, *, pattern=None, problem: str) -> str:
    raw = request.query_params.get(name)
    if not raw or (pattern is not None and not pattern.fullmatch(raw)):
        raise ValidationFailed(f"Query parameter {name}: {problem}", details={name: [problem]})
    return raw


class RawBodySchema(AutoSchema):
    """The chunk's bytes are the whole body, so the body is required (drf-spectacular marks a body required
    only for serializers with required fields)."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body:
            body["required"] = True
        return body


class UploadChunk(APIView):
    """Send one chunk of one file: the raw bytes as the body (application/octet-stream, with Content-Length),
    the file's `path`, the chunk's `offset` (where the file's received bytes end) and its `sha256` in the
    query. 200 with the file's new `received`. 409 `chunk_offset` when the offset is not where the received
    bytes end (ask the upload's status, resume from there); 400 `chunk_digest_mismatch` when the bytes do not
    hash to `sha256` (nothing is kept); 413 for a chunk over `chunk_bytes`."""

    permission_classes = [HasRole]
    allowed_roles = ENGINEERS
    parser_classes = [RawBytesParser]
    schema = RawBodySchema()

    @extend_schema(
        request={"application/octet-stream": {"type": "string", "format": "binary", "minLength": 1}},
        parameters=[
            OpenApiParameter(
                "path",
                {"type": "string", "minLength": 1, "maxLength": service.MAX_PATH_CHARS},
                OpenApiParameter.QUERY,
                required=True,
                description="The declared path of the file the chunk belongs to.",
            ),
            OpenApiParameter(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                OpenApiParameter.QUERY,
                required=True,
                description="Byte offset of the chunk in the file: where its received bytes end.",
            ),
            OpenApiParameter(
                "sha256",
                {"type": "string", "pattern": SHA256},
                OpenApiParameter.QUERY,
                required=True,
                description="sha256 (hex) of the chunk's bytes.",
            ),
        ],
        responses={200: UploadFileOutput},
    )
    def put(self, request, pk: int):
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type != RawBytesParser.media_type:
            raise _UnsupportedMediaType(content_type)
        path = _query_str(request, "path", problem="The declared path of the file this chunk belongs to.")
        offset = _query_int(request, "offset")
        sha256 = _query_str(request, "sha256", pattern=SHA256_PATTERN, problem="64 hex digits.").lower()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        try:
            row = service.upload_chunk_receive(
                actor=request.user,
                upload_id=pk,
                path=path,
                offset=offset,
                sha256=sha256,
                length=length,
                body=request.stream,  # the WSGI request, read in pieces (never request.body)
            )
        except DomainError:
            _drain(request, length)
            raise
        return Response(UploadFileOutput(row).data)


def _drain(request, length: int) -> None:
    """Read what is left of a refused chunk (up to the chunk limit) before answering: a server that closes
    the connection on unread bytes makes the client's kernel drop the answer and report a reset instead."""
    if request.stream is None or length > service.chunk_limit():
        return
    while request.stream.read(service.PIECE):
        pass


class _UnsupportedMediaType(DomainError):
    status = 415
    code = AccountsErrorCode.UNSUPPORTED_MEDIA_TYPE

    def __init__(self, content_type: str):
        super().__init__(
            f"A chunk is sent as application/octet-stream, not {content_type or 'without a content type'}.",
            details={"Content-Type": ["application/octet-stream"]},
        )


class UploadFinish(APIView):
    """Finish: every file's bytes are checked against its sha256 and the folder is stored as an artifact
    (`artifact` in the answer). 409 `upload_incomplete` while bytes are missing; 400 `manifest_mismatch`
    naming each file whose bytes do not match (they are dropped: send them again)."""

    permission_classes = [HasRole]
    allowed_roles = ENGINEERS

    @extend_schema(request=UploadFinishInput, responses={200: UploadOutput})
    def post(self, request, pk: int):
        data = UploadFinishInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = service.upload_finish(actor=request.user, upload_id=pk, files=data.validated_data.get("files"))
        return _body(request, upload)


class UploadAbort(APIView):
    """Abort an open upload: its bytes are removed (aborting again gives the same answer)."""

    permission_classes = [HasRole]
    allowed_roles = ENGINEERS

    @extend_schema(request=None, responses={200: UploadOutput})
    def post(self, request, pk: int):
        return _body(request, service.upload_abort(actor=request.user, upload_id=pk))
