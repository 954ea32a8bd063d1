"""Live progress, read only: where a release stands in its pipeline (compression run, baseline evaluation,
candidate evaluation, comparison, gate) and the jobs a user may see that are queued or running now.

The numbers are the jobs' own (`progress_stage`, `progress_percent` written by the workers, an evaluation's
`chunks_done` of `chunks_total`); nothing here writes or estimates time. The comparison and the gate are one
step of the completion task and keep no progress of their own: they are `running` while the release waits on
them (both evaluations succeeded, no gate yet) and show no percent until done. Pages, the fragment the release
page polls and the release API read the same `release_progress`."""

from dataclasses import dataclass

from django.db.models import Q, TextChoices

from compression.models import RunStatus
from compression.selectors import runs_visible_to
from evaluations.models import EvaluationRun
from evaluations.selectors import evaluation_runs_visible_to
from governance.models import Release, ReleaseStatus
from governance.selectors import releases_visible_to


class ProgressStage(TextChoices):
    COMPRESSION = "compression", "Compression run"
    BASELINE_EVALUATION = "baseline_evaluation", "Baseline evaluation"
    CANDIDATE_EVALUATION = "candidate_evaluation", "Candidate evaluation"
    COMPARISON = "comparison", "Comparison"
    GATE = "gate", "Gate"


class StageStatus(TextChoices):
    PENDING = "pending", "Not started"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REPORTED = "reported", "Reported (made outside SafeShrink)"


DONE = (StageStatus.SUCCEEDED, StageStatus.REPORTED)
MOVING = (StageStatus.QUEUED, StageStatus.RUNNING)
# Each stage's share of a release's overall percent. The evaluations are where the time goes (the whole suite
# through both models); the candidate's compression run is finished before a release exists (a release needs
# its output), so it counts as done from the start; comparison and gate are one short step.
STAGE_WEIGHTS = {
    ProgressStage.COMPRESSION: 20,
    ProgressStage.BASELINE_EVALUATION: 30,
    ProgressStage.CANDIDATE_EVALUATION: 30,
    ProgressStage.COMPARISON: 15,
    ProgressStage.GATE: 5,
}
# At most this many jobs of each kind in "running now", oldest first.
RUNNING_JOBS_LIMIT = 50


@dataclass(frozen=True)
class StageProgress:
    stage: str  # ProgressStage
    status: str  # StageStatus
    progress_stage: str = ""  # the worker's own words ("3 of 8 chunks"); empty when it has none
    progress_percent: int | None = None  # None: no measured percent (not started, or comparison/gate running)
    chunks_done: int | None = None  # evaluations only
    chunks_total: int | None = None
    object_id: int | None = None  # the compression run, evaluation run, comparison (or external run) behind it
    failure_reason: str = ""
    zone: str = ""  # the gate's zone once judged (governance.models.Zone)

    @property
    def title(self) -> str:
        return ProgressStage(self.stage).label

    @property
    def status_text(self) -> str:
        return StageStatus(self.status).label

    @property
    def moving(self) -> bool:
        return self.status in MOVING


@dataclass(frozen=True)
class ReleaseProgress:
    release_id: int
    release_status: str
    stages: tuple[StageProgress, ...]
    current: StageProgress | None  # the first stage not done; None when every stage is done
    overall_percent: int
    active: bool  # something is queued or running, or the release is evaluating: worth polling
    finished: bool  # every stage done (succeeded, or reported for an external candidate)

    @property
    def current_stage(self) -> str | None:
        return self.current.stage if self.current else None


def _job_status(status: str) -> str:
    """A job's RunStatus as a stage status (the same words: queued, running, succeeded, failed, cancelled)."""
    return StageStatus(RunStatus(status).value).value


def _compression_stage(release: Release) -> StageProgress:
    if release.external_run_id:
        return StageProgress(
            stage=ProgressStage.COMPRESSION,
            status=StageStatus.REPORTED,
            progress_percent=100,
            object_id=release.external_run_id,
        )
    run = release.compression_run
    assert run is not None  # release_one_candidate_source: a compression run when there is no external run
    return StageProgress(
        stage=ProgressStage.COMPRESSION,
        status=_job_status(run.status),
        progress_stage=run.progress_stage,
        progress_percent=100 if run.status == RunStatus.SUCCEEDED else run.progress_percent,
        object_id=run.pk,
        failure_reason=run.failure_reason,
    )


def _evaluation_stage(stage: str, run: EvaluationRun | None) -> StageProgress:
    if run is None:
        return StageProgress(stage=stage, status=StageStatus.PENDING)
    return StageProgress(
        stage=stage,
        status=_job_status(run.status),
        progress_stage=run.progress_stage,
        progress_percent=100 if run.status == RunStatus.SUCCEEDED else run.progress_percent,
        chunks_done=len(run.chunks_done or ()),
        chunks_total=run.chunks_total,
        object_id=run.pk,
        failure_reason=run.failure_reason,
    )


def _comparison_and_gate(release: Release, evaluations_done: bool) -> tuple[StageProgress, StageProgress]:
    if release.comparison_id:
        comparison = StageProgress(
            stage=ProgressStage.COMPARISON,
            status=StageStatus.SUCCEEDED,
            progress_percent=100,
            object_id=release.comparison_id,
        )
    elif evaluations_done and release.status == ReleaseStatus.EVALUATING:
        comparison = StageProgress(stage=ProgressStage.COMPARISON, status=StageStatus.RUNNING)
    elif evaluations_done and release.status == ReleaseStatus.DRAFT and release.failure_reason:
        # Both runs succeeded and the release fell back to draft: the comparison was refused.
        comparison = StageProgress(
            stage=ProgressStage.COMPARISON, status=StageStatus.FAILED, failure_reason=release.failure_reason
        )
    else:
        comparison = StageProgress(stage=ProgressStage.COMPARISON, status=StageStatus.PENDING)
    if release.gate_zone:
        gate = StageProgress(
            stage=ProgressStage.GATE, status=StageStatus.SUCCEEDED, progress_percent=100, zone=release.gate_zone
        )
    else:
        gate = StageProgress(stage=ProgressStage.GATE, status=StageStatus.PENDING)
    return comparison, gate


def release_progress(release: Release) -> ReleaseProgress:
    """Where the release stands, stage by stage, from its rows (a few foreign-key reads, no aggregation)."""
    baseline = _evaluation_stage(ProgressStage.BASELINE_EVALUATION, release.baseline_evaluation)
    candidate = _evaluation_stage(ProgressStage.CANDIDATE_EVALUATION, release.candidate_evaluation)
    evaluations_done = baseline.status == candidate.status == StageStatus.SUCCEEDED
    stages = (_compression_stage(release), baseline, candidate, *_comparison_and_gate(release, evaluations_done))
    finished = all(s.status in DONE for s in stages)
    overall = sum(STAGE_WEIGHTS[ProgressStage(s.stage)] * (s.progress_percent or 0) for s in stages)
    return ReleaseProgress(
        release_id=release.pk,
        release_status=release.status,
        stages=stages,
        current=next((s for s in stages if s.status not in DONE), None),
        overall_percent=100 if finished else min(99, overall // sum(STAGE_WEIGHTS.values())),
        active=release.status == ReleaseStatus.EVALUATING or any(s.moving for s in stages),
        finished=finished,
    )


class JobKind(TextChoices):
    COMPRESSION_RUN = "compression_run", "Compression run"
    EVALUATION = "evaluation", "Evaluation"
    COMPARISON = "comparison", "Comparison and gate"


@dataclass(frozen=True)
class RunningJob:
    kind: str  # JobKind
    id: int  # the compression run's or evaluation run's id; for a comparison, the release's
    status: str  # StageStatus: queued or running
    progress_stage: str
    progress_percent: int | None  # None: no measured percent (a comparison)
    title: str  # what it works on: the experiment and method, the artifact, the release
    chunks_done: int | None = None
    chunks_total: int | None = None
    run_id: int | None = None  # a compression run's page
    releases: tuple[tuple[int, str], ...] = ()  # (release id, "baseline" or "candidate"), those the user may see

    @property
    def kind_text(self) -> str:
        return JobKind(self.kind).label

    @property
    def status_text(self) -> str:
        return StageStatus(self.status).label


def running_jobs_visible_to(user) -> list[RunningJob]:
    """Compression runs and evaluations queued or running, and comparisons under way, that the user may see
    (scoped by the same selectors as the API: an engineer's own experiments; officers and admins everything;
    regulators and reviewers none), oldest first within each kind."""
    moving = (RunStatus.QUEUED, RunStatus.RUNNING)
    jobs: list[RunningJob] = []
    for run in runs_visible_to(user).filter(status__in=moving).order_by("created_at", "pk")[:RUNNING_JOBS_LIMIT]:
        jobs.append(
            RunningJob(
                kind=JobKind.COMPRESSION_RUN,
                id=run.pk,
                status=_job_status(run.status),
                progress_stage=run.progress_stage,
                progress_percent=run.progress_percent,
                title=f"{run.experiment.name}: {run.method}",
                run_id=run.pk,
            )
        )
    evaluations = list(
        evaluation_runs_visible_to(user).filter(status__in=moving).order_by("created_at", "pk")[:RUNNING_JOBS_LIMIT]
    )
    uses = _releases_using(user, [r.pk for r in evaluations])
    for evaluation in evaluations:
        jobs.append(
            RunningJob(
                kind=JobKind.EVALUATION,
                id=evaluation.pk,
                status=_job_status(evaluation.status),
                progress_stage=evaluation.progress_stage,
                progress_percent=evaluation.progress_percent,
                title=f"{evaluation.artifact.name} ({evaluation.artifact.digest[:12]})",
                chunks_done=len(evaluation.chunks_done or ()),
                chunks_total=evaluation.chunks_total,
                releases=tuple(uses.get(evaluation.pk, ())),
            )
        )
    for release in _comparisons_under_way(user)[:RUNNING_JOBS_LIMIT]:
        jobs.append(
            RunningJob(
                kind=JobKind.COMPARISON,
                id=release.pk,
                status=StageStatus.RUNNING,
                progress_stage="comparing baseline and candidate, then the gate",
                progress_percent=None,
                title=f"Release #{release.pk}: {release.experiment.name}",
                releases=((release.pk, "release"),),
            )
        )
    return jobs


def _releases_using(user, evaluation_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """For each evaluation run, the releases the user may see that use it, as baseline or candidate (an
    evaluation is shared by every release of the same artifact, suite version and configuration)."""
    if not evaluation_ids:
        return {}
    uses: dict[int, list[tuple[int, str]]] = {}
    rows = (
        releases_visible_to(user)
        .filter(Q(baseline_evaluation__in=evaluation_ids) | Q(candidate_evaluation__in=evaluation_ids))
        .order_by("pk")
        .values_list("pk", "baseline_evaluation_id", "candidate_evaluation_id")
    )
    for pk, baseline_id, candidate_id in rows:
        for run_id, role in ((baseline_id, "baseline"), (candidate_id, "candidate")):
            if run_id in evaluation_ids:
                uses.setdefault(run_id, []).append((pk, role))
    return uses


def _comparisons_under_way(user):
    """Releases evaluating whose two runs have succeeded: the completion task compares them and judges the
    gate. Scoped as comparisons are in the API (through the evaluation runs the user may see)."""
    return (
        releases_visible_to(user)
        .filter(
            status=ReleaseStatus.EVALUATING,
            comparison__isnull=True,
            baseline_evaluation__status=RunStatus.SUCCEEDED,
            candidate_evaluation__status=RunStatus.SUCCEEDED,
            candidate_evaluation__in=evaluation_runs_visible_to(user),
        )
        .order_by("updated_at", "pk")
    )
