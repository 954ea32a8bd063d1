"""The inventory pages: experiments, runs (SafeShrink's own and external ones, in one list) and artifacts, each with
filters, search and pages of 25, and the experiment and artifact pages (the artifact's lineage drawn as a graph).

Scoped exactly as the API: compression.selectors (experiments, runs, artifacts visible to a user) and
tracking.selectors.external_runs_visible_to; a record outside the scope is 404. The roles the API refuses
(regulators, reviewers) get a 403 page, recorded as the API records its refusals (one `access.denied` event).
An unknown filter value is not applied: the page says so and answers 400 (governance.views._choice_filters)."""

import re
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Value
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from accounts.models import Role
from accounts.services import access_denied_record
from compression.engine.methods import SUPPORTED_METHODS
from compression.models import ArtifactFormat, CompressionRun, ModelArtifact, ModelKind, RiskTier, RunStatus
from compression.selectors import (
    artifacts_visible_to,
    experiments_visible_to,
    inventory_visible_to,
    runs_using_artifact,
    runs_visible_to,
)
from evaluations.selectors import evaluation_runs_visible_to
from governance.lineage_chart import LineageNode, lineage_chart
from governance.selectors import releases_visible_to
from governance.views import _choice_filters
from tracking.models import ExternalRun, ExternalRunStatus
from tracking.selectors import external_runs_visible_to

PER_PAGE = 25
DETAIL_ROWS = 50  # rows of a table on a detail page; the lists have the rest
SEARCH_MAX = 200
DIGEST_SHOWN = 12
FORBIDDEN = (
    "Experiments, runs and artifacts are shown to engineers, governance officers and administrators, as in the API. "
    "A release you may read shows its candidate's digests and how it was made on the release page."
)
SAFESHRINK, EXTERNAL = "safeshrink", ExternalRun.SOURCE
RUN_SOURCES = {SAFESHRINK: "SafeShrink (verified)", EXTERNAL: "External (reported)"}
ARTIFACT_SOURCES = {
    SAFESHRINK: "Made by a SafeShrink run",
    EXTERNAL: "Output of an external run",
    "registered": "Registered (made by no run)",
}
HEX = re.compile(r"[0-9a-f]{4,64}")
LEAN_RUN = ("provenance", "provenance_envelope", "rounds")  # large JSON no list or lineage reads


def refuse_outside_inventory(request: HttpRequest) -> None:
    """The 403 page and an `access.denied` event for a role that does not read the inventory at all (reviewers,
    regulators), before any record is looked up: a list and a record's page answer alike, present or not."""
    if not inventory_visible_to(request.user):
        access_denied_record(
            actor=request.user,
            method=request.method or "GET",
            path=request.path,
            reason="role_not_allowed",
            message=FORBIDDEN,
        )
        raise PermissionDenied(FORBIDDEN)  # the project's 403 page (templates/403.html) says it


def inventory_page(view):
    """Signed-in users whose role reads the inventory (as the API); others the 403 page and an `access.denied`."""

    @login_required
    @require_safe
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refuse_outside_inventory(request)
        return view(request, *args, **kwargs)

    return wrapped


def _search(request: HttpRequest) -> tuple[str, bool]:
    q = (request.GET.get("q") or "").strip()
    if len(q) > SEARCH_MAX:
        messages.error(request, f"Search is at most {SEARCH_MAX} characters (got {len(q)}). Showing all.")
        return "", True
    return q, False


def _matches(q: str, *, names: tuple[str, ...], digests: tuple[str, ...]) -> Q:
    """A search: a name containing the words, or an id ("12" or "#12"), or a digest starting with the hex given
    (at least 4 characters)."""
    term = q.removeprefix("#").lower()
    found = Q()
    for name in names:
        found |= Q(**{f"{name}__icontains": q})
    if term.isdigit() and len(term) <= 18:
        found |= Q(pk=int(term))
    if HEX.fullmatch(term):
        for field in digests:
            found |= Q(**{f"{field}__startswith": term})
    return found


def _id_filter(request: HttpRequest, name: str, scope: QuerySet) -> tuple[int | None, bool]:
    """A record id filter (`experiment`, `parent`): an id that is not one the user can see is refused (400)."""
    value = request.GET.get(name) or None
    if value is None:
        return None, False
    if value.isdigit() and len(value) <= 18 and scope.filter(pk=int(value)).exists():
        return int(value), False
    messages.error(request, f"Unknown {name} “{value}”: no {name} with that id is visible to you. Showing all.")
    return None, True


def _names(qs: QuerySet, field: str) -> list[str]:
    return [v for v in qs.order_by(field).values_list(field, flat=True).distinct() if v]


def _pairs(values: list[str]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def _page(request: HttpRequest, qs):
    return Paginator(qs, PER_PAGE).get_page(request.GET.get("page"))


def _list_context(page, filters: dict, q: str, **extra) -> dict:
    active = {k: v for k, v in filters.items() if v not in (None, "")}
    return {
        "page": page,
        "filters": filters,
        "q": q,
        "filtered": bool(active or q),
        "query": urlencode({**active, **({"q": q} if q else {})}),
        **extra,
    }


# ---- experiments


@inventory_page
def experiment_list(request: HttpRequest) -> HttpResponse:
    experiments = experiments_visible_to(request.user)
    owners = _names(experiments, "owner__username")
    filters, refused = _choice_filters(
        request, {"risk_tier": RiskTier.values, "kind": ModelKind.values, "owner": owners}
    )
    q, too_long = _search(request)
    if filters["risk_tier"]:
        experiments = experiments.filter(risk_tier=filters["risk_tier"])
    if filters["kind"]:
        experiments = experiments.filter(base_artifact__kind=filters["kind"])
    if filters["owner"]:
        experiments = experiments.filter(owner__username=filters["owner"])
    if q:
        experiments = experiments.filter(_matches(q, names=("name",), digests=("base_artifact__digest",)))
    page = _page(request, experiments.order_by("-created_at", "-pk"))
    rows = list(page.object_list)
    ids = [e.pk for e in rows]
    runs = _counts(CompressionRun.objects.filter(experiment__in=ids))
    external = _counts(ExternalRun.objects.filter(experiment__in=ids))
    releases = _counts(releases_visible_to(request.user).filter(experiment__in=ids))
    for e in rows:
        e.run_count, e.release_count = runs.get(e.pk, 0) + external.get(e.pk, 0), releases.get(e.pk, 0)
    return render(
        request,
        "governance/experiments.html",
        status=400 if refused or too_long else 200,
        context=_list_context(
            page,
            filters,
            q,
            rows=rows,
            owner_choices=_pairs(owners),
            tiers=RiskTier.choices,
            kinds=ModelKind.choices,
            may_create=request.user.role == Role.ENGINEER,
        ),
    )


def _counts(qs: QuerySet) -> dict[int, int]:
    return dict(qs.order_by().values("experiment").annotate(n=Count("id")).values_list("experiment", "n"))


@inventory_page
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    experiment = get_object_or_404(experiments_visible_to(user), pk=pk)
    runs = runs_visible_to(user).filter(experiment=experiment).defer(*LEAN_RUN).order_by("-created_at", "-pk")
    external = external_runs_visible_to(user).filter(experiment=experiment).order_by("-created_at", "-pk")
    releases = (
        releases_visible_to(user)
        .filter(experiment=experiment)
        .select_related("compression_run", "external_run")
        .order_by("-created_at", "-pk")
    )
    return render(
        request,
        "governance/experiment.html",
        {
            "experiment": experiment,
            "runs": list(runs[:DETAIL_ROWS]),
            "run_total": runs.count(),
            "external": list(external[:DETAIL_ROWS]),
            "external_total": external.count(),
            "releases": list(releases[:DETAIL_ROWS]),
            "release_total": releases.count(),
            "detail_rows": DETAIL_ROWS,
        },
    )


# ---- runs: SafeShrink's own and external ones


def _run_statuses() -> list[tuple[str, str]]:
    statuses = dict(RunStatus.choices)
    for value, label in ExternalRunStatus.choices:
        statuses.setdefault(value, f"{label} (external)")
    return list(statuses.items())


@inventory_page
def run_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    own, external = runs_visible_to(user).defer(*LEAN_RUN), external_runs_visible_to(user)
    experiments = experiments_visible_to(user)
    owners = _names(experiments, "owner__username")
    # SafeShrink's methods, any other a run of the user's records (an older method), external runs' own names
    methods = sorted({*SUPPORTED_METHODS, *_names(own, "method"), *_names(external, "method")})
    statuses = _run_statuses()
    filters, refused = _choice_filters(
        request,
        {
            "source": list(RUN_SOURCES),
            "status": [value for value, _ in statuses],
            "method": methods,
            "kind": ModelKind.values,
            "risk_tier": RiskTier.values,
            "owner": owners,
        },
    )
    experiment, bad_experiment = _id_filter(request, "experiment", experiments)
    q, too_long = _search(request)
    common = Q()
    for name, field in (("kind", "base_artifact__kind"), ("risk_tier", "risk_tier"), ("owner", "owner__username")):
        if filters[name]:
            common &= Q(**{f"experiment__{field}": filters[name]})
    if experiment is not None:
        common &= Q(experiment_id=experiment)
    if filters["status"]:
        common &= Q(status=filters["status"])
    own, external = own.filter(common), external.filter(common)
    if filters["method"]:
        own = own.filter(method=filters["method"])
        external = external.filter(Q(method=filters["method"]) | Q(known_method=filters["method"]))
    if q:
        own = own.filter(_matches(q, names=("method", "experiment__name"), digests=("output_artifact__digest",)))
        external = external.filter(
            _matches(q, names=("name", "method", "experiment__name"), digests=("output_artifact__digest", "run_uuid"))
        )
    parts = []
    for source, qs in ((SAFESHRINK, own), (EXTERNAL, external)):
        if filters["source"] in (None, source):
            parts.append(
                qs.order_by().values("id", "created_at").annotate(source=Value(source, output_field=CharField()))
            )
    combined = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    page = _page(request, combined.order_by("-created_at", "-id"))
    entries = list(page.object_list)
    records = {
        source: model.objects.select_related(
            "experiment", "experiment__owner", "experiment__base_artifact", "output_artifact"
        ).in_bulk([e["id"] for e in entries if e["source"] == source])
        for source, model in ((SAFESHRINK, CompressionRun), (EXTERNAL, ExternalRun))
    }
    rows = [{"source": e["source"], "run": records[e["source"]][e["id"]]} for e in entries]
    experiment_record = experiments.filter(pk=experiment).first() if experiment is not None else None
    return render(
        request,
        "governance/runs.html",
        status=400 if refused or bad_experiment or too_long else 200,
        context=_list_context(
            page,
            {**filters, "experiment": str(experiment) if experiment is not None else None},
            q,
            rows=rows,
            experiment=experiment_record,
            owner_choices=_pairs(owners),
            method_choices=_pairs(methods),
            statuses=statuses,
            sources=list(RUN_SOURCES.items()),
            tiers=RiskTier.choices,
            kinds=ModelKind.choices,
        ),
    )


# ---- artifacts


def _made_by_run() -> Exists:
    return Exists(CompressionRun.objects.filter(output_artifact=OuterRef("pk")))


def _made_by_external_run() -> Exists:
    return Exists(ExternalRun.objects.filter(output_artifact=OuterRef("pk")))


def _by_source(artifacts: QuerySet, source: str) -> QuerySet:
    """Artifacts annotated `made_here` / `made_elsewhere` (a SafeShrink run's / an external run's output)."""
    if source == SAFESHRINK:
        return artifacts.filter(made_here=True)
    if source == EXTERNAL:
        return artifacts.filter(made_elsewhere=True)
    return artifacts.filter(made_here=False, made_elsewhere=False)


def _source_of(artifact: ModelArtifact) -> str:
    """How the artifact came to be, in words (a fact about the artifact, whoever may see the run that made it)."""
    if CompressionRun.objects.filter(output_artifact=artifact).exists():
        return ARTIFACT_SOURCES[SAFESHRINK]
    if ExternalRun.objects.filter(output_artifact=artifact).exists():
        return ARTIFACT_SOURCES[EXTERNAL]
    return ARTIFACT_SOURCES["registered"]


def _makers(user, artifact_ids: list[int]) -> dict[int, list]:
    """The visible runs (SafeShrink's and external) that made each of the artifacts."""
    makers: dict[int, list] = {}
    for qs in (runs_visible_to(user).defer(*LEAN_RUN), external_runs_visible_to(user)):
        for run in qs.filter(output_artifact__in=artifact_ids).order_by("created_at"):
            if run.output_artifact_id is not None:
                makers.setdefault(run.output_artifact_id, []).append(run)
    return makers


@inventory_page
def artifact_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    artifacts = (
        artifacts_visible_to(user)
        .select_related("created_by")
        .annotate(made_here=_made_by_run(), made_elsewhere=_made_by_external_run())
    )
    owners = _names(artifacts, "created_by__username")
    filters, refused = _choice_filters(
        request,
        {"kind": ModelKind.values, "format": ArtifactFormat.values, "source": list(ARTIFACT_SOURCES), "owner": owners},
    )
    parent, bad_parent = _id_filter(request, "parent", artifacts_visible_to(user))
    q, too_long = _search(request)
    for name, field in (("kind", "kind"), ("format", "format"), ("owner", "created_by__username")):
        if filters[name]:
            artifacts = artifacts.filter(**{field: filters[name]})
    if filters["source"]:
        artifacts = _by_source(artifacts, filters["source"])
    if parent is not None:
        artifacts = artifacts.filter(parent_id=parent)
    if q:
        artifacts = artifacts.filter(_matches(q, names=("name",), digests=("digest",)))
    page = _page(request, artifacts.order_by("-created_at", "-pk"))
    rows = list(page.object_list)
    makers = _makers(user, [a.pk for a in rows])
    # A parent outside the user's scope is named by its id only (as the API does), never by its name or digest.
    parents = set(artifacts_visible_to(user).filter(pk__in={a.parent_id for a in rows}).values_list("pk", flat=True))
    return render(
        request,
        "governance/artifacts.html",
        status=400 if refused or bad_parent or too_long else 200,
        context=_list_context(
            page,
            {**filters, "parent": str(parent) if parent is not None else None},
            q,
            rows=[
                {"artifact": a, "made_by": makers.get(a.pk, []), "parent_visible": a.parent_id in parents} for a in rows
            ],
            parent=artifacts_visible_to(user).filter(pk=parent).first() if parent is not None else None,
            owner_choices=_pairs(owners),
            kinds=ModelKind.choices,
            formats=ArtifactFormat.choices,
            sources=list(ARTIFACT_SOURCES.items()),
        ),
    )


def _artifact_node(artifact: ModelArtifact, column: str, *, current: bool = False) -> LineageNode:
    return LineageNode(
        key=f"artifact:{artifact.pk}",
        column=column,
        title=f"Artifact #{artifact.pk}",
        subtitle=artifact.name,
        detail=artifact.digest[:DIGEST_SHOWN],
        href="" if current else reverse("web:artifact", args=[artifact.pk]),
        current=current,
    )


def _run_node(run, column: str) -> LineageNode:
    external = isinstance(run, ExternalRun)
    return LineageNode(
        key=f"{'external' if external else 'run'}:{run.pk}",
        column=column,
        title=f"{'External run' if external else 'Run'} #{run.pk}",
        subtitle=run.method,
        detail=f"{run.get_status_display().lower()}{' · reported' if external else ''}",
        href=reverse("web:external-run" if external else "web:run", args=[run.pk]),
    )


def _lineage(artifact: ModelArtifact, parent, made_by, used_by, children, totals) -> str:
    """The lineage graph: parent → the runs that made the artifact → it → the runs that read it → children."""
    nodes = [_artifact_node(artifact, "current", current=True)]
    current = nodes[0].key
    if parent is not None:
        nodes.append(_artifact_node(parent, "parent"))
    elif artifact.parent_id:  # the API names the parent's id; its record is outside the viewer's scope
        nodes.append(
            LineageNode(
                key=f"artifact:{artifact.parent_id}",
                column="parent",
                title=f"Artifact #{artifact.parent_id}",
                subtitle="not visible to you",
                hidden=True,
            )
        )
    parent_key = f"artifact:{artifact.parent_id}" if artifact.parent_id else None
    edges: list[tuple[str, str]] = []
    for run in made_by:
        node = _run_node(run, "made_by")
        nodes.append(node)
        edges.append((node.key, current))
        if parent_key:
            edges.append((parent_key, node.key))
    if parent_key and not made_by:
        edges.append((parent_key, current))
    child_keys = {f"artifact:{c.pk}" for c in children}
    reached = set()
    for run in used_by:
        node = _run_node(run, "used_by")
        nodes.append(node)
        edges.append((current, node.key))
        if run.output_artifact_id and f"artifact:{run.output_artifact_id}" in child_keys:
            edges.append((node.key, f"artifact:{run.output_artifact_id}"))
            reached.add(f"artifact:{run.output_artifact_id}")
    for child in children:
        nodes.append(_artifact_node(child, "children"))
        if f"artifact:{child.pk}" not in reached:
            edges.append((current, f"artifact:{child.pk}"))
    return lineage_chart(nodes, edges, totals)


@inventory_page
def artifact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    visible = artifacts_visible_to(user)
    artifact = get_object_or_404(visible.select_related("created_by"), pk=pk)
    parent = visible.filter(pk=artifact.parent_id).first() if artifact.parent_id else None
    made_by = _makers(user, [artifact.pk]).get(artifact.pk, [])
    own_uses = runs_using_artifact(user, artifact).select_related("experiment", "output_artifact").defer(*LEAN_RUN)
    external_uses = external_runs_visible_to(user).filter(input_artifacts=artifact)
    used_by = [
        *own_uses.order_by("-created_at", "-pk")[:DETAIL_ROWS],
        *external_uses.order_by("-created_at", "-pk")[:DETAIL_ROWS],
    ]
    used_total = own_uses.count() + external_uses.count()
    children_qs = visible.filter(parent=artifact).order_by("-created_at", "-pk")
    children, children_total = list(children_qs[:DETAIL_ROWS]), children_qs.count()
    releases = (
        releases_visible_to(user)
        .filter(Q(candidate=artifact) | Q(experiment__base_artifact=artifact))
        .select_related("compression_run", "external_run")
        .order_by("-created_at", "-pk")
    )
    evaluations = (
        evaluation_runs_visible_to(user)
        .filter(artifact=artifact)
        .select_related("suite_version__suite")
        .order_by("-created_at", "-pk")
    )
    totals = {"used_by": used_total, "children": children_total}
    based = experiments_visible_to(user).filter(base_artifact=artifact).order_by("-created_at")
    return render(
        request,
        "governance/artifact.html",
        {
            "artifact": artifact,
            "parent": parent,
            "made_by": made_by,
            "used_by": used_by,
            "used_total": used_total,
            "children": children,
            "children_total": children_total,
            "experiments": list(based[:DETAIL_ROWS]),
            "experiment_total": based.count(),
            "releases": list(releases[:DETAIL_ROWS]),
            "release_total": releases.count(),
            "evaluations": list(evaluations[:DETAIL_ROWS]),
            "evaluation_total": evaluations.count(),
            "lineage": _lineage(artifact, parent, made_by, used_by, children, totals),
            "detail_rows": DETAIL_ROWS,
            "source": _source_of(artifact),
        },
    )
