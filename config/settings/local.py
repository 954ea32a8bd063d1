"""The embedded default: SQLite and kombu's filesystem broker, no server needed."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-use-in-production-0123456789")
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
