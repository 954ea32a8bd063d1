from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.fields import StrictCharField
from governance.api.progress import ReleaseProgressOutput
from governance.candidate_source import external_run_brief
from governance.models import Decision, DecisionKind, FlipBasis, Release, ThresholdPolicy, ThresholdRule
from governance.progress import release_progress
from governance.selectors import ReleaseWarningCode, release_warnings


class RuleOutput(serializers.ModelSerializer):
    class Meta:
        model = ThresholdRule
        fields = (
            "code",
            "title",
            "failure_mode_code",
            "metric",
            "group",
            "kind",
            "bound",
            "higher_is_better",
            "green_limit",
            "red_limit",
        )


class PolicyOutput(serializers.ModelSerializer):
    rules = RuleOutput(many=True, read_only=True)

    class Meta:
        model = ThresholdPolicy
        fields = (
            "id",
            "name",
            "version",
            "description",
            "taxonomy",
            "flip_basis",
            "required_profile",
            "reviewers_see_expected_label",
            "forbid_training_data_overlap",
            "rules",
            "published_at",
        )


class DecisionOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username")

    class Meta:
        model = Decision
        fields = (
            "id",
            "kind",
            "actor",
            "actor_role",
            "rationale",
            "evidence",
            "candidate_digest",
            "release_version",
            "created_at",
        )


class ReleaseInput(serializers.Serializer):
    compression_run = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="A succeeded SafeShrink compression run."
    )
    external_run = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Or: a finished external run (one you recorded) whose output artifact is the candidate. "
        "SafeShrink evaluates baseline and candidate itself; the run's reported metrics never reach the gate.",
    )
    suite_version = serializers.IntegerField()
    policy = serializers.IntegerField()

    def validate(self, attrs):
        given = [f for f in ("compression_run", "external_run") if attrs.get(f) is not None]
        if len(given) != 1:
            message = "Give exactly one of compression_run and external_run." + (" Both were given." if given else "")
            raise serializers.ValidationError({f: [message] for f in ("compression_run", "external_run")})
        return attrs


class TransitionInput(serializers.Serializer):
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="The version you loaded; a stale one gets 409."
    )


class StartEvaluationInput(TransitionInput):
    profile = serializers.JSONField(
        required=False,
        default=None,
        help_text="The deployment profile to evaluate under (fields: batch_size, batching fixed|length_sorted|single, "
        "padding_side, max_length, threads, device, isa, quantized_engine); omitted fields take the policy's "
        "required profile, then this installation's defaults. Breaking the policy's requirement is a 400.",
    )
    queue_anyway = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Queue the evaluation even when no live worker serves its device's queue (it waits for one); "
        "without it such a request is a 400 `no_worker_for_device` naming `profile.device`.",
    )


class DecisionInput(TransitionInput):
    kind = serializers.ChoiceField(choices=DecisionKind.choices)
    rationale = serializers.CharField(max_length=5000)


class ExternalRunBriefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    run_uuid = serializers.CharField()
    method = serializers.CharField()
    verification = serializers.ChoiceField(choices=["reported"], help_text="Always `reported`: the engineer's word.")
    provenance_verified = serializers.BooleanField(
        allow_null=True,
        help_text="Whether the newest provenance statement's signature verified under a key the engineer "
        "registered; null when none was attached. The statement's contents stay reported either way.",
    )


SOURCE_FIELD_HELP = (
    "`safeshrink`: the candidate came from SafeShrink's own compression run; `external`: from a run done "
    "elsewhere and reported by the engineer (see `external_run`)."
)


class ReleaseWarningOutput(serializers.Serializer):
    """Something the release's evidence should be read with; a policy may refuse it instead (400)."""

    code = serializers.ChoiceField(
        choices=[(c.value, c.name) for c in ReleaseWarningCode],  # as ENUM_NAME_OVERRIDES reads the enum
        help_text="`evaluated_on_training_data`: the evaluation suite shares examples with the suite version the "
        "compression run trained or calibrated on (a policy with forbid_training_data_overlap refuses it).",
    )
    message = serializers.CharField(help_text="A sentence for people.")
    suite_version = serializers.IntegerField(help_text="The release's evaluation suite version.")
    data_suite_version = serializers.IntegerField(help_text="The suite version the run trained or calibrated on.")
    shared_examples = serializers.IntegerField(help_text="Examples of the evaluation suite version found in it.")


class ReleaseOutput(serializers.ModelSerializer):
    decisions = DecisionOutput(many=True, read_only=True)
    policy_name = serializers.CharField(source="policy.__str__")
    source = serializers.CharField(read_only=True, help_text=SOURCE_FIELD_HELP)
    external_run = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()

    progress = serializers.SerializerMethodField(
        help_text="Where the release stands, stage by stage (compression run, both evaluations, comparison, gate), "
        "with the jobs' own progress, evaluations' chunks and an overall percent: what the release page shows."
    )

    @extend_schema_field(ExternalRunBriefOutput(allow_null=True))
    def get_external_run(self, release: Release) -> dict | None:
        return external_run_brief(release.external_run) if release.external_run_id else None

    @extend_schema_field(ReleaseProgressOutput)
    def get_progress(self, release: Release) -> dict:
        return ReleaseProgressOutput(release_progress(release)).data

    @extend_schema_field(ReleaseWarningOutput(many=True))
    def get_warnings(self, release: Release) -> list[dict]:
        return release_warnings(release)

    class Meta:
        model = Release
        fields = (
            "id",
            "experiment",
            "source",
            "compression_run",
            "external_run",
            "candidate",
            "candidate_digest",
            "suite_version",
            "policy",
            "policy_name",
            "status",
            "version",
            "status_before_halt",
            "baseline_evaluation",
            "candidate_evaluation",
            "comparison",
            "gate_zone",
            "gate",
            "failure_reason",
            "review_outcome",
            "rollout_position",
            "decisions",
            "warnings",
            "progress",
            "created_at",
            "updated_at",
        )


_SUMMARY_FIELDS = (
    "id",
    "experiment",
    "source",
    "compression_run",
    "external_run",
    "candidate",
    "candidate_digest",
    "suite_version",
    "policy",
    "policy_name",
    "status",
    "version",
    "gate_zone",
    "rollout_position",
    "created_at",
    "updated_at",
)
_SUMMARY_FOREIGN_KEYS = ("experiment", "compression_run", "external_run", "candidate", "suite_version", "policy")


class ReleaseSummaryOutput(serializers.ModelSerializer):
    """A release as a list row: its state and zone, without the gate table and decisions (see the detail)."""

    policy_name = serializers.CharField(source="policy.__str__")
    source = serializers.CharField(read_only=True, help_text=SOURCE_FIELD_HELP)
    # The columns a list query loads; everything else (the gate JSON above all) stays in the database.
    columns = tuple(
        f"{f}_id" if f in _SUMMARY_FOREIGN_KEYS else f for f in _SUMMARY_FIELDS if f not in ("policy_name", "source")
    ) + (
        "policy__name",
        "policy__version",
    )

    class Meta:
        model = Release
        fields = _SUMMARY_FIELDS


class StageInput(serializers.Serializer):
    percent = serializers.IntegerField(min_value=1, max_value=100, help_text="Rises stage by stage; the last is 100.")
    starts_at = serializers.DateTimeField(help_text="ISO 8601; stages in time order.")


class RolloutInput(TransitionInput):
    stages = StageInput(
        many=True,
        allow_empty=False,
        help_text='[{"percent": 5, "starts_at": "2026-12-01T09:00Z"}, …, {"percent": 100, …}]',
    )


class EscalationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    release = serializers.IntegerField(source="release_id")
    trigger = serializers.CharField()
    summary = serializers.CharField()
    level = serializers.IntegerField()
    owner_role = serializers.CharField()
    deadline = serializers.DateTimeField()
    status = serializers.CharField()
    resolution = serializers.CharField()
    opened_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class ResolutionInput(serializers.Serializer):
    resolution = StrictCharField(max_length=5000)


class ReviewSubmitInput(serializers.Serializer):
    label = serializers.ChoiceField(choices=["safety_deviation", "acceptable", "unclear"])
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class IncidentInput(serializers.Serializer):
    severity = serializers.IntegerField(min_value=1, max_value=4)
    title = StrictCharField(max_length=200)
    description = StrictCharField(max_length=10000)


class RevalidationInput(serializers.Serializer):
    interval_hours = serializers.IntegerField(min_value=1, max_value=24 * 365)


class RuleInput(serializers.Serializer):
    code = serializers.SlugField(max_length=64)
    title = serializers.CharField(max_length=200)
    failure_mode_code = serializers.SlugField(max_length=64, required=False, allow_blank=True, default="")
    metric = serializers.CharField(max_length=64)
    group = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=["absolute", "delta"])
    bound = serializers.ChoiceField(choices=["ci_low", "ci_high", "point"])
    higher_is_better = serializers.BooleanField()
    green_limit = serializers.FloatField()
    red_limit = serializers.FloatField()


class PolicyInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    taxonomy = serializers.IntegerField(required=False, allow_null=True, default=None)
    rules = RuleInput(many=True, allow_empty=False)
    flip_basis = serializers.ChoiceField(
        choices=FlipBasis.choices,
        default=FlipBasis.STABLE,
        help_text="Which flips the gate counts: 'stable' (hold when the batches are recomposed) or 'all'.",
    )
    required_profile = serializers.JSONField(
        required=False,
        default=dict,
        help_text='Deployment-profile fields every evaluation under this policy must use, e.g. {"batch_size": 1, '
        '"batching": "single"}; "isa" lists instruction sets the CPU must have.',
    )
    reviewers_see_expected_label = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Whether blind reviewers of releases under this version see the example's expected label (chat: "
        "the expected behaviour). Off unless given: blind means blind. A new version does not inherit it.",
    )
    forbid_training_data_overlap = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Refuse (400 training_data_overlap) a release whose evaluation suite shares examples with the "
        "suite version its compression run trained or calibrated on; otherwise such a release carries the warning "
        "evaluated_on_training_data. Off unless given.",
    )
