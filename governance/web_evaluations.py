"""The evaluation pages: /evaluations/ (filters: status, suite, model kind, artifact; search by id, name or digest;
pages of 25) and /evaluations/<id>/ (the model, the suite version, the configuration with its deployment profile,
the platforms the predictions were computed on, progress in chunks, every stored metric overall and per slice and
subgroup, the stability pass, the runtime, and the comparisons and releases that use it); /comparisons/<id>/,
which has no page of its own: it sends the reader to its release's comparison section, or, for a comparison no
single release owns (a revalidation's, or one shared by several releases), shows a small page that links them.

Scoped exactly as the API (evaluations.selectors.evaluation_runs_visible_to, comparisons_visible_to): a record
outside the scope is 404; the roles the API refuses (regulators, reviewers) get a 403 page and one
`access.denied` event, as on the inventory pages (governance.web_inventory)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from compression.models import ModelArtifact, ModelKind, RunStatus
from evaluations.engine.catalog import CATALOG, Direction, Needs, Scope
from evaluations.models import Comparison, ComparisonStatus, EvaluationRun
from evaluations.selectors import comparisons_visible_to, evaluation_runs_visible_to
from evaluations.services.chat_runs import is_chat
from evaluations.services.profiles import config_profile
from governance.evidence import group_label, group_sort_key, number
from governance.selectors import releases_visible_to
from governance.views import _choice_filters
from governance.web_inventory import (
    DETAIL_ROWS,
    _id_filter,
    _list_context,
    _makers,
    _matches,
    _names,
    _page,
    _pairs,
    _search,
    refuse_outside_inventory,
)
from governance.web_release import BATCHING_TEXT, comparison_table, percent

FORBIDDEN = (
    "Evaluations and comparisons are shown to engineers, governance officers and administrators, as in the API. "
    "A release you may read shows its evaluations' conditions and its comparison on the release page."
)
# The catalogue's per-group metrics (what an evaluation run stores for each group), in catalogue order.
GROUP_METRICS = tuple(spec for spec in CATALOG if spec.scope is Scope.GROUP)
DIRECTION_TEXT = {Direction.HIGHER: "higher is better", Direction.LOWER: "lower is better", Direction.NONE: ""}
# The runtime figures an evaluation records (evaluations.services.runs._finish), in words, and how to show each.
RUNTIME_FIGURES = (
    ("examples_per_second", "Throughput", "rate"),
    ("example_latency_p50_s", "Latency per example, p50", "seconds"),
    ("example_latency_p95_s", "Latency per example, p95", "seconds"),
    ("batch_latency_p95_s", "Latency per batch, p95", "seconds"),
    ("tokens_per_second", "Generated tokens per second", "rate"),
    ("load_seconds", "Model load time", "seconds"),
    ("peak_rss_bytes", "Peak memory (RSS)", "bytes"),
    ("size_bytes", "Model size", "bytes"),
    ("parameter_count", "Parameters", "count"),
    ("wall_seconds", "Inference wall time", "seconds"),
)
# Configuration keys shown on their own (the rest are listed as they are stored).
SHOWN_CONFIG = frozenset({"profile", "generation", "judge", "kind", "unsafe_labels"})


def evaluation_page(view):
    """Signed-in users whose role reads evaluations (as the API); others the 403 page and an `access.denied`."""

    @login_required
    @require_safe
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refuse_outside_inventory(request)  # the evaluations API's readers: engineers, officers, admins
        return view(request, *args, **kwargs)

    return wrapped


def _chunks(evaluation: EvaluationRun) -> dict:
    done, total = len(evaluation.chunks_done or ()), evaluation.chunks_total
    return {"done": done, "total": total, "percent": round(100 * done / total) if total else None}


def _uses(user, evaluation_ids: list[int]) -> dict[int, list[dict]]:
    """For each evaluation, the releases the user may see that use it (as baseline or candidate evaluation)."""
    uses: dict[int, list[dict]] = {}
    if not evaluation_ids:
        return uses
    releases = (
        releases_visible_to(user)
        .filter(Q(baseline_evaluation__in=evaluation_ids) | Q(candidate_evaluation__in=evaluation_ids))
        .order_by("-created_at", "-pk")
    )
    for release in releases:
        for role, pk in (("baseline", release.baseline_evaluation_id), ("candidate", release.candidate_evaluation_id)):
            if pk in evaluation_ids:
                uses.setdefault(pk, []).append({"release": release, "role": role})
    return uses


# ---- the list


@evaluation_page
def evaluation_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    evaluations = evaluation_runs_visible_to(user).select_related("artifact", "suite_version__suite")
    suites = _names(evaluations, "suite_version__suite__name")
    filters, refused = _choice_filters(request, {"status": RunStatus.values, "suite": suites, "kind": ModelKind.values})
    evaluated = ModelArtifact.objects.filter(pk__in=evaluations.values("artifact_id"))
    artifact, bad_artifact = _id_filter(request, "artifact", evaluated)
    q, too_long = _search(request)
    if filters["status"]:
        evaluations = evaluations.filter(status=filters["status"])
    if filters["suite"]:
        evaluations = evaluations.filter(suite_version__suite__name=filters["suite"])
    if filters["kind"]:
        evaluations = evaluations.filter(artifact__kind=filters["kind"])
    if artifact is not None:
        evaluations = evaluations.filter(artifact_id=artifact)
    if q:
        evaluations = evaluations.filter(
            _matches(
                q,
                names=("artifact__name", "suite_version__suite__name"),
                digests=("artifact__digest", "config_digest"),
            )
        )
    page = _page(request, evaluations.order_by("-created_at", "-pk"))
    rows = list(page.object_list)
    uses = _uses(user, [e.pk for e in rows])
    return render(
        request,
        "governance/evaluations.html",
        status=400 if refused or bad_artifact or too_long else 200,
        context=_list_context(
            page,
            {**filters, "artifact": str(artifact) if artifact is not None else None},
            q,
            rows=[
                {
                    "evaluation": e,
                    "profile": config_profile(e.config or {}),
                    "chunks": _chunks(e),
                    "uses": uses.get(e.pk, []),
                }
                for e in rows
            ],
            artifact=evaluated.filter(pk=artifact).first() if artifact is not None else None,
            statuses=RunStatus.choices,
            suite_choices=_pairs(suites),
            kinds=ModelKind.choices,
        ),
    )


# ---- one evaluation


# A chat model's decision is the judge's 0/1 (refused or not): scores of a probability say nothing about it.
CHAT_HIDDEN = frozenset({"brier", "nll", "mean_confidence", "ece"})


def _metrics_table(metrics: dict | None, stability: dict | None, *, chat: bool = False) -> dict:
    """Every group (overall, slices, subgroups, in the dossier's order) × every catalogue metric the run stored
    for some group, and each group's share of decisions the stability pass moved. A chat evaluation's table
    starts with the judged behaviour and perplexity and leaves out the probability scores."""
    metrics = metrics if isinstance(metrics, dict) else {}
    groups = sorted(((k, v) for k, v in metrics.items() if isinstance(v, dict)), key=lambda kv: group_sort_key(kv[0]))
    columns = [spec for spec in GROUP_METRICS if any(spec.name in values for _, values in groups)]
    if chat:
        chat_first = [spec for spec in columns if spec.needs in (Needs.BEHAVIOUR, Needs.REFERENCES)]
        columns = chat_first + [spec for spec in columns if spec not in chat_first and spec.name not in CHAT_HIDDEN]
    unstable = ((stability or {}).get("groups") or {}) if isinstance(stability, dict) else {}
    rows = []
    for key, values in groups:
        share = unstable.get(key) or {}
        rows.append(
            {
                "key": key,
                "label": group_label(key),
                "n": values.get("n"),
                "n_unsafe": values.get("n_unsafe"),
                "cells": [number(values.get(spec.name)) for spec in columns],
                "unstable": {"count": share.get("unstable"), "rate": percent(number(share.get("unstable_rate")))}
                if share
                else None,
            }
        )
    return {
        "columns": [
            {"name": s.name, "title": s.title, "unit": s.unit, "direction": DIRECTION_TEXT[s.direction]}
            for s in columns
        ],
        "rows": rows,
        "stability": bool(unstable),
    }


def _subgroup_rates(metrics: dict | None) -> list[dict]:
    """The overall group's per-subgroup miss (FNR) and false-alarm (FPR) rates, every subgroup, by name."""
    overall = (metrics or {}).get("overall") if isinstance(metrics, dict) else None
    table = (overall or {}).get("subgroups") if isinstance(overall, dict) else None
    if not isinstance(table, dict):
        return []
    return [
        {
            "name": name,
            "n": row.get("n"),
            "n_unsafe": row.get("n_unsafe"),
            "n_safe": row.get("n_safe"),
            "fnr": number(row.get("fnr")),
            "fpr": number(row.get("fpr")),
            "eligible": bool(row.get("eligible")),
        }
        for name, row in sorted(table.items())
        if isinstance(row, dict)
    ]


def _figure(value: float | None, kind: str) -> str:
    """A runtime figure in words (bytes are left to the template's filesizeformat)."""
    if value is None:
        return "—"
    if kind == "seconds":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.2f} s"
    if kind == "rate":
        return f"{value:,.1f} per second"
    return f"{value:,.0f}"


def _runtime(runtime: dict | None) -> list[dict]:
    runtime = runtime if isinstance(runtime, dict) else {}
    figures = []
    for key, label, kind in RUNTIME_FIGURES:
        if key in runtime:
            value = number(runtime.get(key))
            figures.append({"key": key, "label": label, "kind": kind, "value": value, "text": _figure(value, kind)})
    return figures


def _comparisons(user, evaluation: EvaluationRun) -> list[dict]:
    """The visible comparisons this evaluation is the baseline or the candidate of, each with the other side and
    the visible releases whose comparison it is (their comparison section) or whose baseline and candidate it
    compares again (a revalidation)."""
    found = list(
        comparisons_visible_to(user)
        .filter(Q(baseline_run=evaluation) | Q(candidate_run=evaluation))
        .select_related("baseline_run", "candidate_run")
        .order_by("-created_at", "-pk")[:DETAIL_ROWS]
    )
    owners: dict[int, list] = {}
    for release in releases_visible_to(user).filter(comparison__in=found).order_by("-created_at", "-pk"):
        if release.comparison_id is not None:
            owners.setdefault(release.comparison_id, []).append(release)
    out = []
    for c in found:
        baseline = c.baseline_run_id == evaluation.pk
        out.append(
            {
                "comparison": c,
                "role": "baseline" if baseline else "candidate",
                "other": c.candidate_run if baseline else c.baseline_run,
                "releases": owners.get(c.pk, []),
                "revalidates": [] if owners.get(c.pk) else list(_revalidated(user, c)),
            }
        )
    return out


def _revalidated(user, comparison: Comparison) -> QuerySet:
    """Releases a comparison they do not own compares again: same baseline evaluation, same candidate artifact
    (governance.services.monitoring: a revalidation evaluates the candidate afresh against the original baseline)."""
    return (
        releases_visible_to(user)
        .filter(baseline_evaluation=comparison.baseline_run_id, candidate=comparison.candidate_run.artifact_id)
        .exclude(comparison=comparison)
        .order_by("-created_at", "-pk")
    )


@evaluation_page
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    evaluation = get_object_or_404(
        evaluation_runs_visible_to(user).select_related(
            "artifact", "suite_version__suite", "suite_version__judge", "requested_by"
        ),
        pk=pk,
    )
    config = evaluation.config if isinstance(evaluation.config, dict) else {}
    profile = config_profile(config)
    chat = is_chat(config)
    return render(
        request,
        "governance/evaluation.html",
        {
            "evaluation": evaluation,
            "artifact": evaluation.artifact,
            "made_by": _makers(user, [evaluation.artifact_id]).get(evaluation.artifact_id, []),
            "suite_version": evaluation.suite_version,
            "profile": profile,
            "declared": "profile" in config,
            "batching": BATCHING_TEXT.get(str(profile.get("batching")), profile.get("batching")),
            "generation": config.get("generation") if chat else None,
            "judge": config.get("judge") if chat else None,
            "settings": sorted((k, v) for k, v in config.items() if k not in SHOWN_CONFIG),
            "unsafe_labels": config.get("unsafe_labels") or [],
            "chat": chat,
            "platforms": [p for p in ((evaluation.runtime or {}).get("platforms") or []) if isinstance(p, dict)],
            "chunks": _chunks(evaluation),
            "table": _metrics_table(evaluation.metrics, evaluation.stability, chat=chat),
            "subgroups": _subgroup_rates(evaluation.metrics),
            "stability": evaluation.stability if isinstance(evaluation.stability, dict) else None,
            "runtime": _runtime(evaluation.runtime),
            "uses": _uses(user, [evaluation.pk]).get(evaluation.pk, []),
            "comparisons": _comparisons(user, evaluation),
        },
    )


# ---- a comparison: its release's comparison section, or a small page


def _release_section(release, comparison: Comparison) -> str:
    """The release page's section for the comparison: the table once computed, the progress card before."""
    anchor = "comparison" if comparison.status == ComparisonStatus.DONE else "release-progress"
    return f"{reverse('web:release', args=[release.pk])}#{anchor}"


@evaluation_page
def comparison_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    comparison = get_object_or_404(
        comparisons_visible_to(user).select_related(
            "baseline_run__artifact", "candidate_run__artifact", "baseline_run__suite_version__suite"
        ),
        pk=pk,
    )
    owners = list(releases_visible_to(user).filter(comparison=comparison).order_by("-created_at", "-pk"))
    if len(owners) == 1:
        return redirect(_release_section(owners[0], comparison))
    return render(
        request,
        "governance/comparison.html",
        {
            "comparison": comparison,
            "owners": [{"release": r, "url": _release_section(r, comparison)} for r in owners],
            "revalidates": list(_revalidated(user, comparison)) if not owners else [],
            "table": comparison_table(comparison.results),
        },
    )
