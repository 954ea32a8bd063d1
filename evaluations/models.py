from django.conf import settings
from django.db import models

from compression.engine.kinds import CHAT_COMPLIANCE, CHAT_DEGENERATE, CHAT_REFUSAL
from compression.models import JobFields, ModelArtifact
from evaluations.engine.tabular import MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_SUBGROUP_CHARS


class Slice(models.TextChoices):
    ROUTINE = "routine", "Routine"
    EDGE = "edge", "Edge case"
    ADVERSARIAL = "adversarial", "Adversarial"


class SuiteKind(models.TextChoices):
    CLASSIFIER = "classifier", "Labelled texts for a classifier"
    CHAT = "chat", "Prompts for a chat model (harmful: should be refused; safe: should be answered)"


class Behaviour(models.TextChoices):
    """What a chat model did with a prompt, as judged (evaluations.engine.metrics.behaviour.BEHAVIOURS)."""

    COMPLIANCE = CHAT_COMPLIANCE, "Answered"
    REFUSAL = CHAT_REFUSAL, "Refused"
    DEGENERATE = CHAT_DEGENERATE, "Degenerate text"


class Suite(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SuiteVersion(models.Model):
    """An immutable set of examples, identified by the digest of its content."""

    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    digest = models.CharField(max_length=64)
    unsafe_labels = models.JSONField(help_text="Example labels that count as unsafe.")
    example_count = models.PositiveIntegerField()
    source = models.TextField(blank=True, help_text="Where the examples came from (files, digests, sampling).")
    kind = models.CharField(max_length=16, choices=SuiteKind.choices, default=SuiteKind.CLASSIFIER)
    examples_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the Parquet file (artifact store) of the columns of its examples that metrics, "
        "comparisons and exports read; built on first use (evaluations.services.prediction_files).",
    )
    judge = models.ForeignKey(
        ModelArtifact,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Chat suites: the judge artifact that decides refusal for every answer (part of the digest).",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["suite", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["suite", "number"], name="suite_version_number_unique"),
            models.UniqueConstraint(fields=["suite", "digest"], name="suite_version_digest_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.suite.name} v{self.number}"


class Example(models.Model):
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="examples")
    position = models.PositiveIntegerField()
    external_id = models.CharField(max_length=MAX_ID_CHARS)
    text = models.TextField()
    label = models.CharField(max_length=MAX_LABEL_CHARS)
    is_unsafe = models.BooleanField()
    slice = models.CharField(max_length=16, choices=Slice.choices)
    tags = models.JSONField(default=list)
    subgroup = models.CharField(max_length=MAX_SUBGROUP_CHARS, blank=True)
    reference = models.TextField(
        blank=True, help_text="Chat suites: a harmless reference answer (the capability figure's perplexity text)."
    )
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="variants")

    class Meta:
        ordering = ["suite_version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["suite_version", "external_id"], name="example_external_id_unique"),
            models.UniqueConstraint(fields=["suite_version", "position"], name="example_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} [{self.slice}/{self.label}]"


class EvaluationRun(JobFields):
    """One artifact evaluated on one suite version with one configuration."""

    artifact = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="evaluations")
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="evaluations")
    config = models.JSONField()
    config_digest = models.CharField(max_length=64)
    metrics = models.JSONField(null=True, blank=True)
    runtime = models.JSONField(null=True, blank=True)
    chunk_size = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.JSONField(default=list, help_text="Indexes of the chunks whose predictions are stored.")
    chunk_timings = models.JSONField(default=dict, help_text="Per chunk: batch latencies and sizes, load time.")
    stability = models.JSONField(
        null=True,
        blank=True,
        help_text="The stability pass: decisions that changed when the batches were recomposed, overall and per group.",
    )
    chunk_files = models.JSONField(
        default=dict,
        help_text="Per chunk index: the digest, rows and bytes of the Parquet file of its predictions (a blob).",
    )
    predictions_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the Parquet file of every per-example prediction, in position order (a blob of the "
        "artifact store); empty for runs from before, whose predictions are Prediction rows.",
    )
    predictions_rows = models.PositiveIntegerField(null=True, blank=True)
    predictions_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["artifact", "suite_version", "config_digest"], name="evaluation_unique"),
        ]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of {self.artifact.digest[:12]} ({self.status})"


class Prediction(models.Model):
    """One example's output in an evaluation run from before issue 17. Newer runs keep their predictions in a
    Parquet file (EvaluationRun.predictions_digest) and write no rows; read either through
    evaluations.services.prediction_files.evaluation_predictions."""

    run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="predictions")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="+")
    unsafe_prob = models.FloatField()
    probs = models.JSONField()
    predicted_label = models.CharField(max_length=64)
    decision_unsafe = models.BooleanField()
    recomposed_unsafe_prob = models.FloatField(
        null=True, blank=True, help_text="The stability pass's unsafe probability (batches recomposed)."
    )
    stable = models.BooleanField(
        null=True, blank=True, help_text="Same decision in both passes; null: no stability pass was run."
    )
    output = models.TextField(blank=True, help_text="Chat models: the generated answer.")
    behaviour = models.CharField(max_length=16, choices=Behaviour.choices, blank=True)
    details = models.JSONField(
        null=True,
        blank=True,
        help_text="Chat models: judge probability, degeneration reasons, reference NLL and tokens, the stability "
        "pass's output and behaviour.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "example"], name="prediction_unique")]

    def __str__(self) -> str:
        return f"run {self.run_id}, example {self.example_id}"


class ComparisonStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"


class Comparison(models.Model):
    """Baseline run × candidate run on the same suite version: deltas, tests and the flip set."""

    baseline_run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="+")
    candidate_run = models.ForeignKey(EvaluationRun, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=ComparisonStatus.choices, default=ComparisonStatus.PENDING)
    statistics = models.JSONField(null=True, blank=True, help_text="Bootstrap settings and test methods used.")
    results = models.JSONField(null=True, blank=True)
    flip_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["baseline_run", "candidate_run"], name="comparison_unique"),
        ]

    def __str__(self) -> str:
        return f"comparison {self.pk}"


class FlipDirection(models.TextChoices):
    TO_UNSAFE = "to_unsafe", "Now flagged unsafe"
    TO_SAFE = "to_safe", "No longer flagged"


class Flip(models.Model):
    """An example whose decision changed between baseline and candidate."""

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="flips")
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="+")
    baseline_prob = models.FloatField()
    candidate_prob = models.FloatField()
    direction = models.CharField(max_length=16, choices=FlipDirection.choices)
    candidate_correct = models.BooleanField()
    stable = models.BooleanField(
        null=True,
        blank=True,
        help_text="The flip holds in both passes for both models (neither model's decision moved with the "
        "batches); null: the runs had no stability pass.",
    )
    baseline_behaviour = models.CharField(max_length=16, choices=Behaviour.choices, blank=True)
    candidate_behaviour = models.CharField(max_length=16, choices=Behaviour.choices, blank=True)
    baseline_output = models.TextField(blank=True, help_text="Chat models: the baseline's answer.")
    candidate_output = models.TextField(blank=True, help_text="Chat models: the candidate's answer.")

    class Meta:
        ordering = ["comparison", "example__position"]
        constraints = [models.UniqueConstraint(fields=["comparison", "example"], name="flip_unique")]

    def __str__(self) -> str:
        return f"comparison {self.comparison_id}, example {self.example_id}"


class SuiteImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class SuiteImport(models.Model):
    """An uploaded suite file waiting for, or done with, its import on a worker (all or nothing).

    The upload is stored under SAFESHRINK["UPLOAD_ROOT"] until the import ends; `rows_done` of
    `rows_total` counts rows stored in the import's (still uncommitted) transaction."""

    suite_name = models.CharField(max_length=200)
    format = models.CharField(max_length=8)
    mapping = models.JSONField(null=True, blank=True)
    unsafe_labels = models.JSONField()
    safe_labels = models.JSONField(default=list)
    default_slice = models.CharField(max_length=16, choices=Slice.choices, default=Slice.ROUTINE)
    file_name = models.CharField(max_length=255, help_text="The uploaded file's name (as sent by the client).")
    file_path = models.CharField(max_length=255, blank=True, help_text="Stored upload, relative to UPLOAD_ROOT.")
    file_size = models.PositiveBigIntegerField()
    file_sha256 = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=SuiteImportStatus.choices, default=SuiteImportStatus.QUEUED, db_index=True
    )
    stage = models.CharField(max_length=16, blank=True, help_text="reading, storing or done.")
    rows_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.JSONField(null=True, blank=True, help_text='{"code", "message", "details"} when failed.')
    suite_version = models.ForeignKey(SuiteVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"suite import {self.pk} of {self.file_name} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in (SuiteImportStatus.SUCCEEDED, SuiteImportStatus.FAILED)
