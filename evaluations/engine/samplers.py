"""The two samplers of the paired bootstrap (see evaluations.engine.bootstrap for what each draws):
each yields chunks of resampled per-unit totals, (count, cont) arrays over resamples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .bootstrap import Layout

__all__ = ["CHUNK_CELLS", "INDEX_CELLS_PER_CHUNK", "cells_chunks", "index_chunks"]

# Upper bound on index-matrix cells drawn at once by the index sampler (int64: 8 bytes each), to bound memory.
INDEX_CELLS_PER_CHUNK = 4_000_000
# Bound on the cells of one chunk of resamples of the cells sampler (rows × columns of the largest matrix).
CHUNK_CELLS = 4_000_000


def index_chunks(layout: Layout, resamples: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Exact index bootstrap: the same RNG stream and chunking as the reference paired_bootstrap_delta
    (tests/evaluations/reference.py)."""
    n = layout.unit_masks.shape[0]
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, min(resamples, INDEX_CELLS_PER_CHUNK // n))
    masks = layout.unit_masks.astype(np.float64)
    count_design = layout.count_design(layout.unit_masks, layout.count_values, n)
    cont_masks = masks[:, layout.cont_units]
    cont_design = (cont_masks[:, :, None] * layout.cont_values[:, None, :]).reshape(n, -1)
    drawn = 0
    while drawn < resamples:
        rows = min(rows_per_chunk, resamples - drawn)
        index = rng.integers(0, n, size=(rows, n))
        offsets = (np.arange(rows)[:, None] * n + index).ravel()
        weights = np.bincount(offsets, minlength=rows * n).reshape(rows, n)
        count = (weights.astype(count_design.dtype) @ count_design).astype(np.float64)
        cont = (weights.astype(np.float64) @ cont_design).reshape(rows, len(layout.cont_units), -1)
        yield count, cont
        drawn += rows


def _row_groups(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group identical rows of a small-integer matrix: (first row of each group, group of each row,
    group sizes), groups numbered in sorted key order. Columns are folded into one int64 key, with a
    re-numbering whenever the key could overflow. Columns are widened one at a time (rows may be millions)."""
    rows = matrix.shape[0]
    key = np.zeros(rows, dtype=np.int64)
    span = 1
    for narrow in np.asarray(matrix).T:
        column = narrow.astype(np.int64)
        low = int(column.min(initial=0))
        radix = int(column.max(initial=0)) - low + 1
        if span * radix >= 2**62:
            _, key = np.unique(key, return_inverse=True)
            key = key.astype(np.int64).ravel()
            span = int(key.max(initial=0)) + 1
        key = key * radix + (column - low)
        span *= radix
    _, first, inverse, sizes = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse.ravel(), sizes


def cells_chunks(
    layout: Layout, resamples: int, seed: int, info: dict[str, int]
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Multinomial cell counts (exact) + within-cell Gaussian for continuous sums (module docstring)."""
    n = layout.unit_masks.shape[0]
    membership = layout.unit_masks
    # Cells: examples identical in unit membership and every count feature.
    first, cell_of, cell_sizes = _row_groups(np.concatenate([membership, layout.count_values], axis=1, dtype=np.uint8))
    cells = len(cell_sizes)
    info["cells"] = cells
    cell_members = membership[first].astype(np.float64)  # (K, U)
    count_design = layout.count_design(membership[first], layout.count_values[first], n)

    q = layout.cont_values.shape[1]
    cont_units = layout.cont_units
    has_cont = q > 0 and bool(cont_units)
    if has_cont:
        x = layout.cont_values
        cell_sums = np.stack([np.bincount(cell_of, weights=x[:, j], minlength=cells) for j in range(q)], axis=1)
        cell_means = cell_sums / cell_sizes[:, None]
        mean_design = (cell_members[:, cont_units][:, :, None] * cell_means[:, None, :]).reshape(cells, -1)
        # Atoms: disjoint combinations of the units that need continuous sums.
        atom_first, atom_of, atom_sizes = _row_groups(membership[:, cont_units])
        cell_atom = atom_of[first]  # each cell lies in one atom
        factors: list[np.ndarray] = []
        factor_atom: list[int] = []
        for atom in range(len(atom_sizes)):
            members = atom_of == atom
            rows = x[members] - cell_means[cell_of[members]]  # centred on the cell means, one atom at a time
            # einsum, not BLAS: threaded OpenBLAS is pathologically slow (~0.5 s) on this tall-skinny
            # shape when the cores are busy; einsum's own loop takes milliseconds.
            scatter = np.einsum("ij,ik->jk", rows, rows, optimize=False)
            eigenvalues, vectors = np.linalg.eigh(scatter)
            keep = eigenvalues > max(float(eigenvalues.max(initial=0.0)), 0.0) * 1e-12
            if keep.any():
                factors.append(vectors[:, keep] * np.sqrt(eigenvalues[keep]))  # (q, r)
                factor_atom += [atom] * int(keep.sum())
        atom_units = membership[atom_first][:, cont_units].astype(np.float64)  # (A, Uc)
        if factors:
            stacked = np.concatenate(factors, axis=1)  # (q, R)
            factor_atom_arr = np.array(factor_atom)
            # noise for unit u = Σ_{atoms a in u} scale_a · z_a @ R_aᵀ  -> one (R, Uc·q) matrix
            noise_design = (atom_units[factor_atom_arr][:, :, None] * stacked.T[:, None, :]).reshape(
                len(factor_atom), -1
            )
        atom_cells = np.zeros((cells, len(atom_sizes)))
        atom_cells[np.arange(cells), cell_atom] = 1.0

    counts_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    probabilities = cell_sizes / n
    width = max(cells, count_design.shape[1], mean_design.shape[1] if has_cont else 0)
    rows_per_chunk = max(1, min(resamples, CHUNK_CELLS // max(width, 1)))
    drawn = 0
    while drawn < resamples:
        rows = min(rows_per_chunk, resamples - drawn)
        drawn_counts = counts_rng.multinomial(n, probabilities, size=rows)
        count = (drawn_counts.astype(count_design.dtype) @ count_design).astype(np.float64)
        cell_counts = drawn_counts.astype(np.float64)
        cont = None
        if has_cont:
            cont = cell_counts @ mean_design
            if factors:
                atom_counts = cell_counts @ atom_cells  # (rows, A)
                scale = np.sqrt(atom_counts / atom_sizes)[:, factor_atom_arr]
                z = noise_rng.standard_normal((rows, len(factor_atom))) * scale
                cont = cont + z @ noise_design
            cont = cont.reshape(rows, len(cont_units), q)
        yield count, cont
        drawn += rows
