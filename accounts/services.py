import datetime as dt
import logging
import threading
import time

from django.db import transaction

from accounts.errors import ValidationFailed
from accounts.models import Role, User
from ledger.services import ledger_append


def user_create(*, actor, username: str, role: str, password: str, email: str = "", is_superuser: bool = False) -> User:
    if role not in Role.values:
        raise ValidationFailed("Unknown role.", details={"role": [f"One of {Role.values}."]})
    if User.objects.filter(username=username).exists():
        raise ValidationFailed("That username is taken.", details={"username": ["Already exists."]})
    with transaction.atomic():
        user = User.objects.create_user(
            username=username,
            password=password,
            email=email,
            role=role,
            is_staff=is_superuser,
            is_superuser=is_superuser,
        )
        ledger_append(
            actor=actor,
            action="user.created",
            object_type="user",
            object_id=user.pk,
            payload={"username": username, "role": role},
        )
    return user


# --- Refusals by the permission layer (ARCHITECTURE.md, "Authorisation") ---------------------------------------

logger = logging.getLogger(__name__)
_MAX_PATH = 512  # a refused path is recorded, not an arbitrary amount of client-chosen text


def access_denied_record(
    *, actor, method: str, path: str, reason: str, message: str = "", object_type: str = "endpoint", object_id=None
) -> None:
    """Record one refusal of a signed-in user as `access.denied` (role, method, path, reason), in its own
    transaction: the refused request changed nothing, and its record must not depend on anything else."""
    path = path[:_MAX_PATH]
    with transaction.atomic():
        ledger_append(
            actor=actor,
            action="access.denied",
            object_type=object_type,
            object_id=str(object_id if object_id is not None else path)[:64],
            payload={
                "role": getattr(actor, "role", ""),
                "method": method,
                "path": path,
                "reason": reason,
                "message": message,
            },
        )


# Anonymous refusals are counted, not recorded one by one: anyone can send them, so one ledger event each
# would let an anonymous client grow the ledger (and its sealing work) without limit. Each refusal adds one
# to a counter in Django's cache for the current window; the first anonymous refusal a process sees after
# a window it counted in has closed writes that window's total as ONE `access.denied_anonymous` event.
# The window claim (cache.add) makes that one event per window with a shared cache (Redis), and one per
# window per web process with a per-process cache (LocMem, the embedded default); either way the counts add up.
_ANON_KEY = "safeshrink:access-denied-anonymous:{window}"
_anon_lock = threading.Lock()
_anon_pending: set[int] = set()  # windows this process has counted into and not yet flushed


def _now() -> float:
    return time.time()


def _window_seconds() -> int:
    from django.conf import settings

    return max(1, int(settings.SAFESHRINK.get("ANONYMOUS_REFUSAL_WINDOW_SECONDS", 300)))


def anonymous_refusal_count(*, method: str, path: str) -> int:
    """Count one refused anonymous request; returns the count of the current window so far. Writes at
    most one ledger event (the summary of an earlier, closed window), never one per request."""
    from django.core.cache import cache

    seconds = _window_seconds()
    window = int(_now() // seconds)
    key = _ANON_KEY.format(window=window)
    cache.add(key, 0, timeout=seconds * 4)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=seconds * 4)
        count = 1
    with _anon_lock:
        _anon_pending.add(window)
    anonymous_refusals_flush(before=window)
    return count


def anonymous_refusals_flush(*, before: int | None = None) -> int:
    """Write one `access.denied_anonymous` event for each closed window (< `before`, default: the current
    one) this process counted into. Returns how many events it wrote."""
    from django.core.cache import cache

    seconds = _window_seconds()
    if before is None:
        before = int(_now() // seconds)
    with _anon_lock:
        due = sorted(w for w in _anon_pending if w < before)
        _anon_pending.difference_update(due)
    written = 0
    for window in due:
        key = _ANON_KEY.format(window=window)
        if not cache.add(f"{key}:flushed", 1, timeout=seconds * 4):
            continue  # another process wrote this window's summary (shared cache)
        count = cache.get(key) or 0
        cache.delete(key)
        if not count:
            continue
        start = dt.datetime.fromtimestamp(window * seconds, tz=dt.UTC)
        try:
            with transaction.atomic():
                ledger_append(
                    actor=None,
                    action="access.denied_anonymous",
                    object_type="endpoint",
                    object_id=start.isoformat(),
                    payload={
                        "count": count,
                        "window_start": start.isoformat(),
                        "window_end": (start + dt.timedelta(seconds=seconds)).isoformat(),
                        "window_seconds": seconds,
                        "status": 401,
                    },
                )
        except Exception:  # noqa: BLE001 - the refused request still gets its 401; the next flush retries
            logger.exception("could not record %s anonymous refusals of window %s; will retry", count, start)
            cache.add(key, 0, timeout=seconds * 4)
            cache.incr(key, count)
            cache.delete(f"{key}:flushed")
            with _anon_lock:
                _anon_pending.add(window)
            continue
        written += 1
    return written
