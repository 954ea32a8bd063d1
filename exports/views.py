"""Web actions for exports and regulator grants (the release page, in governance, shows them)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from accounts.errors import DomainError
from exports.services.exports import export_request, regulator_grant


@login_required
@require_http_methods(["POST"])
def export_create(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        export = export_request(actor=request.user, release_id=pk)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Export {export.pk} queued: the signed dossier and bundle appear below when ready.")
    return redirect("web:release", pk=pk)


@login_required
@require_http_methods(["POST"])
def grant_create(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        regulator_grant(actor=request.user, regulator_id=int(request.POST.get("regulator") or 0), release_id=pk,
                        days=int(request.POST.get("days") or 0), reason=request.POST.get("reason", ""))
    except (DomainError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
    else:
        messages.success(request, "Regulator access granted.")
    return redirect("web:release", pk=pk)
