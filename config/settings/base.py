"""Settings shared by every environment. Values that differ come from environment variables."""

import os
from pathlib import Path

import environ

from config.logging import IMPORT_NOISE_LOGGERS

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# Local state of the embedded default (database, broker, artifacts, keys, logs): one folder.
VAR_DIR = Path(env("SAFESHRINK_VAR_DIR", default=str(BASE_DIR / "var")))

# No network at run time: models and tokenizers load from local folders only.
for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("TRANSFORMERS_VERBOSITY", "error"),
):
    os.environ.setdefault(_name, _value)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    # Domain apps, bottom layer first (see ARCHITECTURE.md).
    "accounts",
    "ledger",
    "compression",
    "evaluations",
    "tracking",
    "governance",
    "exports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # NUL bytes, body size and JSON depth before any view; the error model for every error under /api/.
    "accounts.middleware.ApiGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The web's friendly 403/404 pages also under DEBUG=True (make run), and a DomainError escaping a web view
    # as its status with a page in words (accounts/error_pages.py). After auth/messages: the pages show the nav.
    "accounts.error_pages.ErrorPagesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_config(url: str) -> dict:
    """Parse DATABASE_URL; SQLite takes write locks at BEGIN so ledger appends serialise."""
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] not in ("", ":memory:"):
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config.setdefault("OPTIONS", {})
        config["OPTIONS"].update({"transaction_mode": "IMMEDIATE", "timeout": 30})
    else:
        # Keep each worker's PostgreSQL connection between requests (a new one per request costs a backend
        # fork and the login: bench/ingest.py measured single log_metric calls at ~2x the requests/s with it).
        config.setdefault("CONN_MAX_AGE", env.int("SAFESHRINK_DB_CONN_MAX_AGE", default=60))
        config.setdefault("CONN_HEALTH_CHECKS", True)
    config["ATOMIC_REQUESTS"] = False
    return config


DATABASES = {"default": database_config(env("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'safeshrink.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "accounts.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "accounts.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "accounts.api.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SafeShrink API",
    "DESCRIPTION": "Governance and audit records for model compression that changes safety behaviour.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files: /api/docs/ works without network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request and response components are separate, so input fields carry their own constraints.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api.schema.postprocess_schema",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "compression.models.RunStatus",
        "ReleaseStatusEnum": "governance.models.ReleaseStatus",
        "ComparisonStatusEnum": "evaluations.models.ComparisonStatus",
        "DecisionKindEnum": "governance.models.DecisionKind",
        "RuleKindEnum": "governance.models.RuleKind",
        "SuiteImportStatusEnum": "evaluations.models.SuiteImportStatus",
        "CompressionMethodEnum": "compression.engine.methods.SUPPORTED_METHODS",
        "UploadStatusEnum": "compression.models.UploadStatus",
        "ExternalRunStatusEnum": "tracking.models.ExternalRunStatus",
        "BehaviourEnum": "evaluations.models.Behaviour",
        "ModelKindEnum": "compression.models.ModelKind",
        "SuiteKindEnum": "evaluations.models.SuiteKind",
        "GateZoneEnum": "governance.models.Zone",
        "ProgressStageEnum": "governance.progress.ProgressStage",
        "StageStatusEnum": "governance.progress.StageStatus",
        "ReleaseWarningCodeEnum": "governance.selectors.ReleaseWarningCode",
    },
}

# Celery: acks late + reject on worker loss so a killed worker's job is redelivered;
# tasks are idempotent on their run id, so a redelivery does its work once.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env("SAFESHRINK_BROKER_DIR", default=str(VAR_DIR / "broker")))
    for _folder in ("queue", "processed", "control"):  # kombu needs them to exist
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables live with the broker's data, not in a `control/` folder of the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env.int("SAFESHRINK_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("SAFESHRINK_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Worker pools by hardware class (ARCHITECTURE.md, "Jobs"): `cpu` (the default queue: compression runs, cpu
# evaluations, comparisons, beat's sweeps), `gpu` (evaluations whose profile asks for cuda) and `io` (exports,
# webhooks, suite and model uploads). A worker without -Q consumes cpu and io; a GPU machine runs `-Q gpu`.
# The broker is CELERY_BROKER_URL: filesystem:// (embedded default), redis://, or amqp:// (RabbitMQ).
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_QUEUES = {name: {"exchange": name, "routing_key": name} for name in ("cpu", "io")}
CELERY_TASK_ROUTES = {
    name: {"queue": "io"}
    for name in (
        "exports.build",
        "governance.deliver_webhook",
        "evaluations.import_suite_file",
        "compression.expire_uploads",
    )
}
CELERY_BEAT_SCHEDULE = {
    "requeue-orphaned-runs": {"task": "compression.requeue_orphaned_runs", "schedule": 60.0},
    "seal-ledger": {"task": "ledger.seal", "schedule": 30.0},
    "escalate-overdue": {"task": "governance.escalate_overdue", "schedule": 60.0},
    "reviews-overdue": {"task": "governance.reviews_overdue", "schedule": 300.0},
    "run-due-revalidations": {"task": "governance.run_due_revalidations", "schedule": 300.0},
    # Suite imports whose message was lost (queued or running without a heartbeat past the run lease).
    "requeue-stale-suite-imports": {"task": "evaluations.requeue_stale_suite_imports", "schedule": 300.0},
    # Model uploads abandoned past MODEL_UPLOAD_EXPIRY_SECONDS: bytes removed, upload marked expired.
    "expire-abandoned-uploads": {"task": "compression.expire_uploads", "schedule": 300.0},
    # Recovery from lost work (a killed worker): re-enqueue the missing chunks of evaluation runs
    # whose lease expired, and complete releases still `evaluating` after both runs finished.
    "requeue-orphaned-evaluations": {
        "task": "evaluations.requeue_orphaned_runs",
        "schedule": env.float("SAFESHRINK_SWEEP_SECONDS", default=60.0),
    },
    "complete-stuck-releases": {
        "task": "governance.complete_stuck_releases",
        "schedule": env.float("SAFESHRINK_SWEEP_SECONDS", default=60.0),
    },
}
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="safeshrink@localhost")

# Artifacts: a local content-addressed store on every machine, and, when a bucket is configured, an
# S3-compatible shared storage (django-storages; AWS, MinIO, Ceph, R2 ...) that every store publishes
# to and fetches missing artifacts from, so workers on several machines share them. Credentials come
# from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an instance role, ...).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if env("SAFESHRINK_ARTIFACT_S3_BUCKET", default=""):
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("SAFESHRINK_ARTIFACT_S3_BUCKET"),
            # Empty (compose passes the variables through, set or not) means unset: boto3's own default.
            "endpoint_url": env("SAFESHRINK_ARTIFACT_S3_ENDPOINT_URL", default="") or None,
            "region_name": env("SAFESHRINK_ARTIFACT_S3_REGION", default="") or None,
            "location": env("SAFESHRINK_ARTIFACT_S3_PREFIX", default="artifacts"),
        },
    }

# SafeShrink's own settings.
SAFESHRINK = {
    # Content-addressed artifact store (one folder per manifest digest).
    "ARTIFACT_ROOT": Path(env("SAFESHRINK_ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts"))),
    # The STORAGES alias of the shared artifact storage ("": this machine's store only).
    "ARTIFACT_STORAGE": "artifacts" if "artifacts" in STORAGES else "",
    # Folders on the server from which POST /api/artifacts/ may import a model by path (comma-separated,
    # absolute). Empty by default: the API then refuses every server path. Operators' commands
    # (load_demo, build_teacher) register through the services and are not limited by it.
    "IMPORT_ROOTS": [Path(p) for p in env.list("SAFESHRINK_IMPORT_ROOTS", default=[])],
    # The shared safety data sets (read-only input).
    "DATA_DIR": Path(env("SAFESHRINK_DATA_DIR", default=str(BASE_DIR.parent / "shared" / "data"))),
    # A run whose worker stopped heartbeating this long ago is taken over by the next delivery.
    "RUN_LEASE_SECONDS": env.int("SAFESHRINK_RUN_LEASE_SECONDS", default=600),
    # Period of beat's recovery sweeps (orphaned evaluation chunks, releases stuck in `evaluating`).
    "SWEEP_SECONDS": env.float("SAFESHRINK_SWEEP_SECONDS", default=60.0),
    # Examples per evaluation chunk (one task each).
    "EVAL_CHUNK_SIZE": env.int("SAFESHRINK_EVAL_CHUNK_SIZE", default=2000),
    # A chat model generates each answer token by token (seconds per prompt on a CPU): smaller chunks show progress
    # and let several workers share one evaluation.
    "CHAT_EVAL_CHUNK_SIZE": env.int("SAFESHRINK_CHAT_EVAL_CHUNK_SIZE", default=16),
    # Where `load_demo` builds and caches the demo models.
    "MODEL_CACHE": Path(env("SAFESHRINK_MODEL_CACHE", default=str(VAR_DIR / "models"))),
    "DEVICE": env("SAFESHRINK_DEVICE", default="cpu"),
    # The Celery queue of each device kind ("cuda:1" is kind "cuda"); a device of another kind is refused.
    "DEVICE_QUEUES": {"cpu": "cpu", "cuda": "gpu"},
    # Workers write a heartbeat row (compression.WorkerHeartbeat) on start and every this many seconds;
    # one not seen for WORKER_LIVE_SECONDS is not live (a request for a device only such workers serve is a 400).
    "WORKER_HEARTBEAT_SECONDS": env.float("SAFESHRINK_WORKER_HEARTBEAT_SECONDS", default=30.0),
    "WORKER_LIVE_SECONDS": env.float("SAFESHRINK_WORKER_LIVE_SECONDS", default=90.0),
    # Signing material. `python manage.py setup_signing` creates all of it for the embedded default;
    # production points these at a real key and certificate.
    "SYSTEM_KEY": Path(env("SAFESHRINK_SYSTEM_KEY", default=str(VAR_DIR / "keys" / "system.key.pem"))),
    "SYSTEM_PUBLIC_KEY": Path(env("SAFESHRINK_SYSTEM_PUBLIC_KEY", default=str(VAR_DIR / "keys" / "system.pub.pem"))),
    # OpenSSF model signing (EC P-256 PEM; model_signing signs with no Ed25519 key). Empty: model-signing.key.pem
    # beside SYSTEM_KEY, created on first use (or by setup_signing) when there is none.
    "MODEL_SIGNING_KEY": env("SAFESHRINK_MODEL_SIGNING_KEY", default=""),
    "SIGNING_KEY": Path(env("SAFESHRINK_SIGNING_KEY", default=str(VAR_DIR / "keys" / "ca" / "signer.key.pem"))),
    "SIGNING_CERT": Path(env("SAFESHRINK_SIGNING_CERT", default=str(VAR_DIR / "keys" / "ca" / "signer.pem"))),
    "SIGNING_CHAIN": [
        Path(p) for p in env.list("SAFESHRINK_SIGNING_CHAIN", default=[str(VAR_DIR / "keys" / "ca" / "ca.pem")])
    ],
    "SIGNING_CRLS": [
        Path(p) for p in env.list("SAFESHRINK_SIGNING_CRLS", default=[str(VAR_DIR / "keys" / "ca" / "crl.pem")])
    ],
    "TRUST_ROOTS": [
        Path(p) for p in env.list("SAFESHRINK_TRUST_ROOTS", default=[str(VAR_DIR / "keys" / "ca" / "ca.pem")])
    ],
    "ORGANISATION": env("SAFESHRINK_ORGANISATION", default="SafeShrink (embedded default)"),
    # Who chains committed events: "inline" (the writing process, right after its commit) or "sealer"
    # (a dedicated `manage.py ledger_sealer` process; writers only insert). See ARCHITECTURE.md.
    "LEDGER_SEALING": env.str("SAFESHRINK_LEDGER_SEALING", default="inline"),
    "EXPORT_ROOT": Path(env("SAFESHRINK_EXPORT_ROOT", default=str(VAR_DIR / "exports"))),
    "MAX_UPLOAD_BYTES": env.int("SAFESHRINK_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024),
    # Suite uploads up to this size are also parsed in the request, so a bad row is refused at once (400);
    # every upload is imported on a worker (202 + status URL).
    "IMPORT_CHECK_IN_REQUEST_BYTES": env.int("SAFESHRINK_IMPORT_CHECK_IN_REQUEST_BYTES", default=1024 * 1024),
    # Uploaded suite files wait here for their import on a worker (web and workers must share it).
    "UPLOAD_ROOT": Path(env("SAFESHRINK_UPLOAD_ROOT", default=str(VAR_DIR / "uploads"))),
    # Model uploads (POST /api/uploads/, `safeshrink upload`): resumable and chunked, received under
    # UPLOAD_ROOT/models/ (keep it on the artifact store's volume: finishing is then a rename, not a copy)
    # and stored as a normal content-addressed artifact at finish. The most bytes one upload may declare:
    "MODEL_UPLOAD_MAX_BYTES": env.int("SAFESHRINK_MODEL_UPLOAD_MAX_BYTES", default=8 * 1024**3),
    "MODEL_UPLOAD_MAX_FILES": env.int("SAFESHRINK_MODEL_UPLOAD_MAX_FILES", default=1000),
    # The largest chunk one request may carry (clients send at most this much per PUT).
    "MODEL_UPLOAD_CHUNK_BYTES": env.int("SAFESHRINK_MODEL_UPLOAD_CHUNK_BYTES", default=64 * 1024**2),
    # Open uploads one engineer may hold at once (each may reserve up to MODEL_UPLOAD_MAX_BYTES of disk).
    "MODEL_UPLOAD_MAX_OPEN": env.int("SAFESHRINK_MODEL_UPLOAD_MAX_OPEN", default=4),
    # Artifact formats an upload may be (config.json, and recipe.json's "format" when there is one).
    "MODEL_UPLOAD_FORMATS": env.list(
        "SAFESHRINK_MODEL_UPLOAD_FORMATS",
        default=["hf-dir", "hf-pruned", "torchao-int8", "torchao-int4", "torch-quantized"],
    ),
    # File name endings an uploaded file may have (lower case; anything else is refused when declared).
    "MODEL_UPLOAD_SUFFIXES": env.list(
        "SAFESHRINK_MODEL_UPLOAD_SUFFIXES",
        default=[".json", ".safetensors", ".txt", ".model", ".jinja", ".md", ".pt", ".bin"],
    ),
    # An upload with no chunk (or other change) for this long is abandoned: beat's sweep removes its bytes.
    "MODEL_UPLOAD_EXPIRY_SECONDS": env.int("SAFESHRINK_MODEL_UPLOAD_EXPIRY_SECONDS", default=24 * 3600),
    "TORCH_THREADS": env.int("SAFESHRINK_TORCH_THREADS", default=1),
    # Files logged to external runs through MLflow's artifact routes (/mlflow), one folder per run. Empty: a
    # `mlflow-runs` folder inside ARTIFACT_ROOT (same volume, so registering a model from a run is a local copy).
    "TRACKING_ARTIFACT_ROOT": Path(_t) if (_t := env("SAFESHRINK_TRACKING_ARTIFACT_ROOT", default="")) else None,
    # The largest single file one MLflow artifact upload (PUT) may carry.
    "TRACKING_ARTIFACT_MAX_BYTES": env.int("SAFESHRINK_TRACKING_ARTIFACT_MAX_BYTES", default=8 * 1024**3),
    # Anonymous refusals (401) are counted per window of this many seconds and written as one
    # `access.denied_anonymous` ledger event per window, not one event each (ARCHITECTURE.md, "Authorisation").
    "ANONYMOUS_REFUSAL_WINDOW_SECONDS": env.int("SAFESHRINK_ANONYMOUS_REFUSAL_WINDOW_SECONDS", default=300),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"import_noise": {"()": "config.logging.ImportNoise"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        **{name: {"level": "WARNING"} for name in ("weasyprint", "fontTools", "pyhanko", "httpx")},
        # torchao/triton/pytree import warnings: once, at debug level (config/logging.py).
        **{name: {"filters": ["import_noise"]} for name in IMPORT_NOISE_LOGGERS},
    },
}
