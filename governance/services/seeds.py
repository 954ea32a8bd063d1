"""Spread between seeds: the same method and parameters run with several seeds, compared."""

import statistics
from collections import defaultdict

from governance.models import Release
from ledger.canonical import canonical_json

SPREAD_METRICS = ("accuracy", "unsafe_recall", "benign_fpr", "fnr_gap", "ece")


def seed_spread(*, experiment_id: int) -> list[dict]:
    """For each (method, parameters) evaluated with two or more seeds on the same suite version:
    per group and metric, the candidate-minus-baseline delta of every seed and their mean, min, max
    and standard deviation, plus the spread of the flip counts."""
    runs: dict[tuple, list[Release]] = defaultdict(list)
    for release in Release.objects.filter(experiment_id=experiment_id, comparison__isnull=False).select_related(
            "compression_run", "comparison").order_by("pk"):
        run = release.compression_run
        runs[(run.method, canonical_json(run.parameters), release.suite_version_id)].append(release)
    out = []
    for (method, parameters, suite_version), releases in runs.items():
        by_seed = {r.compression_run.seed: r for r in releases}
        if len(by_seed) < 2:
            continue
        groups: dict[str, dict[str, dict]] = defaultdict(dict)
        for key in by_seed[min(by_seed)].comparison.results["groups"]:
            for metric in SPREAD_METRICS:
                deltas = {seed: ((r.comparison.results["groups"].get(key) or {}).get("metrics", {}).get(metric) or {})
                          .get("delta") for seed, r in by_seed.items()}
                values = [v for v in deltas.values() if v is not None]
                if len(values) >= 2:
                    groups[key][metric] = {"deltas": deltas, "mean": statistics.fmean(values), "min": min(values),
                                           "max": max(values), "stdev": statistics.stdev(values)}
        flips = [r.comparison.flip_count for r in by_seed.values()]
        out.append({"method": method, "parameters": parameters, "suite_version": suite_version,
                    "seeds": sorted(by_seed), "releases": [r.pk for r in by_seed.values()],
                    "flips": {"values": flips, "min": min(flips), "max": max(flips)}, "groups": groups})
    return out
