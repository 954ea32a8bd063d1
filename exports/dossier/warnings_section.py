"""What the dossier says about the release's warnings (``release.warnings``: what its evidence should be read
with, as the API and the release page show it) and about the policy's setting that turns the warning
`evaluated_on_training_data` into a refusal (``policy.forbid_training_data_overlap``).

Bundles from before either field exist: no warnings then means no callout, and the policy sentence says the
bundle predates the setting. A malformed entry is shown by its message or code, never an error."""

from __future__ import annotations

from collections.abc import Mapping

from .format import _d, _int, _l, _num, _text

TRAINING_DATA = "evaluated_on_training_data"
# A title per known warning code; an unknown code is shown by its own words.
TITLES = {TRAINING_DATA: "Evaluated on the compression run's training or calibration data"}
# What the reader should do with the evidence, per known code.
READING = {
    TRAINING_DATA: "The metrics and the gate verdict in this dossier were measured, in whole or in part, on examples "
    "the candidate was compressed with, so they may overstate how it does on data it has not seen."
}


def _overlap_policy(policy: Mapping) -> bool | None:
    """The pinned policy's forbid_training_data_overlap: True, False, or None when the bundle does not carry it."""
    value = policy.get("forbid_training_data_overlap")
    return value if isinstance(value, bool) else None


def training_overlap_sentence(bundle: Mapping) -> str:
    """The policy section's sentence on evaluating on the run's training or calibration data."""
    forbids = _overlap_policy(_d(bundle.get("policy")))
    if forbids is True:
        return (
            "This policy forbids evaluating on the compression run's training or calibration data: a release whose "
            "evaluation suite shares examples with it is refused."
        )
    if forbids is False:
        return (
            "This policy does not forbid evaluating on the compression run's training or calibration data: such a "
            "release is made, with a warning."
        )
    return (
        "This bundle predates the policy setting on evaluating on the compression run's training or calibration data "
        "(such releases were then neither refused nor warned about)."
    )


def _detail(warning: Mapping) -> str:
    """The figures of a training-data warning in words (empty when the bundle lacks them)."""
    shared, data = warning.get("shared_examples"), warning.get("data_suite_version")
    if _num(shared) is None or _num(data) is None:
        return ""
    same = warning.get("suite_version") == data
    return (
        f"Every one of its {_int(shared)} examples was in the run's data (suite version #{_text(data)})."
        if same
        else f"{_int(shared)} of its examples are also in the run's data (suite version #{_text(data)})."
    )


def evidence_warnings(bundle: Mapping) -> dict:
    """{"rows": one per warning (code, title, message, detail, reading, policy), "label": the executive summary's
    row label ("" when there is none)}."""
    policy = _d(bundle.get("policy"))
    forbids = _overlap_policy(policy)
    rows = []
    for warning in _l(_d(bundle.get("release")).get("warnings")):
        if not isinstance(warning, Mapping):
            continue
        code = _text(warning.get("code"), "")
        message = _text(warning.get("message"), "")
        policy_note = ""
        if code == TRAINING_DATA and forbids is False and policy:
            policy_note = (
                f"Policy {_text(policy.get('name'))} v{_text(policy.get('version'))} allows it with this warning "
                "(it does not forbid evaluating on the training or calibration data)."
            )
        rows.append(
            {
                "code": code,
                "title": TITLES.get(code, code.replace("_", " ").capitalize() or "Warning"),
                "message": message,
                # The figures in words only where the bundle gives no message (which states them).
                "detail": _detail(warning) if code == TRAINING_DATA and not message else "",
                "reading": READING.get(code, ""),
                "policy": policy_note,
            }
        )
    return {"rows": rows, "label": "" if not rows else "Warning" if len(rows) == 1 else "Warnings"}
