"""The embedded default: SQLite and kombu's filesystem broker, no server needed."""

from .base import *  # noqa: F403
from .base import env

# DEBUG stays on for `make run`: runserver serves static/ only with DEBUG (WhiteNoise is in production settings
# only) and developers keep Django's traceback page for a 500. Users still get the friendly 403 and 404 pages,
# not the technical 404 with the URL list: accounts.error_pages.ErrorPagesMiddleware renders them under DEBUG.
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-use-in-production-0123456789")
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
