"""Links to records, the same everywhere: ``{% load links %}`` then ``{% artifact_link a %}``, ``{% run_link r %}``
(a compression run or an external run), ``{% experiment_link e %}``, ``{% release_link r %}``,
``{% evaluation_link e %}`` (an evaluation run, or its id). Each shows the
record's id (and an artifact's short digest, full digest in the title). Experiments, runs and artifacts are links
only for the roles that may open their pages (compression.selectors.inventory_visible_to); for others (regulators,
reviewers) the same words are shown as plain text. A missing record (None) is "—"."""

from django import template
from django.urls import reverse
from django.utils.html import format_html

from compression.models import CompressionRun, Experiment, ModelArtifact
from compression.selectors import inventory_visible_to
from evaluations.models import EvaluationRun
from tracking.models import ExternalRun

register = template.Library()

DIGEST_SHOWN = 12
NOTHING = "—"


def _links(context) -> bool:
    user = context.get("user")
    return bool(user is not None and user.is_authenticated and inventory_visible_to(user))


def _render(context, url: str, text: str, title: str, digest: str = ""):
    code = format_html(' <code title="{}">{}</code>', digest, digest[:DIGEST_SHOWN]) if digest else ""
    if _links(context):
        return format_html('<a class="record-link" href="{}" title="{}">{}{}</a>', url, title, text, code)
    return format_html('<span class="record" title="{}">{}{}</span>', title, text, code)


@register.simple_tag(takes_context=True)
def artifact_link(context, artifact: ModelArtifact | None, label: str = "artifact"):
    if artifact is None:
        return NOTHING
    url = reverse("web:artifact", args=[artifact.pk])
    title = f"{artifact.name} · sha256 {artifact.digest}"
    return _render(context, url, f"{label} #{artifact.pk}".strip(), title, artifact.digest)


@register.simple_tag(takes_context=True)
def run_link(context, run: CompressionRun | ExternalRun | None, label: str = ""):
    if run is None:
        return NOTHING
    if isinstance(run, ExternalRun):
        url, text = reverse("web:external-run", args=[run.pk]), label or "external run"
    else:
        url, text = reverse("web:run", args=[run.pk]), label or "run"
    return _render(context, url, f"{text} #{run.pk}", f"{run.method} ({run.get_status_display().lower()})")


@register.simple_tag(takes_context=True)
def experiment_link(context, experiment: Experiment | None):
    if experiment is None:
        return NOTHING
    url = reverse("web:experiment", args=[experiment.pk])
    return _render(context, url, f"{experiment.name} (#{experiment.pk})", f"experiment #{experiment.pk}")


@register.simple_tag
def release_link(release, label: str = "Release"):
    """A release's page is scoped by governance.selectors.releases_visible_to: use it on releases read through it."""
    if release is None:
        return NOTHING
    url = reverse("web:release", args=[release.pk])
    return format_html('<a class="record-link" href="{}">{} #{}</a>', url, label, release.pk)


@register.simple_tag(takes_context=True)
def evaluation_link(context, evaluation: EvaluationRun | int | str | None, label: str = "evaluation"):
    """An evaluation run, or its id where only the id is at hand (the release page's conditions and progress).
    Its page is for the roles that read evaluations through the API (the same roles as the inventory)."""
    if evaluation is None or evaluation == "":
        return NOTHING
    if isinstance(evaluation, EvaluationRun):
        pk = evaluation.pk
        title = (
            f"artifact #{evaluation.artifact_id} on suite version #{evaluation.suite_version_id} "
            f"({evaluation.get_status_display().lower()})"
        )
    else:
        pk, title = int(evaluation), f"evaluation #{evaluation}"
    return _render(context, reverse("web:evaluation", args=[pk]), f"{label} #{pk}".strip(), title)
