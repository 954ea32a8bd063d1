from django.conf import settings
from django.db import models

from compression.engine.formats import (
    FORMAT_HF_DIR,
    FORMAT_HF_PRUNED,
    FORMAT_JUDGE_RULES,
    FORMAT_TORCH_QUANTIZED,
    FORMAT_TORCHAO_INT4,
    FORMAT_TORCHAO_INT8,
)
from compression.engine.kinds import MODEL_KIND_CHAT, MODEL_KIND_CLASSIFIER, MODEL_KIND_JUDGE


class ArtifactFormat(models.TextChoices):
    HF_DIR = FORMAT_HF_DIR, "Hugging Face directory"
    TORCH_QUANTIZED = FORMAT_TORCH_QUANTIZED, "PyTorch quantized state dict + recipe"
    HF_PRUNED = FORMAT_HF_PRUNED, "Hugging Face directory + structured-pruning recipe"
    TORCHAO_INT8 = FORMAT_TORCHAO_INT8, "torchao int8 weight-only + recipe"
    TORCHAO_INT4 = FORMAT_TORCHAO_INT4, "torchao int4 weight-only (int4 values in int8 containers) + recipe"
    JUDGE_RULES = FORMAT_JUDGE_RULES, "A judge defined by rules in judge.json (no weights)"


class ModelKind(models.TextChoices):
    """What an artifact is (compression.engine.kinds decides from its files when it is registered)."""

    CLASSIFIER = MODEL_KIND_CLASSIFIER, "Text classifier"
    CHAT = MODEL_KIND_CHAT, "Chat model (causal language model)"
    JUDGE = MODEL_KIND_JUDGE, "Judge of chat-model answers"


class SignatureStatus(models.TextChoices):
    NONE = "none", "No model-signing signature (model.sig) in the folder"
    VERIFIED = "verified", "Verified under a public key the registering user registered"
    FAILED = "failed", "Carried a signature that did not verify"


class ModelArtifact(models.Model):
    """An immutable set of model files, identified by the sha256 of its canonical manifest."""

    name = models.CharField(max_length=200)
    digest = models.CharField(max_length=64, unique=True)
    format = models.CharField(max_length=32, choices=ArtifactFormat.choices)
    kind = models.CharField(max_length=16, choices=ModelKind.choices, default=ModelKind.CLASSIFIER)
    chat_template_digest = models.CharField(
        max_length=64, blank=True, help_text="Chat models: sha256 of the chat template in the folder (empty: none)."
    )
    size_bytes = models.PositiveBigIntegerField()
    parameter_count = models.PositiveBigIntegerField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    manifest = models.JSONField(help_text="Sorted [{path, sha256, size}] of every file.")
    labels = models.JSONField(default=list, help_text="Class names in the model's output order.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    registrants = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Users who registered these same bytes after the first (same content, same artifact); "
        "each of them may see it.",
    )
    # SafeShrink's own OpenSSF model-signing signature over the files of an artifact it produced (a
    # compression run's output): the bundle `model_signing verify key` checks, kept beside the artifact
    # (not inside: a file added to the folder would change its digest). See compression/services/signatures.py.
    system_signature = models.JSONField(
        null=True, blank=True, help_text="SafeShrink's model-signing bundle (JSON), for artifacts it produced."
    )
    system_signature_key = models.CharField(
        max_length=64, blank=True, help_text="sha256 hex of the PEM of the public key that signed it."
    )
    system_signed_at = models.DateTimeField(null=True, blank=True)
    # A signature the artifact arrived with (model.sig at the folder's top level), checked when registered.
    signature_status = models.CharField(max_length=8, choices=SignatureStatus.choices, default=SignatureStatus.NONE)
    signature_key_id = models.CharField(max_length=64, blank=True, help_text="The registered key that verified it.")
    signature_reason = models.TextField(blank=True, help_text="What the check found (why it failed).")
    signature_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.digest[:12]})"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class Experiment(models.Model):
    """An engineer's attempt to compress a base model for a purpose."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="experiments")
    risk_tier = models.CharField(max_length=8, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    base_artifact = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="experiments")
    unsafe_labels = models.JSONField(default=list, help_text="Model classes whose probabilities sum to 'unsafe'.")
    generation = models.JSONField(
        default=dict,
        blank=True,
        help_text="Chat models: how the base model is served and evaluated (system prompt, max new tokens, stop "
        "strings, chat template digest); part of every evaluation's configuration. Empty for classifiers.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class JobFields(models.Model):
    """Status, progress, lease and timing fields shared by every long-running job."""

    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    progress_stage = models.CharField(max_length=64, blank=True)
    progress_percent = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    wall_seconds = models.FloatField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class CompressionRun(JobFields):
    """One compression method with its parameters and seed, applied to the experiment's base model."""

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="runs")
    method = models.CharField(max_length=64)
    parameters = models.JSONField(default=dict)
    seed = models.IntegerField(default=0)
    device = models.CharField(
        max_length=32,
        blank=True,
        help_text="The requested device ('cpu', 'cuda', 'cuda:1'): the run goes to that device's queue and runs "
        "there. Empty: the default queue, on the worker's own SAFESHRINK_DEVICE.",
    )
    data_source = models.JSONField(
        null=True, blank=True, help_text="Suite version, digests and counts of the calibration/training data."
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    output_artifact = models.ForeignKey(
        ModelArtifact, null=True, blank=True, on_delete=models.PROTECT, related_name="produced_by"
    )
    provenance = models.JSONField(
        null=True, blank=True, help_text="in-toto Statement with an SLSA provenance predicate."
    )
    provenance_envelope = models.JSONField(null=True, blank=True, help_text="The statement signed as a DSSE envelope.")
    rounds = models.JSONField(
        default=list,
        blank=True,
        help_text="behavioural_distill: one record per finished round (training set, accepted and rejected answers, "
        "the student on the held-back split), kept when the run is cancelled or fails later.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} {self.method} ({self.status})"


class UploadStatus(models.TextChoices):
    OPEN = "open", "Open: receiving chunks"
    FINISHING = "finishing", "Finishing: checking digests and storing the artifact"
    COMPLETED = "completed", "Completed: the artifact is stored"
    ABORTED = "aborted", "Aborted by its owner"
    EXPIRED = "expired", "Expired: abandoned, its bytes removed"
    REFUSED = "refused", "Refused at finish, its bytes removed"


class ArtifactUpload(models.Model):
    """A resumable, chunked upload of a model folder by an engineer. Its declared files (UploadFile) are
    received chunk by chunk under UPLOAD_ROOT/models/<key>/ and, at finish, checked against their digests
    and stored as a normal ModelArtifact. Only its owner sees it."""

    key = models.UUIDField(unique=True, editable=False, help_text="Names the upload's folder under UPLOAD_ROOT.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200, help_text="Name of the artifact it becomes.")
    parent = models.ForeignKey(ModelArtifact, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=UploadStatus.choices, default=UploadStatus.OPEN, db_index=True)
    total_bytes = models.PositiveBigIntegerField()
    manifest_digest = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Digest of the declared manifest (the artifact's digest to be) when every file's sha256 was "
        "declared up front; a client finds the upload to resume by it.",
    )
    artifact = models.ForeignKey(ModelArtifact, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    failure_code = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    active_at = models.DateTimeField(help_text="Last chunk or state change; abandoned uploads expire from here.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.pk} {self.name} ({self.status})"


class UploadFile(models.Model):
    """One declared file of an upload; `received` bytes from its start are on disk and checked chunk by chunk."""

    upload = models.ForeignKey(ArtifactUpload, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024, help_text="Relative POSIX path inside the model folder.")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True, help_text="Declared digest of the whole file (or at finish).")
    received = models.PositiveBigIntegerField(default=0)
    # The sha256 of the `received` bytes, resumable (trust.resumable_sha256), saved with `received` by the
    # chunk that wrote them, so finishing need not read the file again; empty when unknown (hashed at finish).
    sha256_state = models.BinaryField(default=b"", blank=True, editable=False)

    class Meta:
        ordering = ["upload", "path"]
        constraints = [models.UniqueConstraint(fields=["upload", "path"], name="upload_file_path_unique")]

    def __str__(self) -> str:
        return f"{self.path} ({self.received}/{self.size})"


class WorkerHeartbeat(models.Model):
    """A Celery worker's capabilities and when it last reported (compression.services.workers): written on
    start and every WORKER_HEARTBEAT_SECONDS, marked stopped on a clean shutdown. A worker is live while its
    last_seen is within WORKER_LIVE_SECONDS and it has not stopped."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)  # the queues it consumes, sorted
    device = models.CharField(max_length=32)  # SAFESHRINK["DEVICE"] on that worker (what compression runs use)
    device_name = models.CharField(max_length=255, blank=True)  # the GPU's name, else the CPU model
    memory_bytes = models.BigIntegerField(null=True, blank=True)  # the GPU's memory, else the machine's RAM
    cpu_model = models.CharField(max_length=255, blank=True)
    cpu_isa = models.JSONField(default=list)  # compression.engine.cpu.KERNEL_ISA flags the CPU has
    torch_version = models.CharField(max_length=64, blank=True)
    cuda_version = models.CharField(max_length=32, blank=True)  # the CUDA torch was built with ("": none)
    cuda_available = models.BooleanField(null=True)  # probed only on workers serving the gpu queue
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("hostname",)

    def __str__(self) -> str:
        return self.hostname
