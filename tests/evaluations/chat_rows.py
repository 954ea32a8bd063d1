"""Chat suite rows for the API from the shared data (tests)."""

from __future__ import annotations


def prompt_rows(data_dir, **sizes) -> list[dict]:
    from evaluations.chat_prompts import chat_suite_rows

    rows = chat_suite_rows(data_dir, **{"harmful": 6, "harmless": 6, "xstest": 10, "adversarial": 4, **sizes})
    return [
        {
            "id": r["external_id"],
            "prompt": r["text"],
            "label": r["label"],
            "slice": r["slice"],
            "subgroup": r["subgroup"],
            "tags": list(r["tags"]),
            "reference": r["reference"][:120],  # the tiny model has 256 positions
            "source_id": r["source_id"],
        }
        for r in rows
    ]
