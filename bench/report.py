"""Render bench/results.json as BENCHMARKS.md (every figure comes from the JSON, none is typed in)."""

from pathlib import Path

INTRO = """# Benchmarks

Every figure below was measured by a script in `bench/` and is copied here from `bench/results.json`
by `bench/report.py`. Re-run with `make bench` (or `python -m bench <name>`); the machine each
figure came from is listed with it.
"""

DESCRIPTIONS = {
    "pipeline": ("Demo pipeline of `make run`",
                 "`bin/run-demo` (what `make run` starts, after the virtualenv exists) in a fresh state folder on the "
                 "embedded default (SQLite, kombu filesystem broker, one worker): migrate, load demo data (building the "
                 "tiny base model), start web + worker + beat, then through the REST API: experiment, dynamic int8 "
                 "compression run, release, baseline and candidate evaluation, comparison, gate, until the release "
                 "awaits a decision."),
    "approvals": ("Concurrent decisions on one release (PostgreSQL)",
                  "200 approve/halt attempts with the same expected version, from 90 threads (one PostgreSQL "
                  "connection each; the server allows 100) released by a barrier, through `release_decide`. "
                  "Exactly one may change the release; every other is refused and leaves a ledger refusal."),
}


def write_report(results: dict, path: Path) -> None:
    lines = [INTRO]
    for name, entry in results.items():
        title, description = DESCRIPTIONS.get(name, (name, ""))
        m = entry["machine"]
        lines += [f"## {title}", "", description, "",
                  f"Command: `{entry['command']}` · measured {entry['measured_at']} on {m['cpu']} "
                  f"({m['cores']} cores, Python {m['python']})", "",
                  "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in entry["figures"].items()]
        lines.append("")
    path.write_text("\n".join(lines))
