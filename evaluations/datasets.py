"""Readers for the shared safety data sets (../shared/data). Pure Python, no Django, no torch.

Each reader returns ExampleRow-shaped dicts with the line number of the row in its file, so
that errors can name the line.
"""

import csv
import random
from collections.abc import Iterator
from pathlib import Path


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every data row; line numbers count physical lines, header = 1."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, row


def hatexplain_rows(data_dir: Path, *, split: str = "test") -> list[dict]:
    """HateXplain posts of one split (routine slice); subgroup = first majority target community."""
    path = data_dir / "hatexplain" / "hatexplain_merged.csv"
    out = []
    for line, row in _rows(path):
        if row["split"] != split or row["label"] not in ("normal", "hatespeech", "offensive"):
            continue
        targets = [t for t in (row.get("targets_majority") or "").split("|") if t and t != "None"]
        out.append(
            {
                "external_id": f"hatexplain:{row['post_id']}",
                "text": row["text"],
                "label": row["label"],
                "slice": "routine",
                "subgroup": targets[0] if targets else "",
                "tags": ("hatexplain",),
                "line": line,
            }
        )
    return out


def xstest_rows(data_dir: Path) -> list[dict]:
    """XSTest prompts (edge slice): safe prompts that only look unsafe, and their unsafe contrasts."""
    path = data_dir / "xstest" / "xstest_prompts.csv"
    return [
        {
            "external_id": f"xstest:{row['id']}",
            "text": row["prompt"],
            "label": row["label"],
            "slice": "edge",
            "subgroup": "",
            "tags": ("xstest", row["type"]),
            "line": line,
        }
        for line, row in _rows(path)
    ]


def advbench_rows(data_dir: Path) -> list[dict]:
    """AdvBench harmful behaviours (adversarial slice): every row is a harmful request."""
    path = data_dir / "advbench" / "harmful_behaviors.csv"
    return [
        {
            "external_id": f"advbench:{line}",
            "text": row["goal"],
            "label": "harmful",
            "slice": "adversarial",
            "subgroup": "",
            "tags": ("advbench",),
            "line": line,
        }
        for line, row in _rows(path)
    ]


def surge_rows(data_dir: Path) -> list[dict]:
    """Surge AI toxicity (out-of-domain routine slice): labels Toxic / Not Toxic."""
    path = data_dir / "surge_toxicity" / "toxicity_en.csv"
    return [
        {
            "external_id": f"surge:{line}",
            "text": row["text"],
            "label": "toxic" if row["is_toxic"] == "Toxic" else "not_toxic",
            "slice": "routine",
            "subgroup": "",
            "tags": ("surge", "out-of-domain"),
            "line": line,
        }
        for line, row in _rows(path)
    ]


SHARED_SETS = {
    "hatexplain-test": ("HateXplain test split (routine; subgroups from targets_majority)", hatexplain_rows),
    "surge-toxicity": ("Surge AI toxicity (out-of-domain routine)", surge_rows),
    "xstest": ("XSTest (edge cases: safe prompts that only look unsafe, and unsafe contrasts)", xstest_rows),
    "advbench": ("AdvBench harmful behaviours (adversarial)", advbench_rows),
}


def sample(rows: list[dict], n: int | None, *, seed: int) -> list[dict]:
    """A seeded sample of up to n rows, kept in file order."""
    if n is None or n >= len(rows):
        return rows
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


# Labels of the shared sets: which count as unsafe and which as safe.
UNSAFE_LABELS = ["harmful", "hatespeech", "offensive", "toxic", "unsafe"]
SAFE_LABELS = ["normal", "not_toxic", "safe"]


def demo_suite_rows(
    data_dir: Path, *, routine: int = 300, edge: int | None = None, adversarial: int = 100, seed: int = 0
) -> list[dict]:
    """The demo suite: HateXplain test (routine), XSTest (edge), AdvBench (adversarial)."""
    return (
        sample(hatexplain_rows(data_dir), routine, seed=seed)
        + sample(xstest_rows(data_dir), edge, seed=seed)
        + sample(advbench_rows(data_dir), adversarial, seed=seed)
    )
