"""Test settings: the database and broker come from DATABASE_URL / CELERY_BROKER_URL when set."""

from .base import *  # noqa: F403
from .base import SAFESHRINK, VAR_DIR, env

SECRET_KEY = "test-only-insecure-key-0123456789-0123456789-0123456789"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tasks run inline in the test process; a real worker started by a test sets SAFESHRINK_TASKS_EAGER=false
# (an eager worker would run chain links inline and drop the rest of the chain).
CELERY_TASK_ALWAYS_EAGER = env.bool("SAFESHRINK_TASKS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
SAFESHRINK = {**SAFESHRINK, "ARTIFACT_ROOT": env.path("SAFESHRINK_ARTIFACT_ROOT", default=VAR_DIR / "test-artifacts")}
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
