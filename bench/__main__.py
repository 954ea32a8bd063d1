"""Run the benchmarks and write bench/results.json and BENCHMARKS.md.

python -m bench            # all
python -m bench pipeline   # one
"""

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
SUITES = [
    "pipeline",
    "approvals",
    "ledger",
    "exports",
    "evaluation",
    "scale",
    "compression",
    "artifacts",
    "suite_import",
    "api",
    "uploads",
    "stability",
    "ingest",
    "llm",
    "distill",
    "web",
]


def machine() -> dict:
    """The machine a figure came from, with the instruction sets that choose its int8 and fp32 kernels."""
    from compression.engine.cpu import cpu_instruction_sets, cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "isa": cpu_instruction_sets(),
    }


def _run_isolated(name: str) -> dict:
    """Each benchmark in its own interpreter: they configure Django (databases, folders) differently."""
    import subprocess

    code = f"import json, bench.{name} as b; print('@@RESULT@@' + json.dumps(b.run()))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    marker = [line for line in result.stdout.splitlines() if line.startswith("@@RESULT@@")]
    if result.returncode != 0 or not marker:
        raise SystemExit(f"bench/{name}.py failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return json.loads(marker[-1][len("@@RESULT@@") :])


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suites", nargs="*", choices=SUITES + [[]], help="benchmarks to run (default: all)")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.suites or SUITES:
        print(f"running bench/{name}.py …", flush=True)
        figures = _run_isolated(name)
        results[name] = {
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": f"make bench BENCH={name}",
            "machine": machine(),
            "figures": figures,
        }
        if name == "llm":  # the path issue 14 names: llm.judge.heldout_accuracy
            results[name]["judge"] = figures["judge"]
        print(json.dumps(figures, indent=2), flush=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    from bench.report import write_report

    write_report(results, ROOT / "BENCHMARKS.md")
    print(f"wrote {RESULTS.relative_to(ROOT)} and BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
