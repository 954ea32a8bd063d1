"""The dossier's one-page summary: the release, what was compressed and how, under which deployment profile
it was evaluated, the warnings its evidence should be read with, the gate, flips and their stability, review,
escalations, decision and rollout, in sentences built from the section contexts."""

from __future__ import annotations

from collections.abc import Mapping

from .format import _bytes, _d, _int, _num, _pct, _pvalue, _ratio, _seconds, _text, _time, _words, _zone
from .governance_sections import _artifact


def _summary(bundle: Mapping, ctx: dict) -> list[tuple[str, str]]:
    base, cand = _artifact(bundle, "base"), _artifact(bundle, "candidate")
    run = _d(bundle.get("compression_run"))
    release = _d(bundle.get("release"))
    params = ", ".join(f"{k} = {_text(v)}" for k, v in sorted(_d(run.get("parameters")).items())) or "defaults"
    size_note = ""
    if _num(base.get("size_bytes")) and _num(cand.get("size_bytes")) is not None:
        size_note = (
            f" Size on disk {_bytes(base.get('size_bytes'))} → {_bytes(cand.get('size_bytes'))} "
            f"({_ratio(cand.get('size_bytes'), base.get('size_bytes'))} of the base)."
        )
    runtime = {r["label"]: r for r in ctx["runtime"]}
    speed = runtime.get("Throughput (examples/s)")
    if speed and speed["ratio"] != "—":
        size_note += f" Throughput {speed['baseline']} → {speed['candidate']} examples/s ({speed['ratio']})."
    counts = ctx["gate"]["counts"]
    gate_zone = _zone(release.get("gate_zone")) or _zone(_d(bundle.get("verdict")).get("gate_zone"))
    policy_text = (
        f"policy {ctx['policy']['name']} v{ctx['policy']['version']}, {len(ctx['policy']['rules'])} rules"
        if ctx["policy"]
        else "no threshold policy in the bundle"
    )
    if ctx["gate"]["rows"]:
        gate_text = (
            f"{gate_zone.upper() if gate_zone else 'NOT JUDGED'}: {counts['green']} green, {counts['amber']} amber, "
            f"{counts['red']} red ({policy_text})."
        )
    else:
        gate_text = f"Not judged yet ({policy_text})."
    red = [r["title"] for r in ctx["gate"]["rows"] if r["zone"] == "red"]
    amber = [r["title"] for r in ctx["gate"]["rows"] if r["zone"] == "amber"]
    if red:
        gate_text += " Red: " + "; ".join(red) + "."
    if amber:
        gate_text += " Amber: " + "; ".join(amber) + "."
    comparison = _d(bundle.get("comparison"))
    overall = _d(_d(comparison.get("groups")).get("overall"))
    if comparison:
        n, count = _num(overall.get("n")), _num(comparison.get("flip_count"))
        share = f" ({_pct(count / n)})" if n and count is not None else ""
        flips_text = (
            f"{ctx['flips']['total']} of {_int(n)} decisions changed{share}; "
            f"{ctx['flips']['shown']} shown in section {ctx['number']['flips']}."
        )
        mc = _d(overall.get("mcnemar"))
        if mc:
            flips_text += (
                f" McNemar: baseline right/candidate wrong {_int(mc.get('b'))}, the reverse {_int(mc.get('c'))}, "
                f"p = {_pvalue(mc.get('p_value'))}."
            )
    else:
        flips_text = "No comparison of the candidate with the baseline is recorded."
    stability = ctx["stability"]
    if stability["present"]:
        (_, base_share), (_, cand_share) = stability["models"]
        counted = stability["basis"]["policy"] or "; ".join(
            f"{r['title']}: {r['counted']}" for r in stability["basis"]["rules"]
        )
        stability_text = (
            f"Decisions that changed when the batches were recomposed: baseline {base_share}, candidate "
            f"{cand_share}. Flips: {stability['stable_flips']} stable, {stability['unstable_flips']} unstable"
            f"{f'; the gate counted {counted}' if counted else ''}; McNemar reported on "
            f"{'stable flips only' if stability['basis']['reported'] == 'stable' else 'every flip'}"
        )
        stable_test = _d(overall.get("mcnemar_stable"))
        if stability["basis"]["reported"] == "stable" and stable_test:
            stability_text += (
                f": baseline right/candidate wrong {_int(stable_test.get('b'))}, the reverse "
                f"{_int(stable_test.get('c'))}, p = {_pvalue(stable_test.get('p_value'))}"
                f" (Holm {_pvalue(stable_test.get('p_holm'))})"
            )
        stability_text += f" (section {ctx['number']['stability']})."
    elif comparison:
        stability_text = "No stability pass recorded: flips cannot be told stable or unstable; every flip counted."
    else:
        stability_text = "Not assessed (no comparison)."
    conditions = dict(ctx["conditions"]["rows"])
    profile_text = (
        " Deployment profile: "
        + ", ".join(f"{label.lower()} {value}" for label, value in conditions.items())
        + f" (section {ctx['number']['provenance']})."
        if conditions
        else ""
    )
    outcome = ctx["reviews"]["outcome"]
    review_text = (
        f"{outcome['verdict'].upper()}: {outcome['items']} flipped items, {outcome['reviews']} reviews, "
        f"safety deviations {outcome['deviation_share']} (limit {outcome['max_share']}), "
        f"Cohen's kappa {outcome['kappa']}."
        if outcome
        else "No blind review was recorded."
    )
    open_esc = [e for e in ctx["escalations"] if e["open"]]
    esc_text = (
        f"{len(open_esc)} open of {len(ctx['escalations'])}"
        + (
            ": " + "; ".join(f"#{e['id']} {e['trigger']} (level {e['level']}, due {e['deadline']})" for e in open_esc)
            if open_esc
            else ""
        )
        + "."
        if ctx["escalations"]
        else "None."
    )
    newest = ctx["newest_decision"]
    decision_text = (
        f"{newest['kind'].capitalize()} by {newest['actor']} ({newest['role']}) on {newest['at']}; "
        f"{len(ctx['decisions'])} decision(s) in total."
        if newest
        else "No decision has been recorded."
    )
    warnings = ctx["warnings"]
    warnings_text = " ".join(
        " ".join(part for part in (f"{w['title']}.", w["message"], w["detail"], w["reading"]) if part)
        for w in warnings["rows"]
    )
    rollout = ctx["rollout"]
    started = [s for s in rollout if s["started"] != "not started"]
    rollout_text = (
        f"{len(started)} of {len(rollout)} stages started"
        + (f", now at {started[-1]['percent']}" if started else "")
        + "."
        if rollout
        else "No rollout plan."
    )
    return [
        (
            "Release",
            f"#{_text(release.get('id'))}, {_words(release.get('status'))}, risk tier "
            f"{_text(release.get('risk_tier'))}, version {_text(release.get('version'))}, created "
            f"{_time(release.get('created_at'), seconds=False)}.",
        ),
        (
            "What was compressed",
            f"{_text(base.get('name'))} ({_int(base.get('parameter_count'))} parameters, "
            f"{_bytes(base.get('size_bytes'))}), experiment “{_text(_d(bundle.get('experiment')).get('name'))}” "
            f"owned by {_text(_d(bundle.get('experiment')).get('owner'))}.",
        ),
        (
            "How",
            f"{_text(run.get('method'))} with {params}; seed {_text(run.get('seed'))}; "
            f"run #{_text(run.get('id'))} {_text(run.get('status'))}"
            f"{' in ' + _seconds(run.get('wall_seconds')) if _num(run.get('wall_seconds')) is not None else ''}."
            f"{size_note}",
        ),
        (
            "Evaluated on",
            f"{_text(_d(bundle.get('suite_version')).get('suite'))} "
            f"v{_text(_d(bundle.get('suite_version')).get('number'))}, "
            f"{_int(_d(bundle.get('suite_version')).get('example_count'))} examples.{profile_text}",
        ),
        # The warnings, where there are some, right before the gate they qualify (and set apart by the template).
        *([(warnings["label"], f"{warnings_text} See section {ctx['number']['policy']}.")] if warnings["rows"] else []),
        ("Gate", gate_text),
        ("Flips", flips_text),
        ("Decision stability", stability_text),
        ("Blind review", review_text),
        ("Escalations", esc_text),
        ("Incidents", f"{len(ctx['incidents'])} reported." if ctx["incidents"] else "None reported."),
        ("Decision", decision_text),
        ("Rollout", rollout_text),
    ]
