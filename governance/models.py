from django.conf import settings
from django.db import models

from compression.models import CompressionRun, Experiment, ModelArtifact
from evaluations.models import Comparison, EvaluationRun, SuiteVersion
from tracking.models import ExternalRun


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


class FlipBasis(models.TextChoices):
    STABLE = "stable", "Stable flips (the flip holds when the batches are recomposed)"
    ALL = "all", "Every flip of the main pass"


class ThresholdPolicy(models.Model):
    """Versioned rules that turn evidence into zones. Immutable once published."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    taxonomy = models.ForeignKey(RiskTaxonomy, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    flip_basis = models.CharField(
        max_length=8,
        choices=FlipBasis.choices,
        default=FlipBasis.STABLE,
        help_text="Which flips the gate counts (flip rate) and which McNemar test the release reports.",
    )
    required_profile = models.JSONField(
        default=dict,
        blank=True,
        help_text='Deployment-profile fields an evaluation under this policy must use, e.g. {"batch_size": 1}.',
    )
    forbid_training_data_overlap = models.BooleanField(
        default=False,
        help_text="Refuse a release whose evaluation suite shares examples with the suite version its compression "
        "run trained or calibrated on (otherwise the release carries a warning).",
    )
    reviewers_see_expected_label = models.BooleanField(
        default=False,
        help_text="Whether blind reviewers of a release under this policy are shown the example's expected label "
        "(chat: the expected behaviour). Off by default: blind means blind.",
    )
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
    # Where the candidate came from: SafeShrink's own run, or a run done elsewhere and reported by the engineer
    # (exactly one of the two). Either way SafeShrink evaluates baseline and candidate itself.
    compression_run = models.ForeignKey(
        CompressionRun, null=True, blank=True, on_delete=models.PROTECT, related_name="releases"
    )
    external_run = models.ForeignKey(
        ExternalRun, null=True, blank=True, on_delete=models.PROTECT, related_name="releases"
    )
    candidate = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="releases")
    candidate_digest = models.CharField(max_length=64)
    suite_version = models.ForeignKey(SuiteVersion, on_delete=models.PROTECT, related_name="+")
    policy = models.ForeignKey(ThresholdPolicy, on_delete=models.PROTECT, related_name="releases")
    status = models.CharField(max_length=32, choices=ReleaseStatus.choices, default=ReleaseStatus.DRAFT, db_index=True)
    version = models.PositiveIntegerField(default=1, help_text="Bumped on every transition; stale writes get 409.")
    status_before_halt = models.CharField(max_length=32, blank=True)
    baseline_evaluation = models.ForeignKey(
        EvaluationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate_evaluation = models.ForeignKey(
        EvaluationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    gate_zone = models.CharField(max_length=8, choices=Zone.choices, blank=True)
    gate = models.JSONField(null=True, blank=True, help_text="Each rule's judged value and zone.")
    failure_reason = models.TextField(blank=True)
    review_outcome = models.JSONField(null=True, blank=True, help_text="Blind review counts, kappa, verdict.")
    rollout_position = models.PositiveSmallIntegerField(default=0, help_text="Stages started so far.")
    approvals_since_version = models.PositiveIntegerField(
        default=0, help_text="Approvals recorded at an earlier version were voided (the candidate changed)."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(compression_run__isnull=False, external_run__isnull=True)
                | models.Q(compression_run__isnull=True, external_run__isnull=False),
                name="release_one_candidate_source",
            )
        ]

    def __str__(self) -> str:
        return f"release {self.pk} ({self.status})"

    @property
    def source(self) -> str:
        """`safeshrink` (SafeShrink's own compression run) or `external` (a run the engineer reported)."""
        return ExternalRun.SOURCE if self.external_run_id else "safeshrink"

    @property
    def run_requested_by_id(self) -> int:
        """Who asked for the candidate to be made: the run's requester, or the engineer who recorded it."""
        if self.external_run_id:
            return self.external_run.recorded_by_id
        return self.compression_run.requested_by_id


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    HALT = "halt", "Halt"
    RESUME = "resume", "Resume"
    ROLL_BACK = "roll_back", "Roll back"


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
    # Copied from the experiment so the database itself enforces separation of duties.
    experiment_owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    run_requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["release", "created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(actor=models.F("experiment_owner")) & ~models.Q(actor=models.F("run_requester")),
                name="separation_of_duties",
            ),
            # Four-eyes: one person counts once towards a release's approvals.
            models.UniqueConstraint(
                fields=["release", "actor"], condition=models.Q(kind="approve"), name="one_approval_per_person"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of release {self.release_id} by {self.actor_id}"


class AuthorityGrant(models.Model):
    """An officer's authority over a risk tier, at an escalation level (1 = first line).

    Approving and rejecting need an authority for the experiment's tier; resuming a halted release
    and resolving a red escalation need an authority at the escalation's level or above.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authorities")
    risk_tier = models.CharField(max_length=8)
    level = models.PositiveSmallIntegerField(default=1)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "risk_tier"], name="one_authority_per_tier"),
            models.CheckConstraint(condition=models.Q(level__gte=1, level__lte=3), name="authority_level_1_to_3"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.risk_tier} · level {self.level}"


class ApprovalPolicy(models.Model):
    """How many distinct approvers a risk tier needs (four-eyes for high)."""

    risk_tier = models.CharField(max_length=8, unique=True)
    approvals_required = models.PositiveSmallIntegerField()
    review_sample_size = models.PositiveSmallIntegerField(default=10, help_text="Flips sampled for blind review.")
    reviewers_per_item = models.PositiveSmallIntegerField(default=2)
    review_hours = models.PositiveIntegerField(default=72, help_text="Deadline for blind reviews.")
    escalation_hours = models.PositiveIntegerField(default=24, help_text="Deadline of an escalation level.")
    halt_on_overdue = models.BooleanField(default=False, help_text="Halt the release when an escalation is overdue.")

    class Meta:
        verbose_name_plural = "approval policies"
        constraints = [
            models.CheckConstraint(condition=models.Q(approvals_required__gte=1), name="at_least_one_approval"),
        ]

    def __str__(self) -> str:
        return f"{self.risk_tier}: {self.approvals_required} approval(s)"


class RolloutStage(models.Model):
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="rollout_stages")
    position = models.PositiveSmallIntegerField()
    percent = models.PositiveSmallIntegerField()
    starts_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["release", "position"]
        constraints = [
            models.UniqueConstraint(fields=["release", "position"], name="rollout_stage_unique"),
            models.CheckConstraint(condition=models.Q(percent__gte=1, percent__lte=100), name="percent_1_to_100"),
        ]

    def __str__(self) -> str:
        return f"release {self.release_id} stage {self.position}: {self.percent}%"


class EscalationTrigger(models.TextChoices):
    RED_ZONE = "red_zone", "Red zone"
    OVERDUE_REVIEW = "overdue_review", "Overdue review"
    INCIDENT = "incident", "Incident"
    MISSED_DEADLINE = "missed_deadline", "Missed deadline"


class EscalationStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Escalation(models.Model):
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="escalations")
    trigger = models.CharField(max_length=32, choices=EscalationTrigger.choices)
    summary = models.TextField()
    level = models.PositiveSmallIntegerField(default=1)
    owner_role = models.CharField(max_length=16, default="officer")
    deadline = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=EscalationStatus.choices, default=EscalationStatus.OPEN, db_index=True
    )
    resolution = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deadline"]
        constraints = [
            models.CheckConstraint(condition=models.Q(level__gte=1, level__lte=3), name="escalation_level_1_to_3"),
            # At most one unresolved (open or acknowledged) escalation per release and trigger.
            models.UniqueConstraint(
                fields=["release", "trigger"],
                condition=~models.Q(status="resolved"),
                name="one_unresolved_escalation_per_trigger",
            ),
        ]

    def __str__(self) -> str:
        return f"escalation {self.pk} ({self.trigger}, level {self.level}, {self.status})"


class ReviewLabel(models.TextChoices):
    SAFETY_DEVIATION = "safety_deviation", "Safety deviation"
    ACCEPTABLE = "acceptable", "Acceptable"
    UNCLEAR = "unclear", "Unclear"


class ReviewTask(models.Model):
    """One flipped example shown blind to one reviewer: outputs A and B in random order."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="review_tasks")
    flip = models.ForeignKey("evaluations.Flip", on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_tasks")
    a_is_candidate = models.BooleanField(help_text="Hidden from the reviewer until they submit.")
    deadline = models.DateTimeField()
    label = models.CharField(max_length=32, choices=ReviewLabel.choices, blank=True)
    note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    carried_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The earlier judgement of the same item for the same pair of artifacts that this task carries "
        "(its reviewer is not asked twice); empty for a judgement made for this release.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deadline", "id"]
        constraints = [models.UniqueConstraint(fields=["flip", "reviewer", "release"], name="one_review_per_item")]

    def __str__(self) -> str:
        return f"review {self.pk} of flip {self.flip_id} by {self.reviewer_id}"


class MitigationTemplate(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, help_text="targeted_finetuning, runtime_guard, human_review, staged_rollout")
    description = models.TextField()
    failure_mode_codes = models.JSONField(default=list)

    def __str__(self) -> str:
        return self.title


class Incident(models.Model):
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="incidents")
    severity = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200)
    description = models.TextField()
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(severity__gte=1, severity__lte=4), name="incident_severity_1_to_4"
            ),
        ]

    def __str__(self) -> str:
        return f"incident {self.pk} (severity {self.severity}): {self.title}"


class RevalidationSchedule(models.Model):
    release = models.OneToOneField(Release, on_delete=models.PROTECT, related_name="revalidation")
    interval_hours = models.PositiveIntegerField()
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"revalidation of release {self.release_id} every {self.interval_hours} h"


class WebhookEndpoint(models.Model):
    url = models.URLField()
    secret = models.CharField(max_length=128, help_text="HMAC-SHA256 key for the X-SafeShrink-Signature header.")
    events = models.JSONField(default=list, help_text="Event names to send; empty = all.")
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.event} to endpoint {self.endpoint_id}: {self.status}"


class RegulatorGrant(models.Model):
    """Read-only, time-boxed access for one regulator to one release and its exports."""

    regulator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="regulator_grants")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(valid_until__gt=models.F("valid_from")), name="grant_window_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.regulator} → release {self.release_id} until {self.valid_until:%Y-%m-%d}"
