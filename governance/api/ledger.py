from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import HasRole
from accounts.models import Role
from ledger.models import LedgerEvent
from ledger.services import ledger_verify


class LedgerEventOutput(serializers.ModelSerializer):
    class Meta:
        model = LedgerEvent
        fields = ("seq", "occurred_at", "actor_id", "actor_username", "actor_role", "action", "object_type",
                  "object_id", "payload_json", "state_digest", "prev_hash", "hash")


class LedgerEventList(generics.ListAPIView):
    """Ledger events in sequence order; filter with ?action=…&object_type=…&object_id=…"""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)
    serializer_class = LedgerEventOutput

    def get_queryset(self):
        qs = LedgerEvent.objects.order_by("seq")
        for field in ("action", "object_type", "object_id"):
            if value := self.request.query_params.get(field):
                qs = qs.filter(**{field: value})
        return qs


class LedgerVerify(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(responses={200: dict})
    def get(self, request):
        result = ledger_verify()
        return Response({"ok": result.ok, "checked": result.checked, "head_seq": result.head_seq,
                         "head_hash": result.head_hash, "first_bad_seq": result.first_bad_seq,
                         "reason": result.reason})
