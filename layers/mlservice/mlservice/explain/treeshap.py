"""Exact path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2 semantics), vectorised over rows × paths.

Algorithm 2 walks every tree recursively once per row, which in Python would be a loop per (row, node). Here
each tree is first decomposed into its root-to-leaf paths, as GPUTreeShap does: a path's prediction is its leaf
value times, for every feature split on along it, either an indicator (the feature is "present": does x fall in
the interval the path's splits on that feature allow?) or the fraction of the training cover that flows down the
path through those splits (the feature is "absent": the path-dependent expectation). Several splits on one
feature merge into one player (interval intersection, product of the cover fractions), exactly as Algorithm 2's
unwinding of a repeated feature does. The Shapley values of a tree are the sum of those of its paths, and the
Shapley values of one path's game depend only on its players' (one fraction, zero fraction) pairs, so every
(row, path) pair is an independent small problem: grouping paths by their number of players n, the EXTEND and
UNWIND recurrences of Algorithm 2 become n steps over (rows × paths × players) arrays.

The weights kept are Algorithm 2's normalised ones (polynomial coefficients times Shapley weights), which stay
in [0, 1] whatever the depth, and unwinding never amplifies rounding errors (the products of its factors are
1/binomial ≤ 1), so deep trees stay accurate.

An ensemble is a list of (tree, scale, output) units: a forest averages its trees (scale 1/n_trees), boosting
adds its trees times the learning rate; a classifier tree contributes its leaf's class fractions to every
output, a regression tree its value to one output. Compiling it (the path decomposition) costs one Python step
per node and is cached by the caller (explainer keeps it with the model object).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

# Elements of one (rows × paths × players) working array: a few of them live at once, 8 MB each.
CHUNK_ELEMENTS = 1 << 20
# Paths of one block, as paths × (players + 1): bounds the per-block scatter matrix and lets large ensembles
# still use chunks of many rows.
BLOCK_ELEMENTS = 1 << 16
PROBA = -1  # a unit's output: every output, from the leaf's class fractions


@dataclass(frozen=True)
class TreePaths:
    """Root-to-leaf paths of one fitted sklearn Tree, padded to the longest path's number of players."""

    leaves: np.ndarray  # (L,) node id of each path's leaf
    lengths: np.ndarray  # (L,) distinct features split on along the path
    features: np.ndarray  # (L, D) int, encoded column of each player
    lower: np.ndarray  # (L, D) x must be > lower ...
    upper: np.ndarray  # (L, D) ... and <= upper to follow the path
    zero: np.ndarray  # (L, D) product of cover fractions along the path's splits on that feature
    cover: np.ndarray  # (L,) leaf cover / root cover


def tree_paths(tree: object) -> TreePaths:
    """Decompose an sklearn `Tree` (estimator.tree_) into its root-to-leaf paths, with repeated features merged.

    sklearn sends x left when x <= threshold (x as float32), so a path's allowed set for a feature is an interval
    (lower, upper]."""
    left = tree.children_left  # type: ignore[attr-defined]
    right = tree.children_right  # type: ignore[attr-defined]
    feature = tree.feature  # type: ignore[attr-defined]
    threshold = tree.threshold  # type: ignore[attr-defined]
    cover = tree.weighted_n_node_samples  # type: ignore[attr-defined]
    root_cover = float(cover[0])
    found: list[tuple[int, dict[int, tuple[float, float, float]]]] = []
    stack: list[tuple[int, dict[int, tuple[float, float, float]]]] = [(0, {})]
    while stack:
        node, conditions = stack.pop()
        if left[node] < 0:
            found.append((node, conditions))
            continue
        f, t, parent = int(feature[node]), float(threshold[node]), float(cover[node])
        for child, goes_left in ((int(left[node]), True), (int(right[node]), False)):
            lower, upper, zero = conditions.get(f, (-np.inf, np.inf, 1.0))
            if goes_left:
                upper = min(upper, t)
            else:
                lower = max(lower, t)
            zero *= float(cover[child]) / parent if parent > 0 else 0.0
            stack.append((child, {**conditions, f: (lower, upper, zero)}))
    depth = max(1, max(len(c) for _, c in found))
    n = len(found)
    paths = TreePaths(
        leaves=np.array([node for node, _ in found], dtype=np.intp),
        lengths=np.array([len(c) for _, c in found], dtype=np.intp),
        features=np.zeros((n, depth), dtype=np.intp),
        lower=np.full((n, depth), -np.inf),
        upper=np.full((n, depth), np.inf),
        zero=np.ones((n, depth)),
        cover=np.array([float(cover[node]) / root_cover if root_cover > 0 else 0.0 for node, _ in found]),
    )
    for i, (_, conditions) in enumerate(found):
        for k, (f, (lower, upper, zero)) in enumerate(sorted(conditions.items())):
            paths.features[i, k], paths.lower[i, k], paths.upper[i, k], paths.zero[i, k] = f, lower, upper, zero
    return paths


def leaf_values(tree: object, leaves: np.ndarray, output: int, n_outputs: int) -> np.ndarray:
    """(L, n_outputs) leaf values: class fractions (output PROBA, what predict_proba returns) or the value in
    column `output`."""
    value = np.asarray(tree.value, dtype=np.float64)[leaves, 0, :]  # type: ignore[attr-defined]
    if output == PROBA:
        total = value.sum(axis=1, keepdims=True)
        total[total == 0] = 1.0
        return value / total
    out = np.zeros((len(leaves), n_outputs))
    out[:, output] = value[:, 0]
    return out


@dataclass
class _Block:
    """Paths that all have `n` players, with the precomputed pieces of their recurrences. Arrays are laid out
    player-first, (n, P, 1), so every step of the recurrences is one contiguous operation over paths × rows."""

    n: int
    features: np.ndarray  # (n, P) compact feature index
    lower: np.ndarray  # (n, P, 1)
    upper: np.ndarray  # (n, P, 1)
    zero: np.ndarray  # (n, P, 1)
    values_t: np.ndarray  # (K, P) leaf values times the unit's scale
    scatter_t: sparse.csr_matrix  # (U·K, n·P): weight of (player i, path p) at column i·P + p → contributions
    unwind: np.ndarray = field(init=False)  # (n-1, n, P, 1): -z·(n-k)/k for k = n-1 … 1
    inverse_zero: np.ndarray = field(init=False)  # (n, P, 1): 1/z (0 where z = 0: such a path contributes 0)

    def __post_init__(self) -> None:
        n = self.n
        self.unwind = np.stack([self.zero * (-(n - k) / k) for k in range(n - 1, 0, -1)]) if n > 1 else np.zeros(0)
        positive = self.zero > 0
        self.inverse_zero = np.where(positive, 1.0 / np.where(positive, self.zero, 1.0), 0.0)

    @classmethod
    def build(
        cls,
        n: int,
        features: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        zero: np.ndarray,
        values: np.ndarray,
        n_columns: int,
    ) -> _Block:
        """From path-major (P, n) arrays and (P, K) values."""
        n_paths, n_outputs = values.shape
        path, player, output = np.nonzero(np.broadcast_to(values[:, None, :] != 0, (n_paths, n, n_outputs)))
        scatter_t = sparse.csr_matrix(
            (values[path, output], (features[path, player] * n_outputs + output, player * n_paths + path)),
            shape=(n_columns * n_outputs, n * n_paths),
        )
        return cls(
            n,
            np.ascontiguousarray(features.T),
            np.ascontiguousarray(lower.T)[..., None],
            np.ascontiguousarray(upper.T)[..., None],
            np.ascontiguousarray(zero.T)[..., None],
            np.ascontiguousarray(values.T),
            scatter_t,
        )


@dataclass
class Ensemble:
    """A compiled tree model: the encoded columns it uses and its paths grouped by number of players."""

    columns: np.ndarray  # (U,) encoded columns the trees split on, ascending
    n_outputs: int
    blocks: list[_Block]
    expected: np.ndarray  # (K,) the path-dependent expectation (empty coalition) of the whole ensemble
    constant: np.ndarray  # (K,) what single-leaf trees add to every prediction (part of `expected`)
    paths: int


def compile_ensemble(units: Sequence[tuple[object, float, int]], n_outputs: int) -> Ensemble:
    """Compile (sklearn Tree, scale, output) units. One Python step per node: the caller caches the result."""
    expected = np.zeros(n_outputs)
    constant = np.zeros(n_outputs)
    by_length: dict[int, list[tuple[np.ndarray, ...]]] = {}
    for tree, scale, output in units:
        p = tree_paths(tree)
        values = leaf_values(tree, p.leaves, output, n_outputs) * scale
        expected += p.cover @ values
        for n in np.unique(p.lengths).tolist():
            rows = p.lengths == n
            if n == 0:
                constant += values[rows].sum(axis=0)
                continue
            by_length.setdefault(n, []).append(
                (p.features[rows, :n], p.lower[rows, :n], p.upper[rows, :n], p.zero[rows, :n], values[rows])
            )
    parts = [part for group in by_length.values() for part in group]
    columns = np.unique(np.concatenate([part[0].ravel() for part in parts])) if parts else np.zeros(0, np.intp)
    blocks: list[_Block] = []
    total_paths = 0
    for n in sorted(by_length):
        group = by_length[n]
        features, lower, upper, zero, values = (np.concatenate([g[i] for g in group]) for i in range(5))
        compact = np.searchsorted(columns, features)
        total_paths += len(features)
        step = max(1, BLOCK_ELEMENTS // (n + 1))
        for s in range(0, len(features), step):
            part = slice(s, s + step)
            blocks.append(
                _Block.build(n, compact[part], lower[part], upper[part], zero[part], values[part], len(columns))
            )
    return Ensemble(columns, n_outputs, blocks, expected, constant, total_paths)


def _player_weights(present: np.ndarray, block: _Block) -> np.ndarray:
    """(n, P, rows) Shapley weight sums times (one − zero) for every player of every path: the Shapley value
    of player i of a path is this times the leaf value."""
    n = block.n
    one = present.astype(np.float64)
    zero = block.zero
    # EXTEND: weights[k] = coefficient k of Π (z_j + o_j t) times k!(l−k)!/(l+1)! after l players.
    weights = np.zeros((n + 1, *present.shape[1:]))
    weights[0] = 1.0
    for size in range(1, n + 1):
        k = np.arange(size + 1)[:, None, None]
        grown = weights[:size] * (one[size - 1] * (k[1:] / (size + 1)))
        weights[: size + 1] *= zero[size - 1] * ((size - k) / (size + 1))
        weights[1 : size + 1] += grown
    # UNWIND every player at once. Present player (o = 1): from the top coefficient down.
    step = np.broadcast_to(weights[n] * ((n + 1) / n), one.shape).copy()
    present_sum = step.copy()
    for index, k in enumerate(range(n - 1, 0, -1)):
        step *= block.unwind[index]
        step += weights[k] * ((n + 1) / k)
        present_sum += step
    # Absent player (o = 0): its factor is the constant z, a plain division.
    absent_sum = np.tensordot((n + 1) / (n - np.arange(n)), weights[:n], axes=1)[None] * block.inverse_zero
    return (one - zero) * np.where(present, present_sum, absent_sum)


def shap_values(ensemble: Ensemble, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi (rows, U, K) over ensemble.columns, the ensemble's own prediction (rows, K)) for encoded rows
    (rows, U), already restricted to ensemble.columns and rounded through float32 as sklearn's trees do."""
    rows, k = len(encoded), ensemble.n_outputs
    columns_first = np.ascontiguousarray(encoded.T)  # (U, rows)
    phi = np.zeros((len(ensemble.columns) * k, rows))
    predicted = np.tile(ensemble.constant[:, None], (1, rows))
    for block in ensemble.blocks:
        chunk = max(1, CHUNK_ELEMENTS // (block.features.size + block.features.shape[1]))
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            x = columns_first[:, part][block.features]  # (n, P, r)
            present = (x > block.lower) & (x <= block.upper)
            predicted[:, part] += block.values_t @ present.all(axis=0).astype(np.float64)
            weights = _player_weights(present, block)
            phi[:, part] += block.scatter_t @ weights.reshape(-1, weights.shape[2])
    return phi.T.reshape(rows, len(ensemble.columns), k), predicted.T


def tree_work(trees: Sequence[object]) -> int:
    """Upper bound of the work per explained row: Σ leaves × depth² (paths × players², the cost of EXTEND and
    UNWIND; a path has at most depth players). Read from tree_ attributes, before anything is compiled."""
    return int(sum(t.n_leaves * max(1, t.max_depth) ** 2 for t in trees))  # type: ignore[attr-defined]
