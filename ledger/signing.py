"""The system's Ed25519 key, loaded from the configured paths (see `setup_signing`)."""

import functools
from pathlib import Path

from django.conf import settings

from trust import keys


class SigningKeyMissing(RuntimeError):
    """The system key is not configured; run `python manage.py setup_signing`."""


@functools.cache
def _private(path: str):
    return keys.load_private(path)


@functools.cache
def _public(path: str):
    return keys.load_public(path)


def system_private_key():
    path = Path(settings.SAFESHRINK["SYSTEM_KEY"])
    if not path.is_file():
        raise SigningKeyMissing(f"No system key at {path}: run `python manage.py setup_signing`.")
    return _private(str(path))


def system_public_key():
    path = Path(settings.SAFESHRINK["SYSTEM_PUBLIC_KEY"])
    if not path.is_file():
        raise SigningKeyMissing(f"No system public key at {path}: run `python manage.py setup_signing`.")
    return _public(str(path))


def system_key_available() -> bool:
    return Path(settings.SAFESHRINK["SYSTEM_KEY"]).is_file()
