"""Compression runs that happened outside SafeShrink, as their engineers reported them.

An `ExternalRun` is SafeShrink's record of a run an engineer did with their own tools (GPTQ, AWQ, NNCF, their own
scripts): what they say they ran, on which inputs, producing which artifact, with the parameters, metrics and tags
they logged. Everything in it is **reported**, never verified: SafeShrink did not run it (`SOURCE`, `VERIFICATION`).
A release may take its output artifact as a candidate; SafeShrink then evaluates that artifact itself.

The shape follows MLflow's tracking model so that its protocol (issue 13 item 3) maps onto these rows directly,
without a second copy: a run has a uuid (MLflow's `run_id`), a name, a status and start/end times; params are
key/value rows that never change once logged; metrics are rows of (key, value, step, timestamp in ms), many per
key; tags are key/value rows that may be overwritten. The SafeShrink-specific fields (method, parameters, code
reference, tool versions, hardware, seeds, artifacts) sit beside them on the run.
"""

import uuid

from django.conf import settings
from django.db import models

from compression.models import Experiment, ModelArtifact

# The MLflow limits (mlflow.utils.validation), so that a run logged through either door fits both.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 250
MAX_METHOD_LENGTH = 200


def _new_run_uuid() -> str:
    return uuid.uuid4().hex


class ExternalRunStatus(models.TextChoices):
    """MLflow's run statuses less SCHEDULED (a run is recorded once it has started)."""

    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    KILLED = "killed", "Killed"


ENDED_STATUSES = (ExternalRunStatus.FINISHED, ExternalRunStatus.FAILED, ExternalRunStatus.KILLED)


class ExternalRun(models.Model):
    """A compression run done elsewhere, recorded by the engineer who owns the experiment."""

    SOURCE = "external"  # not run by SafeShrink
    VERIFICATION = "reported"  # its contents are the engineer's word, not SafeShrink's measurement

    run_uuid = models.CharField(max_length=32, unique=True, default=_new_run_uuid, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="external_runs")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=MAX_NAME_LENGTH, blank=True)
    method = models.CharField(max_length=MAX_METHOD_LENGTH, help_text="The method as the engineer names it.")
    known_method = models.CharField(
        max_length=64, blank=True, help_text="The SafeShrink compression method it corresponds to, if any."
    )
    parameters = models.JSONField(default=dict, help_text="The method's parameters, as reported.")
    code_reference = models.JSONField(default=dict, help_text="{url, commit, path} of the code that ran.")
    tool_versions = models.JSONField(default=dict, help_text="Tool name -> version.")
    hardware = models.JSONField(default=dict, help_text="What it ran on (accelerators, memory, ...).")
    seeds = models.JSONField(default=list, help_text="Integer seeds.")
    input_artifacts = models.ManyToManyField(ModelArtifact, blank=True, related_name="+")
    output_artifact = models.ForeignKey(
        ModelArtifact, null=True, blank=True, on_delete=models.PROTECT, related_name="externally_produced_by"
    )
    status = models.CharField(
        max_length=16, choices=ExternalRunStatus.choices, default=ExternalRunStatus.RUNNING, db_index=True
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    contents_digest = models.CharField(
        max_length=64, blank=True, help_text="sha256 of everything reported, written when the run ends."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"external run {self.pk} {self.method} ({self.status})"

    @property
    def is_ended(self) -> bool:
        return self.status in ENDED_STATUSES


class ExternalRunParam(models.Model):
    """A param: once logged, its value never changes (MLflow refuses a change too)."""

    run = models.ForeignKey(ExternalRun, on_delete=models.CASCADE, related_name="params")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    value = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="tracking_param_unique_key")]

    def __str__(self) -> str:
        return f"{self.key}={self.value[:40]}"


class ExternalRunTag(models.Model):
    """A tag: a later value for the same key replaces the earlier one (as in MLflow)."""

    run = models.ForeignKey(ExternalRun, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    value = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="tracking_tag_unique_key")]

    def __str__(self) -> str:
        return f"{self.key}={self.value[:40]}"


class ExternalRunMetric(models.Model):
    """One reported measurement: a finite value at a step, at a time (ms since the epoch). Many per key."""

    run = models.ForeignKey(ExternalRun, on_delete=models.CASCADE, related_name="metrics")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    value = models.FloatField()
    step = models.BigIntegerField(default=0)
    timestamp = models.BigIntegerField(help_text="Milliseconds since the Unix epoch, as MLflow records it.")

    class Meta:
        ordering = ["key", "step", "timestamp", "id"]
        indexes = [models.Index(fields=["run", "key", "step"], name="tracking_metric_history")]

    def __str__(self) -> str:
        return f"{self.key}@{self.step}={self.value}"


class EngineerKey(models.Model):
    """An engineer's own Ed25519 public key, with which they sign provenance statements about their runs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="engineer_keys")
    key_id = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the 32 raw public key bytes.")
    public_key = models.TextField(help_text="PEM (SubjectPublicKeyInfo).")
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.key_id[:16]}"


class ExternalRunProvenance(models.Model):
    """A provenance statement (a DSSE envelope around an in-toto Statement) attached to an external run, and
    whether its signature verified under a key the run's owner registered. One that does not verify is kept and
    marked so: that someone attached it is itself part of the record."""

    run = models.ForeignKey(ExternalRun, on_delete=models.PROTECT, related_name="provenance")
    attached_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    envelope = models.JSONField(help_text="The DSSE envelope as sent.")
    envelope_digest = models.CharField(max_length=64, help_text="sha256 of the envelope's canonical JSON.")
    payload_type = models.CharField(max_length=200)
    statement = models.JSONField(help_text="The decoded payload (an in-toto Statement).")
    signature_verified = models.BooleanField()
    signing_key = models.ForeignKey(EngineerKey, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    key_id = models.CharField(max_length=64, blank=True, help_text="The registered key that verified it, if any.")
    verification_reason = models.TextField(blank=True, help_text="Why the signature did not verify.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        verified = "verified" if self.signature_verified else "not verified"
        return f"provenance {self.pk} of external run {self.run_id} ({verified})"


class RunArtifactFile(models.Model):
    """A file an engineer logged to an external run through MLflow's artifact routes (`log_artifact(s)`): where it
    sits under the run's artifact folder, and the sha256 and size measured while it was received. Registering a
    model from the run checks every file of the folder against these."""

    run = models.ForeignKey(ExternalRun, on_delete=models.PROTECT, related_name="artifact_files")
    path = models.CharField(max_length=1000, help_text="Relative POSIX path under the run's artifact folder.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    logged_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="tracking_artifact_file_unique_path")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.path}"


class RegisteredModel(models.Model):
    """An MLflow registered model (`register_model(..., name)`), scoped to the engineer who created it: names are
    unique per owner, and another engineer's registered model is unknown."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=MAX_NAME_LENGTH)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="tracking_registered_model_unique")]

    def __str__(self) -> str:
        return self.name


class RegisteredModelVersion(models.Model):
    """A version of a registered model: the SafeShrink artifact made from a run's logged model folder."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    run = models.ForeignKey(ExternalRun, on_delete=models.PROTECT, related_name="model_versions")
    artifact_path = models.CharField(max_length=1000, help_text="The folder of the run's artifacts it was made from.")
    artifact = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=2000, help_text="The source URI as the client sent it.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "version"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="tracking_model_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.registered_model_id} v{self.version}"
