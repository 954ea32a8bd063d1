from rest_framework import serializers

from governance.models import Decision, DecisionKind, Release, ThresholdPolicy, ThresholdRule


class RuleOutput(serializers.ModelSerializer):
    class Meta:
        model = ThresholdRule
        fields = ("code", "title", "failure_mode_code", "metric", "group", "kind", "bound", "higher_is_better",
                  "green_limit", "red_limit")


class PolicyOutput(serializers.ModelSerializer):
    rules = RuleOutput(many=True, read_only=True)

    class Meta:
        model = ThresholdPolicy
        fields = ("id", "name", "version", "description", "taxonomy", "rules", "published_at")


class DecisionOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username")

    class Meta:
        model = Decision
        fields = ("id", "kind", "actor", "actor_role", "rationale", "evidence", "candidate_digest",
                  "release_version", "created_at")


class ReleaseInput(serializers.Serializer):
    compression_run = serializers.IntegerField()
    suite_version = serializers.IntegerField()
    policy = serializers.IntegerField()


class TransitionInput(serializers.Serializer):
    expected_version = serializers.IntegerField(required=False, allow_null=True, default=None,
                                                help_text="The version you loaded; a stale one gets 409.")


class DecisionInput(TransitionInput):
    kind = serializers.ChoiceField(choices=DecisionKind.choices)
    rationale = serializers.CharField(max_length=5000)


class ReleaseOutput(serializers.ModelSerializer):
    decisions = DecisionOutput(many=True, read_only=True)
    policy_name = serializers.CharField(source="policy.__str__")

    class Meta:
        model = Release
        fields = ("id", "experiment", "compression_run", "candidate", "candidate_digest", "suite_version", "policy",
                  "policy_name", "status", "version", "status_before_halt", "baseline_evaluation",
                  "candidate_evaluation", "comparison", "gate_zone", "gate", "failure_reason", "decisions",
                  "created_at", "updated_at")
