"""Web actions for exports and regulator grants (the release page, in governance, shows them)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from accounts.errors import DomainError
from accounts.services import access_denied_record
from exports.services.exports import export_request, regulator_grant


@login_required
@require_http_methods(["POST"])
def export_create(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        export = export_request(actor=request.user, release_id=pk)
    except DomainError as exc:
        _record_refusal(request, exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Export {export.pk} queued: the signed dossier and bundle appear below when ready.")
    return redirect("web:release", pk=pk)


@login_required
@require_http_methods(["POST"])
def grant_create(request: HttpRequest, pk: int) -> HttpResponse:
    regulator, days = _whole_number(request.POST.get("regulator")), _whole_number(request.POST.get("days"))
    if regulator is None or days is None:
        # The form's own fields, refused before the service (which takes integers): said in words, nothing changed.
        messages.error(request, "Choose a regulator." if regulator is None else "Days must be a whole number.")
        return redirect("web:release", pk=pk)
    try:
        regulator_grant(
            actor=request.user,
            regulator_id=regulator,
            release_id=pk,
            days=days,
            reason=request.POST.get("reason", ""),
        )
    except DomainError as exc:
        _record_refusal(request, exc)
        messages.error(request, getattr(exc, "message", str(exc)))
    else:
        messages.success(request, "Regulator access granted.")
    return redirect("web:release", pk=pk)


def _whole_number(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


def _record_refusal(request: HttpRequest, exc: Exception) -> None:
    """A 403 from the service (these services do not record their own refusals) is an access.denied event."""
    if getattr(exc, "status", None) == 403:
        access_denied_record(
            actor=request.user, method=request.method, path=request.path, reason=exc.code, message=exc.message
        )
