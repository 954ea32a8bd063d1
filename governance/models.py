from django.conf import settings
from django.db import models

from compression.models import CompressionRun, Experiment, ModelArtifact
from evaluations.models import Comparison, EvaluationRun, SuiteVersion


class RiskTaxonomy(models.Model):
    """A versioned catalogue of failure modes. A published version is never edited."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    published_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["name", "-version"]
        verbose_name_plural = "risk taxonomies"
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="taxonomy_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class FailureMode(models.Model):
    taxonomy = models.ForeignKey(RiskTaxonomy, on_delete=models.PROTECT, related_name="failure_modes")
    code = models.SlugField(max_length=64)
    category = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    severity = models.PositiveSmallIntegerField(help_text="1 (minor) to 4 (critical)")
    likelihood = models.CharField(max_length=16, default="possible")
    measures = models.JSONField(default=list, help_text="[{metric, group, worse}] that measure this failure mode.")
    regulatory_refs = models.JSONField(default=list)

    class Meta:
        ordering = ["taxonomy", "-severity", "code"]
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "code"], name="failure_mode_code_unique"),
            models.CheckConstraint(condition=models.Q(severity__gte=1, severity__lte=4), name="severity_1_to_4"),
        ]

    def __str__(self) -> str:
        return f"{self.code} (severity {self.severity})"


class ThresholdPolicy(models.Model):
    """Versioned rules that turn evidence into zones. Immutable once published."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    taxonomy = models.ForeignKey(RiskTaxonomy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["name", "-version"]
        verbose_name_plural = "threshold policies"
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="policy_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class RuleKind(models.TextChoices):
    ABSOLUTE = "absolute", "Absolute value of the candidate"
    DELTA = "delta", "Change against the baseline"


class JudgedBound(models.TextChoices):
    CI_LOW = "ci_low", "Lower bound of the interval"
    CI_HIGH = "ci_high", "Upper bound of the interval"
    POINT = "point", "Point estimate"


class ThresholdRule(models.Model):
    policy = models.ForeignKey(ThresholdPolicy, on_delete=models.PROTECT, related_name="rules")
    code = models.SlugField(max_length=64)
    title = models.CharField(max_length=200)
    failure_mode_code = models.SlugField(max_length=64, blank=True)
    metric = models.CharField(max_length=64)
    group = models.CharField(max_length=200, help_text="'overall', 'slice:<name>' or 'subgroup:<name>'")
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    bound = models.CharField(max_length=16, choices=JudgedBound.choices)
    higher_is_better = models.BooleanField()
    green_limit = models.FloatField()
    red_limit = models.FloatField()

    class Meta:
        ordering = ["policy", "id"]
        constraints = [models.UniqueConstraint(fields=["policy", "code"], name="rule_code_unique")]

    def __str__(self) -> str:
        return self.code


class Zone(models.TextChoices):
    GREEN = "green", "Green"
    AMBER = "amber", "Amber"
    RED = "red", "Red"


class ReleaseStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    EVALUATING = "evaluating", "Evaluating"
    IN_REVIEW = "in_review", "In review"
    AWAITING_DECISION = "awaiting_decision", "Awaiting decision"
    APPROVED = "approved", "Approved"
    ROLLING_OUT = "rolling_out", "Rolling out"
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"
    HALTED = "halted", "Halted"
    ROLLED_BACK = "rolled_back", "Rolled back"


TERMINAL_RELEASE_STATUSES = (ReleaseStatus.REJECTED, ReleaseStatus.ROLLED_BACK)


class Release(models.Model):
    """A compressed candidate proposed for deployment. Changes state only through services."""

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="releases")
    compression_run = models.ForeignKey(CompressionRun, on_delete=models.PROTECT, related_name="releases")
    candidate = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="releases")
    candidate_digest = models.CharField(max_length=64)
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="+")
    policy = models.ForeignKey(ThresholdPolicy, on_delete=models.PROTECT, related_name="releases")
    status = models.CharField(max_length=32, choices=ReleaseStatus.choices, default=ReleaseStatus.DRAFT,
                              db_index=True)
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every transition; stale writes get 409.")
    status_before_halt = models.CharField(max_length=32, blank=True)
    baseline_evaluation = models.ForeignKey(EvaluationRun, null=True, blank=True, on_delete=models.PROTECT,
                                            related_name="+")
    candidate_evaluation = models.ForeignKey(EvaluationRun, null=True, blank=True, on_delete=models.PROTECT,
                                             related_name="+")
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    gate_zone = models.CharField(max_length=8, choices=Zone.choices, blank=True)
    gate = models.JSONField(null=True, blank=True, help_text="Each rule's judged value and zone.")
    failure_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"release {self.pk} ({self.status})"


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    HALT = "halt", "Halt"


class Decision(models.Model):
    """An officer's decision with its rationale and the digests of the evidence they saw."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="decisions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    actor_role = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=DecisionKind.choices)
    rationale = models.TextField()
    evidence = models.JSONField(help_text="Digests of the candidate, comparison and gate the decision saw.")
    candidate_digest = models.CharField(max_length=64)
    release_version = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["release", "created_at"]
        constraints = [
            # Four-eyes: one person counts once towards a release's approvals.
            models.UniqueConstraint(fields=["release", "actor"], condition=models.Q(kind="approve"),
                                    name="one_approval_per_person"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of release {self.release_id} by {self.actor_id}"
