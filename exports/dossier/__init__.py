"""The release dossier: a PDF for regulators and auditors about one release, rendered only from its
evidence bundle (the same dict that is exported as signed JSON), so the PDF and the JSON carry the
same digests.

- :func:`bundle_digest` — sha256 of the bundle's canonical JSON (``trust.canonical.digest``, the function
  that gives ``Export.bundle_digest``), printed on the cover and in every page footer of the PDF.
- :func:`dossier_context` — the bundle turned into display-ready values (all formatting happens
  here, in Python, so the template holds no logic and the output does not depend on the locale).
- :func:`render_dossier_html` — the dossier as HTML (``templates/exports/dossier.html``).
- :func:`render_dossier_pdf` — the dossier as PDF bytes (WeasyPrint). Deterministic: the same bundle
  gives byte-identical PDFs (no creation date, a fixed ``/ID`` derived from the bundle digest, rows
  in a fixed order rather than dict order, fonts named explicitly, embedded font subsets with a fixed
  timestamp).

A missing part of the bundle (no taxonomy, no comparison, no reviews, ...) is stated in one line; it
never makes rendering fail.

Modules: ``format`` (formatters, metric titles and directions from the catalogue), ``evidence_sections``
(taxonomy, policy, gate, comparisons, runtime, flips, calibration, subgroups), ``governance_sections``
(artifacts and provenance, reviews, escalations, incidents, decisions, rollout, ledger excerpt),
``stability_sections`` (evaluation conditions: deployment profile and platforms; decision stability),
``warnings_section`` (the release's warnings and the policy's training-data setting), ``narrative`` (the
executive summary) and ``render`` (context, HTML, PDF).
"""

from __future__ import annotations

from .evidence_sections import FLIPS_SHOWN
from .governance_sections import LEDGER_EVENTS_SHOWN
from .render import SECTIONS, TEMPLATE, bundle_digest, dossier_context, render_dossier_html, render_dossier_pdf

__all__ = [
    "FLIPS_SHOWN",
    "LEDGER_EVENTS_SHOWN",
    "SECTIONS",
    "TEMPLATE",
    "bundle_digest",
    "dossier_context",
    "render_dossier_html",
    "render_dossier_pdf",
]
