"""The dossier's evaluation conditions and decision stability.

- :func:`_conditions` — the deployment profile the evaluations ran under (batch size, batching, padding,
  length, threads, device, CPU instruction sets, int8 engine; from the baseline run's configuration through
  ``evaluations.services.profiles.config_profile``, which also reads configurations from before profiles)
  and the platforms each run's predictions were actually computed on (``runtime.platforms``), the policy's
  required profile and how the comparison timed both models (``comparison.runtime.measurement``).
- :func:`_stability` — how many of each model's decisions changed when the batches were recomposed (the
  stability pass), overall and per group; the stable and unstable flips; McNemar on every flip beside
  McNemar on stable flips only, with Holm-adjusted p; and which flips the gate counted.

Read only from the evidence bundle: ``comparison.stability`` (counts) when the bundle carries it, else each
run's ``evaluations.<role>.stability``, else the shares in ``comparison.groups[*].instability``;
``policy.flip_basis`` when carried, else the gate verdicts' ``flip_basis``. A comparison without a stability
pass (older evidence) gives ``present: False`` and the template says so in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluations.services.profiles import config_profile
from exports import charts

from .evidence_sections import _platform_text
from .format import _d, _int, _l, _num, _pct, _pvalue, _text

PROFILE_ROWS = (
    ("batch_size", "Batch size"),
    ("batching", "Batching"),
    ("padding_side", "Padding side"),
    ("max_length", "Maximum length"),
    ("threads", "Threads"),
    ("device", "Device"),
    ("isa", "CPU instruction sets"),
    ("quantized_engine", "Quantized engine"),
)
BATCHING_TEXT = {
    "fixed": "in suite order, a fixed number at a time",
    "length_sorted": "sorted by token length, then a fixed number at a time",
    "single": "one example at a time (an online service)",
}
# What a gate verdict's flip_basis (governance.gate) and a policy's flip_basis mean, in words.
BASIS_TEXT = {
    "stable": "stable flips only",
    "all": "every flip",
    "all (no stability pass)": "every flip (the runs had no stability pass)",
}


def _profile_value(key: str, value: Any) -> str:
    if key == "threads":
        return "torch default" if value is None else _text(value)
    if key in ("isa", "quantized_engine"):
        return _text(value, "not declared")
    if key == "batching":
        return (
            f"{value} ({BATCHING_TEXT[value]})" if isinstance(value, str) and value in BATCHING_TEXT else _text(value)
        )
    if key == "max_length":
        return f"{_text(value)} tokens"
    return _text(value)


def _profile(config: Any) -> dict:
    config = _d(config)
    return _d(config_profile(config)) if config else {}


def _platform_matches(platform: Mapping, profile: Mapping) -> str:
    """Whether a platform has the declared profile's instruction sets and int8 engine."""
    declared_isa = [x for x in _l(profile.get("isa")) if isinstance(x, str)]
    engine = profile.get("quantized_engine")
    if not declared_isa and engine is None:
        return "nothing declared to compare"
    missing = [x for x in declared_isa if x not in _l(platform.get("isa"))]
    if missing:
        return f"no: lacks {', '.join(missing)}"
    if engine is not None and platform.get("quantized_engine") not in (None, engine):
        return f"no: quantized engine {_text(platform.get('quantized_engine'))}, declared {_text(engine)}"
    return "yes"


def _generation_rows(config: Mapping) -> list[tuple[str, str]]:
    """A chat evaluation's generation settings and judge, as (label, value) rows ([] for classifiers)."""
    if config.get("kind") != "chat":
        return []
    generation, judge = _d(config.get("generation")), _d(config.get("judge"))
    stops = [str(s) for s in _l(generation.get("stop_strings"))]
    return [
        ("System prompt", _text(generation.get("system_prompt"), "none (the chat template's default)")),
        ("Max new tokens", _text(generation.get("max_new_tokens"))),
        ("Stop strings", ", ".join(stops) if stops else "none (end of turn only)"),
        ("Decoding", _text(generation.get("decoding"))),
        ("Padding side", "left (generation always pads prompts on the left)"),
        ("Chat template (sha256)", _text(generation.get("chat_template_digest"))),
        ("Judge", f"{_text(judge.get('name'))} ({_text(judge.get('artifact'))})"),
        ("Degeneration detector", _text(judge.get("degeneration"))),
    ]


def _conditions(evaluations: Mapping, comparison: Mapping, bundle_policy: Any = None) -> dict:
    """The deployment profile (baseline run; the comparison's statistics when the run is missing), the
    policy's required profile, the platforms of both runs (each once, with the runs that used it) and how
    the runtime ratios were measured."""
    base, cand = _d(evaluations.get("baseline")), _d(evaluations.get("candidate"))
    profile = _profile(base.get("config")) or _d(_d(comparison.get("statistics")).get("profile"))
    candidate_profile = _profile(cand.get("config"))
    platforms: dict[str, dict] = {}
    for role, run in (("baseline", base), ("candidate", cand)):
        for p in (p for p in _l(_d(run.get("runtime")).get("platforms")) if isinstance(p, Mapping)):
            text = _platform_text(p) + (f", torch {_text(p.get('torch'))}" if p.get("torch") else "")
            entry = platforms.setdefault(text, {"text": text, "runs": [], "matches": _platform_matches(p, profile)})
            entry["runs"].append(role)
    policy = _d(bundle_policy)
    required = policy.get("required_profile")
    chat = _d(base.get("config")).get("kind") == "chat"
    return {
        "present": bool(profile),
        "declared": "profile" in _d(base.get("config")),
        # None: the bundle does not say (older bundles); []: the policy requires no particular profile.
        "required": None
        if not isinstance(required, Mapping)
        else [(label, _profile_value(key, required[key])) for key, label in PROFILE_ROWS if key in required],
        # a chat evaluation pads on the left and does not truncate prompts: those rows are the generation's below
        "rows": [
            (label, _profile_value(key, profile.get(key)))
            for key, label in PROFILE_ROWS
            if key in profile and not (chat and key in ("padding_side", "max_length"))
        ],
        "candidate_differs": bool(candidate_profile and profile and candidate_profile != profile),
        "platforms": [{**p, "runs": " and ".join(p["runs"])} for p in platforms.values()],
        "runs_without_platforms": [
            role
            for role, run in (("baseline", base), ("candidate", cand))
            if run and not _l(_d(run.get("runtime")).get("platforms"))
        ],
        "timing": _timing(comparison),
        # Chat models: how the answers were generated and judged (part of the configuration, so of its digest).
        "generation": _generation_rows(_d(base.get("config"))),
    }


def _timing(comparison: Mapping) -> str:
    """How the runtime ratios the gate judges were measured (comparison.runtime.measurement), in one line;
    "" when the bundle does not say."""
    runtime = _d(comparison.get("runtime"))
    measurement = _d(runtime.get("measurement"))
    if not measurement:
        return ""
    if measurement.get("error"):
        return f"The paired runtime measurement failed ({_text(measurement['error'])}): no timing ratios."
    where = _d(measurement.get("platform")).get("cpu_model")
    host = measurement.get("host")
    place = ", ".join(_text(x) for x in (host, where) if x)
    ratios = "; ".join(
        f"{label} {_num(runtime.get(key)):.2f}×"
        for key, label in (("throughput_ratio", "throughput"), ("example_latency_p95_ratio", "p95 latency"))
        if _num(runtime.get(key)) is not None
    )
    return (
        f"Runtime ratios the gate judges (candidate / baseline{': ' + ratios if ratios else ''}), measured in the "
        f"comparison job — {_text(measurement.get('method'), 'both models side by side')}"
        f"{f'; on {place}' if place else ''}."
    )


def _share(summary: Mapping | None, share: Any = None, n: Any = None) -> str:
    """ "0.6% (1 of 180)" from a stability summary, or "0.6%" from a bare share."""
    summary = _d(summary)
    rate = _num(summary.get("unstable_rate", share))
    if rate is None:
        return "—"
    unstable, total = _num(summary.get("unstable")), _num(summary.get("n", n))
    counts = f" ({_int(unstable)} of {_int(total)})" if unstable is not None and total is not None else ""
    return f"{_pct(rate)}{counts}"


def _test(test: Any) -> dict:
    t = _d(test)
    return {
        "bc": f"{_int(t.get('b'))} / {_int(t.get('c'))}" if t else "—",
        "p": _pvalue(t.get("p_value")),
        "holm": _pvalue(t.get("p_holm")),
    }


def _basis(bundle: Mapping, present: bool) -> dict:
    """Which flips the gate counted: the policy's flip basis, and what each flip-rate rule actually counted."""
    policy_basis = _d(bundle.get("policy")).get("flip_basis")
    policy_basis = policy_basis if isinstance(policy_basis, str) else None
    rules = [
        {"title": _text(v.get("title") or v.get("rule")), "counted": BASIS_TEXT.get(v["flip_basis"], v["flip_basis"])}
        for v in _l(bundle.get("gate"))
        if isinstance(v, Mapping) and isinstance(v.get("flip_basis"), str)
    ]
    stable_basis = policy_basis == "stable" or any(
        v.get("flip_basis") == "stable" for v in _l(bundle.get("gate")) if isinstance(v, Mapping)
    )
    return {
        "policy": BASIS_TEXT.get(policy_basis, _text(policy_basis, "")) if policy_basis else "",
        "rules": rules,
        "reported": "stable" if stable_basis and present else "main",
    }


def _stability(bundle: Mapping) -> dict:
    comparison = _d(bundle.get("comparison"))
    groups = _d(comparison.get("groups"))
    stability = _d(comparison.get("stability"))
    present = bool(stability) or any(_d(_d(g).get("instability")) for g in groups.values())
    basis = _basis(bundle, present)
    out: dict[str, Any] = {"present": present, "comparison": bool(comparison), "basis": basis}
    if not present:
        return out
    overall = _d(groups.get("overall"))
    flips = _d(stability.get("flips"))
    stable_flips = _num(flips.get("stable", overall.get("stable_flips")))
    unstable_flips = _num(flips.get("unstable"))
    if unstable_flips is None and stable_flips is not None and _num(overall.get("flips")) is not None:
        unstable_flips = _num(overall.get("flips")) - stable_flips
    # Counts per model: the comparison's summary, else each run's own stability pass.
    evaluations = _d(bundle.get("evaluations"))
    per_model = {
        role: _d(stability.get(role)) or _d(_d(evaluations.get(role)).get("stability"))
        for role in ("baseline", "candidate")
    }
    rows = []
    for key in sorted(groups, key=lambda k: charts.group_sort_key(str(k))):
        g = _d(groups[key])
        shares = _d(g.get("instability"))
        group_flips, group_stable = _num(g.get("flips")), _num(g.get("stable_flips"))
        rows.append(
            {
                "label": charts.group_label(str(key)),
                "n": _int(g.get("n")),
                "baseline": _share(
                    _d(per_model["baseline"].get("groups")).get(key), shares.get("baseline"), g.get("n")
                ),
                "candidate": _share(
                    _d(per_model["candidate"].get("groups")).get(key), shares.get("candidate"), g.get("n")
                ),
                "flips": _int(group_flips),
                "stable_flips": _int(group_stable),
                "unstable_flips": _int(group_flips - group_stable)
                if group_flips is not None and group_stable is not None
                else "—",
                "main": _test(g.get("mcnemar")),
                "stable": _test(g.get("mcnemar_stable")),
            }
        )
    overall_shares = _d(overall.get("instability"))
    out.update(
        method=_text(stability.get("method"), ""),
        seed=_text(stability.get("seed"), ""),
        models=[
            (role, _share(per_model[role], overall_shares.get(role), overall.get("n")))
            for role in ("baseline", "candidate")
        ],
        rows=rows,
        stable_flips=_int(stable_flips),
        unstable_flips=_int(unstable_flips),
        test=_text(_d(comparison.get("statistics")).get("stable_test"), ""),
    )
    return out
