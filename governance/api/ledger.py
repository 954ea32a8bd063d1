from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.filters import Filter, apply_filters, filter_values
from accounts.api.permissions import HasRole
from accounts.errors import ValidationFailed
from accounts.models import Role
from ledger.actions import ACTIONS
from ledger.models import LedgerEvent
from ledger.verification import ledger_verify


class LedgerEventOutput(serializers.ModelSerializer):
    class Meta:
        model = LedgerEvent
        fields = (
            "seq",
            "occurred_at",
            "actor_id",
            "actor_username",
            "actor_role",
            "action",
            "object_type",
            "object_id",
            "payload_json",
            "state_digest",
            "prev_hash",
            "hash",
        )


# Every object_type the code writes (tests/governance/test_refusals.py checks the source against this list,
# so a new one cannot be added without being filterable).
LEDGER_OBJECT_TYPES = (
    "artifact",
    "comparison",
    "compression_run",
    "endpoint",
    "engineer_key",
    "escalation",
    "evaluation_run",
    "experiment",
    "export",
    "external_run",
    "incident",
    "policy",
    "registered_model",
    "regulator_access",
    "release",
    "review_task",
    "suite_import",
    "suite_version",
    "taxonomy",
    "user",
    "webhook_delivery",
)


class LedgerEventList(generics.ListAPIView):
    """Ledger events in sequence order. Filters: ?action=… (one of the ledger's actions), ?actor=… (username),
    ?object_type=…, ?object_id=…, ?since=… and ?until=… (ISO 8601 date or date-time, UTC if no offset:
    since <= occurred_at < until). A bad value is a 400 naming the parameter (and the allowed values)."""

    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)
    serializer_class = LedgerEventOutput
    filters = (
        Filter.choice("action", sorted(ACTIONS), description="Events with this action."),
        Filter.str(
            "actor",
            field="actor_username",
            max_length=150,
            description='Events by this username ("system" for the system\'s own events).',
        ),
        Filter.choice("object_type", LEDGER_OBJECT_TYPES, description="Events about this kind of object."),
        Filter.str("object_id", max_length=64, description="Events about this object id (with object_type)."),
        Filter.date("since", field="occurred_at__gte", description="Events at or after this time (ISO 8601)."),
        Filter.date("until", field="occurred_at__lt", description="Events before this time (ISO 8601)."),
    )

    def get_queryset(self):
        values = filter_values(self)
        if "since" in values and "until" in values and values["since"] >= values["until"]:
            raise ValidationFailed(
                "Query parameter 'until' must be later than 'since'.",
                details={"until": ["Must be later than since."], "since": ["Must be earlier than until."]},
            )
        return apply_filters(self, LedgerEvent.objects.order_by("seq"))


class LedgerVerify(APIView):
    permission_classes = [HasRole]
    allowed_roles = (Role.OFFICER,)

    @extend_schema(responses={200: dict})
    def get(self, request):
        result = ledger_verify()
        return Response(
            {
                "ok": result.ok,
                "checked": result.checked,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "first_bad_seq": result.first_bad_seq,
                "reason": result.reason,
            }
        )
