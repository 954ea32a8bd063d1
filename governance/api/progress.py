"""A release's progress in the API (`progress` of GET /api/releases/{id}/): governance.progress.release_progress,
the same reading the release page shows and polls."""

from rest_framework import serializers

from governance.models import Zone
from governance.progress import ProgressStage, StageStatus


class StageProgressOutput(serializers.Serializer):
    stage = serializers.ChoiceField(choices=ProgressStage.choices)
    title = serializers.CharField(help_text="The stage in words.")
    status = serializers.ChoiceField(
        choices=StageStatus.choices,
        help_text="`pending`: not started (an evaluation not yet requested, a comparison waiting on both runs); "
        "`queued`, `running`, `succeeded`, `failed`, `cancelled`: the job's own status; `reported`: the candidate "
        "was made outside SafeShrink (an external run).",
    )
    progress_stage = serializers.CharField(
        allow_blank=True, help_text="What the worker last said it was doing, e.g. `3 of 8 chunks`; may be empty."
    )
    progress_percent = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        max_value=100,
        help_text="The job's own percent (100 once succeeded); null when none is measured: a stage not started, "
        "or the comparison and gate while they run (one short step with no progress of its own).",
    )
    chunks_done = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Evaluations: chunks whose predictions are stored; null otherwise."
    )
    chunks_total = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Evaluations: chunks in all (0 until the run has started)."
    )
    object_id = serializers.IntegerField(
        allow_null=True,
        help_text="The compression run (or external run, when `reported`), evaluation run or comparison behind "
        "the stage; null when there is none yet.",
    )
    failure_reason = serializers.CharField(allow_blank=True)
    zone = serializers.ChoiceField(
        choices=Zone.choices, allow_blank=True, help_text="The gate stage: the zone it judged; empty otherwise."
    )


class ReleaseProgressOutput(serializers.Serializer):
    overall_percent = serializers.IntegerField(
        min_value=0,
        max_value=100,
        help_text="The stages' percents weighted (compression 20, each evaluation 30, comparison 15, gate 5); "
        "100 only when every stage is done.",
    )
    current_stage = serializers.ChoiceField(
        choices=ProgressStage.choices,
        allow_null=True,
        help_text="The first stage not done (succeeded or reported); null when every stage is done.",
    )
    active = serializers.BooleanField(
        help_text="Something is queued or running, or the release is evaluating: the figures will move."
    )
    finished = serializers.BooleanField(help_text="Every stage is done.")
    stages = StageProgressOutput(
        many=True, help_text="compression, baseline_evaluation, candidate_evaluation, comparison, gate, in that order."
    )
