"""The web's error pages (templates/400.html, 403.html, 404.html, 500.html), the same under every settings module.

- 403 and 404 use Django's own handlers (`permission_denied`, `page_not_found`) with our templates.
- `server_error` (handler500) renders 500.html without a request context (a context processor may be what
  failed) and falls back to a plain page if even that fails (a broken URLconf, a missing static manifest).
- `ErrorPagesMiddleware` keeps the friendly 403/404 pages under DEBUG=True (`make run`'s local settings):
  Django would otherwise answer a 404 with its technical page, which lists every URL pattern. Only 403 and
  404: a 500 (and a SuspiciousOperation's 400) under DEBUG stays Django's technical page with the traceback,
  on purpose, for developers. It also turns a `DomainError` that escapes a web view into its status with a
  page in words instead of a 500. The API (/api/, its own error model in `accounts.middleware`) and the MLflow
  protocol (/mlflow/, MLflow's error format) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.urls import Resolver404, get_resolver

from accounts.errors import DomainError

# Paths with an error format of their own (JSON error model, MLflow's); no HTML error page there.
OWN_ERROR_FORMAT = ("/api/", "/mlflow/")

FALLBACK_500 = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Server error · SafeShrink</title></head>'
    "<body><h1>Something went wrong on our side</h1><p>SafeShrink could not complete this request. Nothing you "
    'did caused it; the error has been logged. <a href="/">Back to the dashboard</a>.</p></body></html>'
)


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """handler500: 500.html rendered with no request context (nothing that may have failed runs again)."""
    try:
        body = loader.get_template(template_name).render()
    except Exception:  # the page of last resort must not fail
        body = FALLBACK_500
    return HttpResponseServerError(body)


def _handler(request: HttpRequest, status: int) -> Callable[..., HttpResponse]:
    return get_resolver(getattr(request, "urlconf", None)).resolve_error_handler(status)


def _own_error_format(request: HttpRequest) -> bool:
    return request.path_info.startswith(OWN_ERROR_FORMAT)


class ErrorPagesMiddleware:
    """Friendly 403/404 pages for the web under DEBUG too; a DomainError escaping a web view becomes its status
    with a page in words. Placed after the authentication and message middleware (the pages show the
    signed-in user's navigation) and inside CommonMiddleware (APPEND_SLASH still redirects a 404)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Django renders an unknown URL's 404 before any view middleware runs; under DEBUG that page is the
        # technical one with the URL list, so the path is resolved here first.
        if settings.DEBUG and not _own_error_format(request):
            try:
                get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
            except Resolver404 as exc:
                return _handler(request, 404)(request, exception=exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if _own_error_format(request):
            return None
        if isinstance(exception, DomainError):
            return self._domain_error(request, exception)
        if not settings.DEBUG:
            return None  # Django's handlers render the same pages
        if isinstance(exception, Http404):
            return _handler(request, 404)(request, exception=exception)
        if isinstance(exception, PermissionDenied):
            return _handler(request, 403)(request, exception=exception)
        return None

    @staticmethod
    def _domain_error(request: HttpRequest, error: DomainError) -> HttpResponse:
        if error.status == 404:
            return _handler(request, 404)(request, exception=Http404(error.message))
        if error.status == 403:
            return _handler(request, 403)(request, exception=PermissionDenied(error.message))
        return render(request, "400.html", {"message": error.message, "status": error.status}, status=error.status)
