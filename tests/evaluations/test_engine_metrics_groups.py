"""Every metric per group (evaluations.engine.metrics.groups): what a run stores."""

from __future__ import annotations

import numpy as np

from evaluations.engine.metrics import brier, group_metrics, macro_f1, metrics_by_group

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.4, 0.5])
D = P >= 0.5  # [T, T, F, F, T, F, F, T]


def test_group_metrics_and_by_group() -> None:
    true_class = np.array([1, 2, -1, 0, 0, 0, 2, 0])
    predicted = np.array([1, 1, 0, 0, 2, 0, 0, 1])
    source = np.array([-1, -1, -1, -1, 0, 1, -1, -1])
    subgroup = np.array(["x", "x", "y", "y", "x", "y", "", ""])
    result = group_metrics(
        Y,
        D,
        P,
        true_class=true_class,
        predicted_class=predicted,
        source_index=source,
        subgroup=subgroup,
        min_subgroup_n=3,
    )
    assert result["n"] == 8 and result["n_unsafe"] == 3 and result["accuracy"] == 5 / 8
    assert result["macro_f1"] == macro_f1(true_class, predicted)
    assert result["n_perturbed"] == 2 and result["consistency"] == 0.5  # 4 agrees with 0, 5 differs from 1
    assert result["perturbation_accuracy"] == 0.5  # 4 (safe, flagged) wrong, 5 (safe, passed) right
    # x = {0, 1, 4}: FNR 0/2, FPR 1/1; y = {2, 3, 5}: FNR 1/1, FPR 0/2
    assert (result["fnr_gap"], result["fpr_gap"]) == (1.0, 1.0)
    assert result["subgroups"]["x"]["fpr"] == 1.0  # type: ignore[index]
    assert len(result["reliability"]) == 15  # type: ignore[arg-type]
    masks = {"overall": np.ones(8, bool), "first": np.arange(8) < 4}
    by_group = metrics_by_group(Y, D, P, masks)
    assert list(by_group) == ["overall", "first"]
    assert by_group["first"]["accuracy"] == 0.75 and by_group["first"]["n"] == 4
    assert by_group["overall"]["brier"] == brier(Y, P)
