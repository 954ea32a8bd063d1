from django.db.models import Q, QuerySet

from accounts.models import Role
from compression.models import ModelArtifact
from evaluations.models import Comparison, EvaluationRun, Example, Flip, Suite, SuiteImport, SuiteVersion


def suites() -> QuerySet[Suite]:
    return Suite.objects.prefetch_related("versions", "versions__suite")


def suite_versions() -> QuerySet[SuiteVersion]:
    return SuiteVersion.objects.select_related("suite")


def examples_filtered(
    *, suite_version_id: int, slice: str | None = None, subgroup: str | None = None, label: str | None = None
) -> QuerySet[Example]:
    qs = Example.objects.filter(suite_version_id=suite_version_id).order_by("position")
    if slice:
        qs = qs.filter(slice=slice)
    if subgroup is not None:
        qs = qs.filter(subgroup=subgroup)
    if label:
        qs = qs.filter(label=label)
    return qs


def _artifacts_of(user) -> QuerySet[ModelArtifact]:
    """Artifacts an engineer works with: their experiments' bases and their runs' outputs."""
    return ModelArtifact.objects.filter(Q(experiments__owner=user) | Q(produced_by__experiment__owner=user))


def evaluation_runs_visible_to(user) -> QuerySet[EvaluationRun]:
    qs = EvaluationRun.objects.select_related("artifact")
    if user.role in (Role.OFFICER, Role.ADMIN):
        return qs
    if user.role == Role.ENGINEER:
        return qs.filter(artifact__in=_artifacts_of(user)).distinct()
    return qs.none()


def comparisons_visible_to(user) -> QuerySet[Comparison]:
    return Comparison.objects.filter(candidate_run__in=evaluation_runs_visible_to(user))


def flips_filtered(
    *,
    comparison_id: int,
    slice: str | None = None,
    subgroup: str | None = None,
    direction: str | None = None,
    stable: bool | None = None,
) -> QuerySet[Flip]:
    """A comparison's flips in suite order. `stable`: True keeps the flips that hold in both passes for both
    models, False those that moved with the batches; None keeps all. A comparison without a stability pass
    (Flip.stable null) has no flip either way."""
    qs = Flip.objects.filter(comparison_id=comparison_id).select_related("example").order_by("example__position")
    if slice:
        qs = qs.filter(example__slice=slice)
    if subgroup:
        qs = qs.filter(example__subgroup=subgroup)
    if direction:
        qs = qs.filter(direction=direction)
    if stable is not None:
        qs = qs.filter(stable=stable)
    return qs


def flip_groups(*, comparison_id: int) -> tuple[list[str], list[str]]:
    """The slices and the subgroups a comparison's flips carry (one distinct query), each sorted by name; an
    example without a subgroup adds none. What a flip set can be filtered by, whether or not the group has enough
    examples for its own row in the comparison's results."""
    # order_by() drops Flip's default ordering, which would otherwise join the DISTINCT.
    pairs = (
        Flip.objects.filter(comparison_id=comparison_id)
        .order_by()
        .values_list("example__slice", "example__subgroup")
        .distinct()
    )
    slices, subgroups = set(), set()
    for slice_, subgroup in pairs:
        slices.add(slice_)
        if subgroup:
            subgroups.add(subgroup)
    return sorted(slices), sorted(subgroups)


def suite_imports_visible_to(user) -> QuerySet[SuiteImport]:
    """An engineer sees the imports they requested; an admin sees every one."""
    imports = SuiteImport.objects.select_related("suite_version__suite")
    return imports if user.role == Role.ADMIN else imports.filter(requested_by=user)
