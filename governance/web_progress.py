"""Live progress on the pages: a release's progress card and the dashboard's "Running now", each rendered inside
its page and, alone, as a fragment that htmx polls (static/js/htmx.min.js, vendored) while something runs. The
pages work without JavaScript: the same partial is in the page and a Refresh link reloads it.

A regulator's reads of a release are ledger events (`access.viewed`), so their progress card does not poll:
polling would write an event every two seconds. They refresh by hand, one recorded read each."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.models import Role
from compression.selectors import runs_visible_to
from governance.models import Release
from governance.progress import release_progress, running_jobs_visible_to
from governance.selectors import releases_visible_to
from governance.services.access import access_read

# Roles that may have jobs to watch (compression runs and evaluations are theirs or in their oversight).
JOB_ROLES = (Role.ENGINEER, Role.OFFICER, Role.ADMIN)


def _fragment_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET only, signed in. A poll whose session has ended gets HX-Refresh (htmx reloads the whole page, which
    then goes to the sign-in page) instead of the sign-in page's HTML swapped into the card."""
    signed_in = login_required(view)

    @wraps(view)
    @require_GET
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated and request.headers.get("HX-Request") == "true":
            return HttpResponse(status=204, headers={"HX-Refresh": "true"})
        return signed_in(request, *args, **kwargs)

    return wrapper


def release_progress_context(user, release: Release, *, fragment: bool = False) -> dict:
    """What templates/governance/_release_progress.html needs."""
    return {
        "progress": release_progress(release),
        "progress_poll": user.role != Role.REGULATOR,
        "progress_fragment": fragment,
        "progress_run_visible": release.compression_run_id is not None
        and runs_visible_to(user).filter(pk=release.compression_run_id).exists(),
    }


def running_context(user, *, fragment: bool = False) -> dict:
    """What templates/governance/_running.html needs; `show_running` is False for roles that have no jobs."""
    show = user.role in JOB_ROLES
    return {
        "running": running_jobs_visible_to(user) if show else [],
        "running_poll": show,
        "running_fragment": fragment and show,
        "show_running": show,
    }


@_fragment_view
def release_progress_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    """The release's progress card alone (what the page's card swaps itself for), scoped as the page is."""
    release = access_read(
        actor=request.user,
        request=request,
        what=f"release progress {pk}",
        object_id=pk,
        read=lambda: get_object_or_404(
            releases_visible_to(request.user).select_related(
                "compression_run", "baseline_evaluation", "candidate_evaluation"
            ),
            pk=pk,
        ),
    )
    context = {"release": release, **release_progress_context(request.user, release, fragment=True)}
    return render(request, "governance/_release_progress.html", context)


@_fragment_view
def running_fragment(request: HttpRequest) -> HttpResponse:
    """The dashboard's "Running now" section alone."""
    return render(request, "governance/_running.html", running_context(request.user, fragment=True))
