"""What a training will cost, estimated before fitting, so one that would blow the time budget is refused at once.

A fit cannot be interrupted from Python (its time goes to C loops), so without an estimate the only protection is
the deadline: the request occupies a Lambda until it is killed, and the client learns nothing about what to
change. `estimate` predicts the single-core seconds of the whole of `trainer.train`, as a sum of parts that mirror
what it runs:

* reading, checking, encoding, hashing and profiling the table (already spent when the trainer asks, but part
  of the request the budget is for);
* the final fit on the training rows, and one fit per cross-validation fold on (k-1)/k of them;
* the predictions: the output check on up to 1000 training rows, the holdout metrics (predict and
  predict_proba), each fold's held-out rows, and permutation importance (1 + n_features × repeats predictions of
  up to 2000 holdout rows) — for kNN, kernel SVMs and big forests these, not the fit, are most of the time;
* joblib-compressing the fitted model (tens of megabytes for deep forests and wide networks).

Each algorithm family has a small cost model — its fit, its prediction per call and per row, its pickled size —
written in the quantities that drive it: rows, columns, classes, trees × depth, iterations, layer products,
support vectors. The constants are single-core seconds measured on the development machine (AMD EPYC, 2 cores,
BLAS and OpenMP pinned to one thread) by timing the estimators directly and by `benchmarks/training_cost.py`,
which runs the real trainer on a grid of 137 configurations (~16 minutes; --quick ~2) and compares: median
estimate/actual 0.99, 106 of 107 runs above 0.5 s within 0.33-3×. A Lambda at 3008 MB has similar per-core speed. They aim at the typical run, not a bound: the estimate
is for refusing what clearly cannot fit, and the deadline still stops what was underestimated.

Iterative solvers mostly stop long before max_iter, so max_iter only caps a typical iteration count. The MLP is
the exception and is modelled from measured epoch counts: small networks run to max_iter on small data, wide
ones memorise the rows and stop after tens of epochs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mlservice.errors import bad_request
from mlservice.training import algorithms, metrics

# ---------------------------------------------------------------------------------------------- constants
# Seconds, measured on the development machine (see the module docstring). "cell" = one row × one column.

# Around every training. Reading, checking, encoding, hashing and profiling the table: per row and per cell (the
# object-matrix path of categorical and text columns is slower). Holdout metrics on string labels. Per pipeline
# fit: clone, ColumnTransformer fit, validation. Per predict call: ColumnTransformer, validation, the copy that
# permutation importance shuffles; one-hot encoding object columns adds a per-call cost, TF-IDF a per-text cost.
START = 0.08
DATA_ROW = 2.0e-6
LABEL_ROW = 6.0e-6  # class labels: scanned, sorted and stratified as Python strings
DATA_CELL = 1.2e-6
ENCODED_DATA_CELL = 2.2e-6
METRICS_ROW = 8.0e-6
FIT_CALL = 5.0e-3
CALL = 1.5e-3
CALL_CELL = 2.5e-8
CATEGORICAL_CALL = 4.5e-3
TEXT_CELL = 1.2e-5
# joblib compress=3 per pickled byte: tree arrays compress well, float weights barely (and zlib is slower on them).
ZLIB_TREE_BYTE = 1.2e-8
ZLIB_FLOAT_BYTE = 3.0e-8

# Linear models: iterations actually run (standardised data converges in tens, far below max_iter), per-element
# costs (per iteration × row × non-zero column × output).
LBFGS_ITERATIONS = 40
LBFGS_CELL = 2.5e-9
SAG_EPOCHS = 40  # sag/saga with an l2 penalty
SAGA_L1_EPOCHS = 400  # saga with an l1 part: an order of magnitude slower (measured 280-500 epochs)
SAG_ROW = 4.0e-7
SAG_CELL = 5.0e-9
NEWTON_ITERATIONS = 8
NEWTON_CHOLESKY_CELL = 5.0e-11  # per row × (columns × outputs)² per iteration: the Hessian
CD_ITERATIONS = 100  # lasso coordinate descent
CD_CELL = 2.0e-9
GRAM_CELL = 6.0e-10  # per row × column²: least squares and Cholesky on dense X
LINEAR_PREDICT_CELL = 2.0e-9
NB_CELL = 3.0e-9  # Gaussian naive Bayes, per row × column × class, fit and predict

# Trees. Building costs TREE_CELL per row × candidate dense column × level, levels weighted by depth (deep nodes
# are small and sort fast; a fully grown tree on n rows is ~0.75·log2(n) levels). A sparse one-hot/TF-IDF column
# costs little per row but a fixed amount per node it is tried at, growing with its non-zeros — negligible for
# depth-3 boosting trees, dominant for fully grown trees on TF-IDF. Forests pay a per-tree overhead (bootstrap,
# dispatch), boosting a per-stage one (loss, gradients, update). Predicting costs a per-tree dispatch per call
# and, per row and tree, a walk whose steps turn into cache misses once trees hold tens of thousands of nodes.
TREE_CELL = 1.05e-7
NODE_COLUMN = 1.7e-8
NODE_COLUMN_NNZ = 1.44e-9
SPARSE_FIT_NNZ = 1.5e-7
FOREST_TREE = 9.0e-4
BOOST_STAGE = 2.5e-4
BOOST_TREE = 1.5e-4
BOOST_ROW = 3.0e-8
FOREST_TREE_CALL = 6.0e-5
BOOST_TREE_CALL = 2.0e-6
TREE_ROW = 2.0e-8
TREE_STEP = 4.0e-9
TREE_STEP_MISS = 1.2e-8
NODE_BYTES = 64.0  # plus 8 per class value

# Kernel SVM (libsvm): a fit costs SVM_FIT × n^SVM_POWER × (columns + 15)^0.7; prediction SVM_PREDICT per support
# vector per row × the same column term. probability=True adds libsvm's internal 5-fold CV (measured ×5.3).
SVM_FIT = 2.4e-9
SVM_POWER = 1.9
SVM_PROBABILITY = 5.3
SVR_FACTOR = 1.6
SVM_PREDICT = 3.0e-9
SVM_PREDICT_LINEAR = 1.4e-9
SUPPORT_FRACTION = 0.30
SVM_SPARSE = 3.0
SVM_STEP = 3.0e-10  # per row × column term of an SMO step's kernel columns, uncached

# kNN. Brute force (sparse input, more than 15 columns) per (query, fitted row) pair; the kd-tree per query visits
# a share of the rows that grows with the dimension until, past ~12 columns, it is all of them.
KNN_PAIR = 2.2e-9
KNN_PAIR_CELL = 6.0e-11  # euclidean: a matrix product
KNN_PAIR_CELL_P = 5.0e-10  # p = 1, chebyshev: element by element
KNN_PAIR_CELL_POW = 4.0e-9  # other p: a pow() per element
KNN_SPARSE_PAIR = 3.0e-9
KNN_SPARSE_NNZ = 1.0e-9
KD_QUERY = 2.0e-6
KD_VISIT = 1.5e-8
KNN_CALL = 2.5e-3  # per predict call: neighbour search setup, chunking, the vote

# MLP: per multiply-add (forward + backward = 3 × the layer products per row), per batch (Python, the optimizer
# step over every parameter), and lbfgs's per-iteration work on the parameter vector.
MLP_MAC = 7.0e-11
MLP_BATCH = 1.0e-4
MLP_LAYER_BATCH = 8.0e-5
MLP_PARAM_BATCH = 4.0e-9  # adam/sgd step: memory-bound once the weights leave the cache
LBFGS_PARAM = 1.0e-7
MLP_LBFGS_EVALS = 1.5
MLP_SPARSE = 8.0


# ---------------------------------------------------------------------------------------------- public


@dataclass(frozen=True)
class Estimate:
    """Single-core seconds of the whole training, and what drives it (named as the client names them)."""

    seconds: float
    knobs: tuple[str, ...]
    # The knobs' current values as shown to the user ("500", "unlimited", "16,000"), aligned with `knobs`.
    _values: tuple[str, ...] = field(default=(), repr=False, compare=False)


def estimate(
    algorithm: str,
    task: str,
    params: dict[str, Any],
    *,
    train_rows: int,
    holdout_rows: int,
    width: int,
    n_features: int,
    n_classes: int | None,
    cv: int | None,
) -> Estimate:
    """The cost of training `algorithm` with the client's (validated) `params` on data of this shape.

    `width` is the column count after preprocessing (numbers, one-hot columns, TF-IDF terms; the trainer counts
    each text column as the 5000-term cap); `n_features` the original columns (permutation importance shuffles
    those). Arithmetic only: no estimator is fitted (one is constructed, to read scikit-learn's defaults).
    """
    shape = Shape(train_rows, holdout_rows, width, n_features, n_classes, cv)
    settings = _settings(algorithm, task, params)
    seconds = _total(algorithm, task, settings, shape)
    ranked = _rank_knobs(algorithm, task, settings, shape, seconds)
    return Estimate(seconds, tuple(name for name, _ in ranked), tuple(value for _, value in ranked))


def check(estimate: Estimate, budget_seconds: float) -> None:
    """Refuse (400 training_too_expensive) a training estimated above the budget, naming what to reduce."""
    if estimate.seconds <= budget_seconds:
        return
    shown = dict(zip(estimate.knobs, estimate._values, strict=False))
    named = [k for k in estimate.knobs if k not in ("rows", "features")][:3]
    advice = []
    for verb, knobs in (
        ("reduce", [k for k in named if k not in _CHOICES]),
        ("change", [k for k in named if k in _CHOICES]),
    ):
        if knobs:
            advice.append(f"{verb} " + _or_list([f"{k} ({shown[k]})" if k in shown else k for k in knobs]))
    if "features" in estimate.knobs[:3]:
        advice.append("use fewer features" + (f" ({shown['features']})" if "features" in shown else ""))
    rows = f" (now {shown['rows']})" if "rows" in shown else ""
    advice.append(f"train on fewer rows{rows}")
    raise bad_request(
        f"estimated {_seconds(estimate.seconds)} of training exceeds the {_seconds(budget_seconds)} budget; "
        + ", or ".join(advice),
        code="training_too_expensive",
    )


# ---------------------------------------------------------------------------------------------- shape


@dataclass(frozen=True)
class Shape:
    """The data as the cost models see it."""

    train_rows: int
    holdout_rows: int
    width: int
    n_features: int
    n_classes: int | None
    cv: int | None

    @property
    def classes(self) -> int:
        return self.n_classes or 1

    @property
    def outputs(self) -> int:
        """Models fitted per class (multinomial, one-vs-rest, boosting's trees per stage); one for two classes."""
        return self.classes if self.classes > 2 else 1

    @property
    def encoded(self) -> bool:
        """One-hot or TF-IDF columns: the pipeline works on an object matrix and may emit a sparse one."""
        return self.width > self.n_features

    @property
    def active(self) -> float:
        """Non-zero columns per row: a one-hot feature sets one column, a text about 20 terms."""
        text_columns = self.width // 5000
        return float(min(self.width, self.n_features + 20 * text_columns))

    @property
    def sparse(self) -> bool:
        """Whether the ColumnTransformer emits a sparse matrix (its sparse_threshold is 0.3)."""
        return self.encoded and self.active / self.width < 0.3

    def scaled(self, rows: float = 1.0, columns: float = 1.0) -> Shape:
        """The shape with fewer rows or columns, for ranking the knobs."""
        return replace(
            self,
            train_rows=max(2, round(self.train_rows * rows)),
            holdout_rows=max(1, round(self.holdout_rows * rows)),
            width=max(1, round(self.width * columns)),
            n_features=max(1, round(self.n_features * columns)),
        )


# ---------------------------------------------------------------------------------------------- cost models


def _nothing(rows: float) -> float:
    return 0.0


@dataclass(frozen=True)
class Model:
    """One algorithm's costs on one shape, in seconds: fitting `rows` rows; predicting `rows` rows with a model
    fitted on `fitted` rows (on top of the pipeline's own per-call cost); compressing the model fitted on `rows`."""

    fit: Callable[[float], float]
    predict: Callable[[float, float], float]
    serialise: Callable[[float], float] = _nothing


def _linear(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """Least squares, ridge, lasso, logistic regression: iterations × rows × non-zero columns × outputs."""
    outputs = s.outputs if task == algorithms.CLASSIFICATION else 1
    active = s.active if s.sparse else float(s.width)

    def fit(rows: float) -> float:
        if name == "logistic_regression":
            return _logistic(p, rows, active, outputs)
        if name == "lasso":
            return min(p["max_iter"], CD_ITERATIONS) * rows * s.width * CD_CELL
        if name == "ridge" and p.get("solver") in ("sag", "saga"):
            epochs = min(p.get("max_iter") or 1000, SAG_EPOCHS)
            return epochs * rows * (SAG_ROW + active * SAG_CELL) * outputs
        if s.sparse:  # lsqr / conjugate gradient: tens of passes over the non-zeros
            return LBFGS_ITERATIONS * rows * active * outputs * LBFGS_CELL
        return rows * s.width * (s.width + outputs) * GRAM_CELL

    return Model(
        fit,
        lambda rows, fitted: rows * active * outputs * LINEAR_PREDICT_CELL,
        lambda rows: 8.0 * s.width * outputs * ZLIB_FLOAT_BYTE,
    )


def _logistic(p: dict[str, Any], rows: float, active: float, outputs: int) -> float:
    solver = p.get("solver", "lbfgs")
    if solver in ("sag", "saga"):
        typical = SAGA_L1_EPOCHS if (p.get("l1_ratio") or 0.0) > 0 else SAG_EPOCHS
        return min(p["max_iter"], typical) * rows * (SAG_ROW + active * outputs * SAG_CELL)
    if solver == "newton-cholesky":
        return min(p["max_iter"], NEWTON_ITERATIONS) * rows * (active * outputs) ** 2 * NEWTON_CHOLESKY_CELL
    iterations = min(p["max_iter"], LBFGS_ITERATIONS)
    if solver == "newton-cg":  # fewer outer iterations, each with inner conjugate-gradient passes
        iterations *= 2
    return iterations * rows * active * outputs * LBFGS_CELL


def _naive_bayes(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """Gaussian naive Bayes: one pass per class over a dense matrix (TF-IDF is densified)."""
    return Model(
        lambda rows: rows * s.width * s.classes * NB_CELL,
        lambda rows, fitted: rows * s.width * s.classes * NB_CELL,
    )


def _max_features(value: Any, columns: float) -> float:
    """Columns a tree draws per split, as scikit-learn resolves max_features."""
    if value is None or (isinstance(value, float) and value >= 1.0):
        return columns
    if value == "sqrt":
        return max(1.0, math.sqrt(columns))
    if value == "log2":
        return max(1.0, math.log2(max(columns, 2)))
    if isinstance(value, float):
        return max(1.0, value * columns)
    return float(min(value, columns))


def tree_levels(
    depth: float | None, rows: float, min_samples_leaf: float = 1, max_leaf_nodes: int | None = None
) -> float:
    """Depth-weighted level count of one tree. Each level passes over its rows, but deeper nodes are smaller and
    sort faster, so level l weighs 1 - l/(1.5·log2 n), and the data caps the depth at 1.5·log2(n/min_samples_leaf)
    (measured: fully grown ≈ 0.75·log2(n) levels; depth 8 on 16k rows ≈ 6.5; max_depth=100 on iris ≈ 5)."""
    reach = 1.5 * math.log2(max(2.0, rows / max(1, min_samples_leaf)))
    if max_leaf_nodes:
        reach = min(reach, 1.5 * math.log2(max(2, max_leaf_nodes)))
    d = reach if depth is None else min(float(depth), reach)
    return max(1.0, d - d * d / (2 * reach))


def tree_splits(depth: float | None, rows: float, min_samples_leaf: float, pure_early: bool) -> float:
    """Internal nodes of one tree: regression trees split down to min_samples_leaf rows; classification trees
    stop at pure leaves (measured ~0.1 × rows on noisy data); max_depth caps them at 2^depth."""
    grown = (0.1 if pure_early else 1.0) * rows / max(1, min_samples_leaf)
    if depth is not None:
        grown = min(grown, 2.0 ** min(depth, 40))
    return max(1.0, grown)


def _criterion_factor(p: dict[str, Any], s: Shape) -> float:
    """Impurity updates relative to gini/squared error (measured on 4k rows): entropy takes logs (×1.25), poisson
    too (×1.25), absolute error keeps running medians (×4); more classes add a little per split."""
    factor = {"entropy": 1.25, "log_loss": 1.25, "poisson": 1.25, "absolute_error": 4.0}.get(p.get("criterion"), 1.0)
    return factor * (1.0 + 0.015 * max(0, s.classes - 2))


def _trees(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """Decision tree, random forest, gradient boosting: trees × (rows × dense candidates × weighted levels +
    splits × sparse candidates), plus the per-tree and per-stage overheads."""
    # Rows a leaf keeps: min_samples_leaf, or half of min_samples_split (both integers in the service's whitelist).
    leaf = max(1.0, float(p.get("min_samples_leaf", 1)), p.get("min_samples_split", 2) / 2)
    depth = p.get("max_depth")
    max_leaf = p.get("max_leaf_nodes")
    boosting = name == "gradient_boosting"
    pure_early = task == algorithms.CLASSIFICATION and not boosting  # boosting fits regression trees on gradients
    values = s.classes if pure_early else 1
    if boosting:
        trees, sample, criterion = p["n_estimators"] * s.outputs, p.get("subsample", 1.0), 1.0
    elif name == "random_forest":
        draws = p.get("max_samples") or 1.0
        sample = (1.0 - math.exp(-draws)) if p.get("bootstrap", True) else 1.0  # distinct rows of a bootstrap
        trees, criterion = p["n_estimators"], _criterion_factor(p, s)
    else:
        trees, sample, criterion = 1, 1.0, _criterion_factor(p, s)
    candidates = _max_features(p.get("max_features"), float(s.width)) / s.width
    dense = s.n_features if s.sparse else s.width
    sparse_columns = s.width - dense
    density = s.active / s.width

    def per_tree(rows: float) -> float:
        n = max(2.0, rows * sample)
        scan = TREE_CELL * (0.7 + 0.03 * math.log2(n)) * n * candidates * dense * tree_levels(depth, n, leaf, max_leaf)
        splits = tree_splits(depth, n, leaf, pure_early)
        # Columns that are all zero in a node do not count towards max_features: small nodes try most of them.
        tried = sparse_columns * min(1.0, 30 * candidates)
        return scan * criterion + splits * tried * (NODE_COLUMN + NODE_COLUMN_NNZ * density * n)

    def fit(rows: float) -> float:
        seconds = trees * per_tree(rows) + (rows * s.active * SPARSE_FIT_NNZ if s.sparse else 0.0)
        if boosting:
            seconds += p["n_estimators"] * (BOOST_STAGE + s.outputs * (BOOST_TREE + rows * BOOST_ROW))
        elif name == "random_forest":
            seconds += trees * FOREST_TREE
        return seconds

    def predict(rows: float, fitted: float) -> float:
        splits = tree_splits(depth, fitted * sample, leaf, pure_early)
        path = min(depth or 64, 1.5 * math.log2(splits + 1) + 1)
        step = TREE_STEP + TREE_STEP_MISS * min(1.0, splits / 10_000)
        dispatch = FOREST_TREE_CALL if name == "random_forest" else BOOST_TREE_CALL
        return trees * (dispatch + rows * (TREE_ROW + path * step))

    def serialise(rows: float) -> float:
        nodes = 2 * tree_splits(depth, rows * sample, leaf, pure_early) + 1
        return trees * nodes * (NODE_BYTES + 8.0 * values) * ZLIB_TREE_BYTE

    return Model(fit, predict, serialise)


def _svm(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """libsvm: a fit grows as n^1.9 (kernel columns per SMO step × steps), one binary problem per class pair,
    and runs 6 times with probability=True (Platt scaling's internal 5-fold CV). Prediction evaluates the kernel
    against every support vector, which makes permutation importance the larger part on a few thousand rows."""
    kernel = p.get("kernel", "rbf")
    columns = SVM_SPARSE * s.active if s.sparse else float(s.width)  # libsvm's sparse kernels are slower
    column_term = (columns + 15.0) ** 0.7
    classification = task == algorithms.CLASSIFICATION
    k = s.classes if classification else 2
    pairs = 1.0 if k <= 2 else 0.8 * 2 * (k - 1) / k  # k(k-1)/2 problems on 2n/k rows each
    repeat = SVM_PROBABILITY if classification else SVR_FACTOR
    poly = 0.05 * p.get("degree", 3) if kernel == "poly" else 0.0
    per_support = SVM_PREDICT if kernel in ("rbf", "sigmoid") else SVM_PREDICT_LINEAR

    def support(rows: float) -> float:
        """Support vectors: ~30% of 8k binary rows, more on fewer rows, with more classes or poly degree."""
        base = (SUPPORT_FRACTION if classification else 0.45) + 0.06 * max(0, k - 2) + poly
        return rows * min(1.0, base * (8000.0 / max(rows, 1.0)) ** 0.15)

    def fit(rows: float) -> float:
        difficulty = svm_difficulty(kernel, p.get("C", 1.0), p.get("degree", 3), rows)
        seconds = SVM_FIT * rows**SVM_POWER * column_term * difficulty
        if p.get("max_iter", -1) > 0:  # the client's cap on SMO steps, each two kernel columns of `rows` rows
            seconds = min(seconds, p["max_iter"] * 2 * rows * column_term * SVM_STEP)
        return seconds * pairs * repeat

    def predict(rows: float, fitted: float) -> float:
        return rows * support(fitted) * per_support * column_term

    return Model(fit, predict, lambda rows: support(rows) * columns * 8.0 * ZLIB_FLOAT_BYTE)


def svm_difficulty(kernel: str, c: float, degree: int, rows: float) -> float:
    """How much longer SMO runs than for rbf with C=1 (measured on 1.6k-8k standardised rows). rbf and sigmoid
    grow with log C (×2.5 at C=1000). Linear and poly kernels are unbounded in scale, so a large C means many
    more steps on overlapping classes: linear ×9 at C=10 and ×70 at C=100 whatever the rows; poly 3 at C=100
    ×2.5 on 2k rows but ×23 on 8k; degree 10 ×2.4. On a few hundred rows every kernel converges in milliseconds
    (iris, poly degree 10, C=1e6: 40 ms a fit)."""
    if kernel in ("rbf", "sigmoid"):
        slower = 1.0 + 0.35 * abs(math.log10(c))
    elif kernel == "linear":
        slower = 2.0 * max(1.0, c) ** 0.9
    else:
        slower = (1.0 + 0.15 * (degree - 1)) * max(1.0, max(1.0, c) ** 0.6 * min(1.0, (rows / 8000) ** 1.5))
    return min(slower, max(20.0, 50.0 * (rows / 1000.0) ** 1.5))


def _knn(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """kNN: fitting stores the rows; each prediction compares every query with the fitted rows (brute force)
    or searches a kd-tree, whose advantage is gone past ~12 columns."""
    metric = p.get("metric", "minkowski")
    power = p.get("p", 2)
    euclidean = metric == "euclidean" or (metric == "minkowski" and power == 2)
    neighbours = p.get("n_neighbors", 5)
    width = float(s.width)
    if s.sparse:
        pair = KNN_SPARSE_PAIR + KNN_SPARSE_NNZ * s.active
        tree = False
    else:
        if euclidean:
            cell = KNN_PAIR_CELL
        elif metric in ("manhattan", "chebyshev") or power == 1:
            cell = KNN_PAIR_CELL_P
        else:
            cell = KNN_PAIR_CELL_POW
        pair = KNN_PAIR + cell * width + 2e-11 * neighbours
        tree = p.get("algorithm", "auto") in ("kd_tree", "ball_tree") or (
            p.get("algorithm", "auto") == "auto" and width <= 15
        )

    def predict(rows: float, fitted: float) -> float:
        if not tree or neighbours >= fitted / 2:
            return KNN_CALL + rows * fitted * pair
        # Rows visited per query: ~34·n^0.3 at 4 columns, ~6·n^0.65 at 8, all of them from 12 on.
        power = min(1.0, 0.3 + (width - 4) * 0.0875)
        visits = min(fitted, max(1.0, 34.0 * (6.0 / 34.0) ** ((width - 4) / 4)) * fitted**power)
        slower = 1.0 if euclidean else 1.6
        return KNN_CALL + rows * (KD_QUERY + KD_VISIT * visits * slower) * (1 + neighbours / 20) / 1.25

    return Model(lambda rows: rows * width * (2e-8 if tree else 2e-9), predict)


def _mlp(name: str, task: str, p: dict[str, Any], s: Shape) -> Model:
    """MLP: epochs × (rows × layer products × 3 multiply-adds + batches × per-batch overhead); lbfgs iterations
    are full-batch passes plus work on the whole parameter vector."""
    hidden = tuple(p.get("hidden_layer_sizes", (100,)))
    outputs = s.outputs if task == algorithms.CLASSIFICATION else 1
    # A sparse first layer multiplies only the non-zeros, several times slower each than a dense product; its
    # weights still cover every column (and the optimizer steps all of them).
    layers = [MLP_SPARSE * s.active if s.sparse else float(s.width), *hidden, outputs]
    products = sum(a * b for a, b in itertools.pairwise(layers))
    parameters = products + sum(hidden) + outputs + max(0.0, s.width - layers[0]) * hidden[0]
    solver = p.get("solver", "adam")

    def fit(rows: float) -> float:
        flops = rows * products * 3 * MLP_MAC
        if solver == "lbfgs":
            return lbfgs_iterations(p, rows, task) * (MLP_LBFGS_EVALS * (flops + MLP_BATCH) + parameters * LBFGS_PARAM)
        batch = p.get("batch_size", "auto")
        size = min(200, rows) if batch == "auto" else min(batch, rows)
        per_batch = MLP_BATCH + MLP_LAYER_BATCH * len(layers) + MLP_PARAM_BATCH * parameters
        return mlp_epochs(p, rows, parameters, s.encoded) * (flops + math.ceil(rows / max(1, size)) * per_batch)

    moments = 1 if solver == "lbfgs" else 3  # adam and sgd pickle their moment/velocity arrays too
    return Model(
        fit,
        lambda rows, fitted: rows * products * MLP_MAC + 1e-4 * len(layers),
        lambda rows: parameters * 8.0 * moments * ZLIB_FLOAT_BYTE,
    )


def mlp_epochs(p: dict[str, Any], rows: float, parameters: float, encoded: bool = False) -> float:
    """Epochs adam/sgd run: until the training loss improves by less than tol for n_iter_no_change epochs, or
    max_iter. Measured on iris, digits, diabetes and synthetic 1.6k-16k rows: (100,) needs 50-1000 epochs
    (~450 typical, so the default max_iter=200 is usually reached), (64,)*3 and (256, 256) 30-200, (1024, 1024)
    25-100, (1024,)*5 30-90 — wide networks memorise the rows and stop early. More rows: slightly fewer epochs;
    one-hot inputs took twice the epochs of numeric ones; sgd is about twice as slow as adam; early stopping ends
    after ~40 epochs."""
    converge = (45.0 + 400.0 * (2500.0 / parameters) ** 1.2) * min(1.0, (1000.0 / max(rows, 1.0)) ** 0.1)
    if encoded:
        converge *= 2
    if p.get("solver") == "sgd":
        converge *= 2
    if p.get("early_stopping"):
        converge = min(converge, 40.0)
    return max(1.0, min(float(p.get("max_iter", 200)), converge + p.get("n_iter_no_change", 10)))


def lbfgs_iterations(p: dict[str, Any], rows: float, task: str) -> float:
    """lbfgs MLP iterations: regression and large classification sets ran to max_iter (200) in every
    measurement; small classification sets stopped after 15-45."""
    if task == algorithms.REGRESSION:
        return float(p.get("max_iter", 200))
    return min(float(p.get("max_iter", 200)), 50.0 * max(1.0, rows / 1000) ** 0.5)


MODELS: dict[str, Callable[[str, str, dict[str, Any], Shape], Model]] = {
    "linear_regression": _linear,
    "ridge": _linear,
    "lasso": _linear,
    "logistic_regression": _linear,
    "naive_bayes": _naive_bayes,
    "decision_tree": _trees,
    "random_forest": _trees,
    "gradient_boosting": _trees,
    "svm": _svm,
    "knn": _knn,
    "mlp": _mlp,
}


# ---------------------------------------------------------------------------------------------- the whole training


def _settings(algorithm: str, task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters the fit will use: scikit-learn's defaults, the service's, then the client's."""
    spec = algorithms.ALGORITHMS[algorithm]
    cls = spec.estimators.get(task) or next(iter(spec.estimators.values()))
    return {**cls().get_params(deep=False), **spec.defaults, **params}


def _total(algorithm: str, task: str, p: dict[str, Any], s: Shape) -> float:
    """Seconds of trainer.train after the request is parsed, part by part in the order it runs them."""
    model = MODELS[algorithm](algorithm, task, p, s)
    classification = task == algorithms.CLASSIFICATION
    texts = s.width // 5000  # the trainer counts each text column as the TF-IDF cap
    per_cell = CALL_CELL * s.n_features + TEXT_CELL * texts

    def fit(rows: float) -> float:
        return FIT_CALL + rows * (per_cell + TEXT_CELL * texts) + model.fit(rows)

    def call(rows: float, fitted: float) -> float:
        fixed = CALL + (CATEGORICAL_CALL if s.encoded else 0.0)
        return fixed + rows * per_cell + model.predict(rows, fitted)

    train = float(s.train_rows)
    rows = s.train_rows + s.holdout_rows
    per_row = DATA_ROW + (LABEL_ROW if classification else 0.0)
    seconds = START + rows * (per_row + s.n_features * (ENCODED_DATA_CELL if s.encoded else DATA_CELL))
    seconds += fit(train)
    # The output check on up to 1000 training rows, then the holdout metrics (predict, predict_proba).
    seconds += call(min(train, 1000), train)
    seconds += call(s.holdout_rows, train) * (2 if classification else 1)
    seconds += s.holdout_rows * (METRICS_ROW if classification else METRICS_ROW / 8)
    if s.cv:
        fold = train * (s.cv - 1) / s.cv
        seconds += s.cv * (fit(fold) + call(train / s.cv, fold))
    sample = min(s.holdout_rows, metrics.IMPORTANCE_MAX_ROWS)
    repeats = max(1, min(metrics.IMPORTANCE_MAX_REPEATS, metrics.IMPORTANCE_BUDGET // max(1, s.n_features)))
    seconds += (1 + s.n_features * repeats) * call(sample, train)
    return seconds + model.serialise(train)


# ---------------------------------------------------------------------------------------------- knobs

# Hyperparameters that can drive the cost, per algorithm, with the cheaper value used to measure their weight.
_Relief = Callable[[Any, dict[str, Any]], Any]


def _quarter(value: Any, p: dict[str, Any]) -> Any:
    return max(1, int(value) // 4)


def _shallower(default: int | None) -> _Relief:
    def relieve(value: Any, p: dict[str, Any]) -> Any:
        limit = default or 8
        return limit if value is None or value > limit else value

    return relieve


def _smaller_layers(value: Any, p: dict[str, Any]) -> Any:
    return tuple(max(1, int(v) // 2) for v in value)


_KNOBS: dict[str, dict[str, _Relief]] = {
    "random_forest": {"n_estimators": _quarter, "max_depth": _shallower(None), "max_features": lambda v, p: "sqrt"},
    "gradient_boosting": {"n_estimators": _quarter, "max_depth": _shallower(3)},
    "decision_tree": {"max_depth": _shallower(None)},
    "mlp": {"hidden_layer_sizes": _smaller_layers, "max_iter": _quarter},
    "svm": {"C": lambda v, p: min(v, 1.0), "degree": lambda v, p: min(v, 3), "kernel": lambda v, p: "rbf"},
    "logistic_regression": {"max_iter": _quarter, "solver": lambda v, p: "lbfgs"},
    "lasso": {"max_iter": _quarter},
    "ridge": {"solver": lambda v, p: "auto"},
    "knn": {"n_neighbors": lambda v, p: min(v, 5)},
}
_CHOICES = {"kernel", "solver"}  # knobs one changes rather than reduces
_MATTERS = 1.3  # a knob is named when moving it to its cheaper value saves at least this factor


def _rank_knobs(algorithm: str, task: str, p: dict[str, Any], s: Shape, seconds: float) -> list[tuple[str, str]]:
    """Knobs ordered by how much of the cost they remove, with their current values for the message."""
    savings: list[tuple[float, int, str, str]] = []
    for order, (name, relieve) in enumerate(_KNOBS.get(algorithm, {}).items()):
        if name not in p:
            continue
        cheaper = relieve(p[name], p)
        if cheaper == p[name]:
            continue
        cost = _total(algorithm, task, {**p, name: cheaper}, s)
        savings.append((seconds / max(cost, 1e-9), order, name, _shown(p[name])))
    if s.cv:
        savings.append((seconds / _total(algorithm, task, p, replace(s, cv=None)), 50, "cv", str(s.cv)))
    savings.append((seconds / _total(algorithm, task, p, s.scaled(rows=0.5)), 60, "rows", f"{s.train_rows:,}"))
    if s.width >= 8:
        shown = f"{s.width:,} columns after one-hot/TF-IDF encoding" if s.encoded else f"{s.width:,}"
        savings.append((seconds / _total(algorithm, task, p, s.scaled(columns=0.5)), 70, "features", shown))
    savings.sort(key=lambda item: (-item[0], item[1]))
    named = [(name, shown) for saving, _, name, shown in savings if saving >= _MATTERS]
    return named or [("rows", f"{s.train_rows:,}")]


def _shown(value: Any) -> str:
    if value is None:
        return "unlimited"
    if isinstance(value, (tuple, list)):
        if len(value) > 2 and len(set(value)) == 1:
            return f"[{value[0]}]×{len(value)}"
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
