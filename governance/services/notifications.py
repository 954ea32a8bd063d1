"""Notifications: email (Django's email backend) and HMAC-signed webhooks with retries."""

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from governance.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from ledger.services import ledger_append

MAX_ATTEMPTS = 5


def signature(secret: str, body: bytes) -> str:
    """The X-SafeShrink-Signature header: hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notify(*, event: str, payload: dict, recipients: list[User] | None = None, subject: str | None = None) -> None:
    """Queue webhooks for subscribed endpoints and email the recipients, after the caller commits."""
    deliveries = [
        WebhookDelivery(endpoint=endpoint, event=event, payload=payload)
        for endpoint in WebhookEndpoint.objects.filter(active=True)
        if not endpoint.events or event in endpoint.events
    ]
    created = WebhookDelivery.objects.bulk_create(deliveries)
    addresses = sorted({u.email for u in recipients or [] if u.email})

    def send() -> None:
        from governance.tasks import deliver_webhook

        for delivery in created:
            deliver_webhook.delay(delivery.pk)
        if addresses:
            send_mail(
                subject or f"[SafeShrink] {event}",
                json.dumps(payload, indent=2, default=str),
                settings.DEFAULT_FROM_EMAIL,
                addresses,
                fail_silently=True,
            )

    transaction.on_commit(send)


def webhook_deliver(*, delivery_id: int) -> bool:
    """POST one delivery. Returns True when done (delivered or given up), False to retry."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery_id)
        if delivery.status != DeliveryStatus.PENDING:
            return True
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
    body = json.dumps(
        {"event": delivery.event, "payload": delivery.payload}, sort_keys=True, separators=(",", ":")
    ).encode()
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-SafeShrink-Event": delivery.event,
            "X-SafeShrink-Delivery": str(delivery.pk),
            "X-SafeShrink-Signature": signature(delivery.endpoint.secret, body),
        },
    )
    error = ""
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            ok = 200 <= response.status < 300
            error = "" if ok else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        ok, error = False, str(exc)[:500]
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        if ok:
            delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, timezone.now(), ""
        else:
            delivery.last_error = error
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
        delivery.save(update_fields=["status", "delivered_at", "last_error"])
        if delivery.status != DeliveryStatus.PENDING:
            ledger_append(
                actor=None,
                action="webhook.delivered" if ok else "webhook.failed",
                object_type="webhook_delivery",
                object_id=delivery.pk,
                payload={"event": delivery.event, "attempts": delivery.attempts, "error": error},
            )
    return delivery.status != DeliveryStatus.PENDING
