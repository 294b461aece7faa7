"""Explain a fitted pipeline's output for given rows: one additive contribution per input feature, per output.

The method follows the final estimator (a TransformedTargetRegressor is looked through to choose it; outputs
are always the full pipeline's):

    estimator                                   output (default first)      method
    LinearRegression, Ridge, Lasso, ElasticNet  value                       linear (exact)
    RidgeClassifier                             decision                    linear (exact)
    LogisticRegression                          probability | decision      permutation_sampling | linear
    DecisionTree*, RandomForest* classifiers    probability                 tree_path (exact)
    DecisionTree*, RandomForest*, GB regressors value                       tree_path (exact)
    GradientBoostingClassifier                  probability | decision      permutation_sampling | tree_path
    anything else (SVC/SVR, kNN, GaussianNB,    probability (| decision     permutation_sampling
    MLP)                                        when it has one) or value

"linear" (mlservice.explain.linear) is coefficient × (encoded value − training mean of the encoded column),
summed per raw feature, with the artifact's `explain_encoded_mean_`. "tree_path" (mlservice.explain.treeshap)
is path-dependent TreeSHAP over the encoded columns, summed per raw feature; its base value is the trees'
cover-weighted expectation (plus gradient boosting's constant initial prediction). "permutation_sampling"
(mlservice.explain.sampling) estimates Shapley values over the raw columns against the artifact's
`explain_background_` rows, with standard errors. Every method is additive: base + Σ contributions = output
to rounding, and the response reports the largest difference it measured next to the bound it promises.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mlservice.errors import bad_request
from mlservice.explain import linear, sampling, treeshap
from mlservice.features import TEXT
from mlservice.training.algorithms import core_estimator

# Background rows kept in the artifact. 32: the default 64 samples are 32 antithetic pairs, one per background
# row, so the base value is the mean output over the whole background.
BACKGROUND_ROWS = 32
# Additivity promised: |base + Σ contributions − output| <= ADDITIVITY_TOLERANCE × (1 + max |output|). Every
# method is additive by construction (telescoping walks, exact sums), so only rounding is left: measured errors
# are around 1e-15 for probabilities; the bound leaves room for linear models whose terms cancel at large scale.
ADDITIVITY_TOLERANCE = 1e-6
# Fewest samples a cost-reduced sampling explanation keeps: 4 antithetic pairs, below which the standard errors
# (over pairs) say little.
MIN_SAMPLES = 8
# Tree explanations cost ~ rows × Σ_trees leaves × depth² (treeshap.tree_work, an upper bound). Measured here
# (2 shared cores) at 1.5e8 – 7e8 units per second; 3e8 keeps a request under ~2 s at the slowest rate. A
# 100-tree forest on 480 training rows (min_samples_leaf 5: ~50 leaves, depth ~10) costs ~5.3e5 per row: ~560
# rows per request, 100 rows in ~0.12 s (0.3 s on the first call, which compiles the paths).
# Sampling costs rows × samples × (features − 1) + rows + min(background rows, samples / 2) model rows, plus
# one per occluded token (sampling.evaluations); the caller's max_evaluations bounds it.
MAX_TREE_WORK = 300_000_000
# Model rows per predict call while sampling, and object cells per hybrid matrix (rows × features): bounds the
# memory of one call (an object cell is a pointer, 8 bytes, plus what the pipeline builds from it).
EVALUATION_CHUNK_ROWS = 50_000
EVALUATION_CHUNK_CELLS = 2_000_000
# Tokens per text feature and row: occluded (sampling) at most, and shown.
OCCLUDED_TOKENS = 20
SHOWN_TOKENS = 10
_ENCODED_ROWS_CHUNK = 10_000

LINEAR, TREE, SAMPLING = "linear", "tree_path", "permutation_sampling"
PROBABILITY, VALUE, DECISION = "probability", "value", "decision"


# ---------------------------------------------------------------- training side


def attach_background(
    pipeline: Any, X_train: np.ndarray, random_state: int, features: Sequence[dict], min_group: int
) -> None:
    """Store what explanations compare against on the fitted pipeline, as plain numpy attributes (serving
    unpickles without this package): `explain_background_`, up to BACKGROUND_ROWS rows that each summarise a
    random group of at least 2 × min_group training rows (mlservice.training.background: no training row, and
    no value of fewer than min_group rows, enters the artifact), in the rows_to_matrix layout of X_train; and
    `explain_encoded_mean_`, the float64 mean of the encoded training rows (all of them, in chunks), the exact
    linear method's reference.
    """
    from mlservice.training.background import summary_rows

    rows = len(X_train)
    layout = _layout(pipeline)
    vocabularies = {j: {str(t) for t in terms} for j, (_, terms, _) in layout.text.items()}
    summary = summary_rows(X_train, features, vocabularies, min_group, random_state)[:BACKGROUND_ROWS]
    pipeline.explain_background_ = summary.astype(X_train.dtype) if X_train.dtype != object else summary
    encode = pipeline[:-1]
    total: np.ndarray | None = None
    for start in range(0, rows, _ENCODED_ROWS_CHUNK):
        part = np.asarray(encode.transform(X_train[start : start + _ENCODED_ROWS_CHUNK]).sum(axis=0), np.float64)
        total = part.ravel() if total is None else total + part.ravel()
    pipeline.explain_encoded_mean_ = (total if total is not None else np.zeros(0)) / max(rows, 1)


# ---------------------------------------------------------------- the encoded layout


@dataclass(frozen=True)
class _Layout:
    """Which raw feature produced each encoded column, and each text feature's TF-IDF columns and terms."""

    owner: np.ndarray  # (F,)
    text: dict[int, tuple[np.ndarray, np.ndarray, Any]]  # raw position → (encoded columns, terms, vectorizer)


_LAYOUTS: weakref.WeakKeyDictionary[Any, _Layout] = weakref.WeakKeyDictionary()
_ENSEMBLES: weakref.WeakKeyDictionary[Any, dict[str, treeshap.Ensemble]] = weakref.WeakKeyDictionary()


def _layout(pipeline: Any) -> _Layout:
    """From the fitted "preprocess" ColumnTransformer: its transformers in output order (output_indices_)."""
    preprocess = pipeline.named_steps["preprocess"]
    cached = _LAYOUTS.get(preprocess)
    if cached is not None:
        return cached
    width = max((s.stop for s in preprocess.output_indices_.values()), default=0)
    owner = np.full(width, -1, dtype=np.intp)
    text: dict[int, tuple[np.ndarray, np.ndarray, Any]] = {}
    for name, transformer, columns in preprocess.transformers_:
        where = preprocess.output_indices_[name]
        size = where.stop - where.start
        if size == 0:
            continue
        if np.isscalar(columns):  # one text column: every TF-IDF column belongs to it
            owner[where] = int(columns)  # type: ignore[arg-type]
            terms = np.empty(size, dtype=object)
            for term, index in transformer.vocabulary_.items():
                terms[index] = term
            text[int(columns)] = (np.arange(where.start, where.stop), terms, transformer)  # type: ignore[arg-type]
        elif hasattr(transformer, "categories_"):  # one-hot: each input column's categories, in order
            counts = [len(c) for c in transformer.categories_]
            owner[where] = np.repeat(np.asarray(columns, dtype=np.intp), counts)
        elif size == len(columns):  # numeric: one output column per input column
            owner[where] = np.asarray(columns, dtype=np.intp)
        else:
            raise ValueError(f"cannot map the outputs of transformer {name!r} to its input columns")
    if (owner < 0).any():
        raise ValueError("some encoded columns have no input column")
    layout = _Layout(owner, text)
    _LAYOUTS[preprocess] = layout
    return layout


# ---------------------------------------------------------------- which method, which output


def _options(model: Any) -> dict[str, str]:
    """{output: method}, the default first."""
    from sklearn.base import is_classifier
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge, RidgeClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    core = core_estimator(model)
    if isinstance(core, RidgeClassifier):
        return {DECISION: LINEAR}
    if isinstance(core, (LinearRegression, Ridge, ElasticNet)):  # Lasso is an ElasticNet
        return {VALUE: LINEAR}
    if isinstance(core, LogisticRegression):
        return {PROBABILITY: SAMPLING, DECISION: LINEAR}
    if isinstance(core, (DecisionTreeClassifier, RandomForestClassifier)):
        return {PROBABILITY: TREE}
    if isinstance(core, (DecisionTreeRegressor, RandomForestRegressor, GradientBoostingRegressor)):
        return {VALUE: TREE}
    if isinstance(core, GradientBoostingClassifier):
        return {PROBABILITY: SAMPLING, DECISION: TREE}
    if not is_classifier(core):
        return {VALUE: SAMPLING}
    options = {PROBABILITY: SAMPLING} if hasattr(model, "predict_proba") else {}
    if hasattr(model, "decision_function"):
        options[DECISION] = SAMPLING
    return options


def _target_affine(model: Any) -> tuple[float, float] | None:
    """(scale, offset) with which a target-scaling wrapper maps its regressor's output to the prediction
    ((1, 0) without one), or None when that map is not affine (exact methods then do not apply)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    if not isinstance(model, TransformedTargetRegressor):
        return 1.0, 0.0
    scaler = getattr(model, "transformer_", None)
    if not isinstance(scaler, StandardScaler) or model.func is not None or model.inverse_func is not None:
        return None
    scale = float(scaler.scale_[0]) if scaler.scale_ is not None else 1.0
    offset = float(scaler.mean_[0]) if getattr(scaler, "mean_", None) is not None and scaler.with_mean else 0.0
    return scale, offset


def _output_function(pipeline: Any, output: str) -> Callable[[np.ndarray], np.ndarray]:
    def probability(rows: np.ndarray) -> np.ndarray:
        return np.asarray(pipeline.predict_proba(rows), dtype=np.float64)

    def decision(rows: np.ndarray) -> np.ndarray:
        return np.asarray(pipeline.decision_function(rows), dtype=np.float64).reshape(len(rows), -1)

    def value(rows: np.ndarray) -> np.ndarray:
        return np.asarray(pipeline.predict(rows), dtype=np.float64).reshape(len(rows), -1)

    chosen = {PROBABILITY: probability, DECISION: decision, VALUE: value}[output]

    def quiet(rows: np.ndarray) -> np.ndarray:
        # Hybrid rows are legal inputs; warnings (feature names, convergence notes) would only repeat per chunk.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return chosen(rows)

    return quiet


def _too_expensive(rows: int, at_most: int, why: str) -> Exception:
    return bad_request(
        f"explaining {rows} rows would take {why}; this model can explain at most {max(at_most, 0)} rows per "
        "request: send fewer rows",
        code="explanation_too_expensive",
    )


def _unavailable(what: str) -> Exception:
    return bad_request(
        f"this model version has no {what} (it was trained before explanations were added): retrain it to explain it",
        code="invalid_output",
    )


# ---------------------------------------------------------------- the engines


@dataclass
class _Attribution:
    base: np.ndarray  # (rows, K)
    values: np.ndarray  # (rows, K)
    phi: np.ndarray  # (rows, M, K)
    standard_errors: np.ndarray | None = None
    tokens: dict[int, list[list[tuple[str, np.ndarray]]]] | None = None  # raw position → per row
    evaluations: int = 0
    samples: int | None = None


def _encoded_tokens(
    encoded: Any, layout: _Layout, contributions: Callable[[int, np.ndarray, np.ndarray], np.ndarray]
) -> dict[int, list[list[tuple[str, np.ndarray]]]]:
    """Per text feature and row, (term, contribution) of the TF-IDF columns non-zero in the row.
    `contributions(row, encoded columns, their values)` gives (n, K)."""
    found: dict[int, list[list[tuple[str, np.ndarray]]]] = {}
    matrix = sparse.csr_matrix(encoded) if not sparse.issparse(encoded) else encoded.tocsr()
    for position, (columns, terms, _) in layout.text.items():
        block = matrix[:, columns].tocsr()
        block.eliminate_zeros()
        per_row = []
        for r in range(block.shape[0]):
            span = slice(block.indptr[r], block.indptr[r + 1])
            local = block.indices[span]
            values = contributions(r, columns[local], block.data[span])
            per_row.append([(str(terms[i]), values[n]) for n, i in enumerate(local)])
        found[position] = per_row
    return found


def _linear(pipeline: Any, model: Any, matrix: np.ndarray, layout: _Layout, values: np.ndarray) -> _Attribution:
    mean = getattr(pipeline, "explain_encoded_mean_", None)
    if mean is None:
        raise _unavailable("training mean for the exact linear explanation")
    affine = _target_affine(model)
    assert affine is not None  # checked by the caller
    scale, offset = affine
    coef, intercept = linear.linear_terms(core_estimator(model))
    encoded = pipeline[:-1].transform(matrix)
    base, phi = linear.linear_shap(encoded, coef, intercept, mean, layout.owner, matrix.shape[1])
    tokens = _encoded_tokens(
        encoded, layout, lambda _r, columns, data: linear.token_contributions(coef, mean, columns, data) * scale
    )
    base_rows = np.tile(base * scale + offset, (len(matrix), 1))
    return _Attribution(base_rows, values, phi * scale, tokens=tokens)


def _tree_units(core: Any) -> tuple[list[tuple[Any, float, int]], float]:
    """(sklearn Tree, scale, output column or PROBA) of every tree, and the boosting learning rate (0 for
    models without an initial prediction)."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    if isinstance(core, (GradientBoostingRegressor, GradientBoostingClassifier)):
        rate = float(core.learning_rate)
        stages = core.estimators_
        return [(stages[t, k].tree_, rate, k) for t in range(stages.shape[0]) for k in range(stages.shape[1])], rate
    trees = core.estimators_ if hasattr(core, "estimators_") else [core]
    mode = treeshap.PROBA if isinstance(core, (DecisionTreeClassifier, RandomForestClassifier)) else 0
    return [(t.tree_, 1.0 / len(trees), mode) for t in trees], 0.0


def _tree(
    pipeline: Any, model: Any, matrix: np.ndarray, layout: _Layout, values: np.ndarray, output: str
) -> _Attribution:
    affine = _target_affine(model)
    assert affine is not None  # checked by the caller
    scale, offset = affine
    core = core_estimator(model)
    units, rate = _tree_units(core)
    per_row = treeshap.tree_work([tree for tree, _, _ in units])
    if per_row * len(matrix) > MAX_TREE_WORK:
        raise _too_expensive(
            len(matrix),
            MAX_TREE_WORK // max(per_row, 1),
            f"~{per_row * len(matrix):.2g} TreeSHAP steps (rows × Σ over trees of leaves × depth²), more than the "
            f"{MAX_TREE_WORK:.2g} allowed",
        )
    compiled = _ENSEMBLES.setdefault(core, {})
    if output not in compiled:
        compiled[output] = treeshap.compile_ensemble(units, values.shape[1])
    ensemble = compiled[output]
    encoded = pipeline[:-1].transform(matrix)
    used = encoded[:, ensemble.columns]
    used = used.toarray() if sparse.issparse(used) else np.asarray(used)
    phi_encoded, _ = treeshap.shap_values(ensemble, used.astype(np.float32).astype(np.float64))
    base = np.tile(ensemble.expected, (len(matrix), 1))
    if rate:
        # Boosting starts from a constant (the init estimator's raw prediction): the output minus what the
        # stages add, with sklearn's own tree predictions.
        stages = core.estimators_
        dense = encoded.toarray() if sparse.issparse(encoded) else np.asarray(encoded)
        dense = dense.astype(np.float32)
        added = np.stack(
            [sum(stages[t, k].predict(dense) for t in range(stages.shape[0])) for k in range(stages.shape[1])], axis=1
        )
        base = base + (values - offset) / scale - rate * added
    phi = np.zeros((len(matrix), matrix.shape[1], values.shape[1]))
    np.add.at(phi, (slice(None), layout.owner[ensemble.columns]), phi_encoded)

    def contributions(r: int, columns: np.ndarray, _data: np.ndarray) -> np.ndarray:
        at = np.searchsorted(ensemble.columns, columns)
        found = (at < len(ensemble.columns)) & (ensemble.columns[np.minimum(at, len(ensemble.columns) - 1)] == columns)
        out = np.zeros((len(columns), values.shape[1]))
        out[found] = phi_encoded[r, at[found]] * scale
        return out

    tokens = _encoded_tokens(encoded, layout, contributions)
    return _Attribution(base * scale + offset, values, phi * scale, tokens=tokens)


def _present_tokens(matrix: np.ndarray, layout: _Layout) -> dict[int, list[list[str]]]:
    """Per text feature and row, the vocabulary terms in the row, at most OCCLUDED_TOKENS: the highest TF-IDF
    weights first (ties by term)."""
    chosen: dict[int, list[list[str]]] = {}
    for position, (_, terms, vectorizer) in layout.text.items():
        weights = vectorizer.transform([str(t) for t in matrix[:, position]]).tocsr()
        weights.eliminate_zeros()
        per_row = []
        for r in range(weights.shape[0]):
            span = slice(weights.indptr[r], weights.indptr[r + 1])
            ranked = sorted(zip(-weights.data[span], terms[weights.indices[span]].tolist(), strict=True))
            per_row.append([term for _, term in ranked[:OCCLUDED_TOKENS]])
        chosen[position] = per_row
    return chosen


def _sampling(
    pipeline: Any,
    matrix: np.ndarray,
    layout: _Layout,
    output: Callable[[np.ndarray], np.ndarray],
    *,
    samples: int,
    max_evaluations: int,
    random_state: int,
) -> _Attribution:
    background = getattr(pipeline, "explain_background_", None)
    if background is None or len(background) == 0:
        raise _unavailable("background rows for the sampling explanation")
    rows, m = matrix.shape
    tokens = _present_tokens(matrix, layout)
    occluded = sum(len(listed) for per_row in tokens.values() for listed in per_row)
    samples = max(4, samples + samples % 2)

    def cost(count: int) -> int:
        return sampling.evaluations(rows, m, count, len(background)) + occluded

    if cost(samples) > max_evaluations:
        if m > 1:
            fit = (max_evaluations - occluded - rows - min(len(background), samples // 2)) // (rows * (m - 1))
            samples = min(samples, int(fit) - int(fit) % 2)
        if m <= 1 or samples < MIN_SAMPLES or cost(samples) > max_evaluations:
            per_row = MIN_SAMPLES * max(m - 1, 0) + 1 + OCCLUDED_TOKENS * len(layout.text)
            at_most = (max_evaluations - min(len(background), MIN_SAMPLES // 2)) // per_row
            raise _too_expensive(
                rows,
                at_most,
                f"at least {cost(MIN_SAMPLES) if m > 1 else cost(samples)} model evaluations "
                f"({MIN_SAMPLES} samples × ({m} features − 1) per row, plus token occlusions), more than the "
                f"{max_evaluations} allowed",
            )
    chunk = max(1, min(EVALUATION_CHUNK_ROWS, EVALUATION_CHUNK_CELLS // max(m, 1)))
    result = sampling.sampling_shapley(output, matrix, background, samples, random_state, chunk)
    found: dict[int, list[list[tuple[str, np.ndarray]]]] = {}
    for position, per_row in tokens.items():
        changes = sampling.occlusion(output, matrix, position, per_row, result.values, chunk)
        found[position] = [
            list(zip(listed, change, strict=True)) for listed, change in zip(per_row, changes, strict=True)
        ]
    return _Attribution(
        np.tile(result.base, (rows, 1)),
        result.values,
        result.phi,
        standard_errors=result.standard_errors,
        tokens=found,
        evaluations=result.evaluations + occluded,
        samples=result.samples,
    )


# ---------------------------------------------------------------- the response


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _shown_tokens(listed: list[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    """The SHOWN_TOKENS largest by max |contribution| over outputs (ties by term); tokens contributing exactly
    nothing (a zero coefficient, a word no tree splits on, an occlusion that changes nothing) are left out."""
    ranked = sorted(
        ((float(np.abs(c).max()), term, c) for term, c in listed if np.any(c != 0)), key=lambda t: (-t[0], t[1])
    )
    return [{"token": term, "contribution": _floats(c)} for _, term, c in ranked[:SHOWN_TOKENS]]


def _labels(pipeline: Any, classes: list | None) -> list[Any]:
    if classes is not None:
        return list(classes)
    return [v.item() if isinstance(v, np.generic) else v for v in pipeline.classes_.tolist()]


def explain(
    pipeline: Any,
    matrix: np.ndarray,
    features: list[dict],
    task: str,
    classes: list | None,
    *,
    output: str | None = None,
    max_evaluations: int = 200_000,
    samples: int = 64,
    random_state: int = 0,
) -> dict:
    """JSON-ready explanation of every row of `matrix` (raw rows_to_matrix layout); the method per model is in
    the module docstring.

    The result: method, output, outputs (one label per output column), tolerance (the absolute additivity
    bound promised), max_additivity_error (measured), evaluations (model rows evaluated; 0 for exact methods),
    samples (sampling only), token_method ("encoded" | "occlusion", when a feature is text) and rows, each
    with prediction (pipeline.predict), base_value, output_value and contributions {feature: [per output]},
    standard_errors for sampling, tokens {text feature: top SHOWN_TOKENS present words} for text features.
    Raises 400 invalid_output for an output the model does not have (or a model trained before explanations,
    which lacks their background) and explanation_too_expensive past the cost bounds, naming the rows that fit.
    Sampling uses `samples` per row (rounded up to even, at least 4; lowered to fit max_evaluations, not below
    MIN_SAMPLES) and is seeded by `random_state`: the same rows in the same order get the same explanation."""
    model = pipeline.steps[-1][1]
    options = _options(model)
    chosen = output or next(iter(options))
    if chosen not in options:
        allowed = ", ".join(repr(o) for o in options)
        raise bad_request(
            f"output {chosen!r} is not available for this model ({type(core_estimator(model)).__name__}); "
            f"allowed: {allowed}",
            code="invalid_output",
        )
    method = options[chosen]
    if method != SAMPLING and _target_affine(model) is None:
        method = SAMPLING
    rows, m = matrix.shape
    function = _output_function(pipeline, chosen)
    layout = _layout(pipeline)
    if chosen == VALUE:
        outputs: list[Any] = ["value"]
    else:
        labels = _labels(pipeline, classes)
        k = 1 if chosen == DECISION and len(labels) == 2 else len(labels)
        outputs = labels[1:] if k == 1 else labels
    if rows == 0:
        attribution = _Attribution(
            *(np.zeros((0, *shape)) for shape in ((len(outputs),), (len(outputs),), (m, len(outputs))))
        )
    elif method == SAMPLING:
        attribution = _sampling(
            pipeline,
            matrix,
            layout,
            function,
            samples=samples,
            max_evaluations=max_evaluations,
            random_state=random_state,
        )
    else:
        values = function(matrix)
        if method == LINEAR:
            attribution = _linear(pipeline, model, matrix, layout, values)
        else:
            attribution = _tree(pipeline, model, matrix, layout, values, chosen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = pipeline.predict(matrix).tolist() if rows else []
    totals = attribution.base + attribution.phi.sum(axis=1)
    error = float(np.abs(totals - attribution.values).max()) if rows else 0.0
    scale = float(np.abs(attribution.values).max()) if rows else 0.0
    names = [f["name"] for f in features]
    text = [j for j, f in enumerate(features) if f["kind"] == TEXT]
    result_rows = []
    for r in range(rows):
        row: dict[str, Any] = {
            "prediction": predictions[r],
            "base_value": _floats(attribution.base[r]),
            "output_value": _floats(attribution.values[r]),
            "contributions": {names[j]: _floats(attribution.phi[r, j]) for j in range(m)},
        }
        if attribution.standard_errors is not None:
            row["standard_errors"] = {names[j]: _floats(attribution.standard_errors[r, j]) for j in range(m)}
        if text:
            found = attribution.tokens or {}
            row["tokens"] = {names[j]: _shown_tokens(found[j][r]) if j in found else [] for j in text}
        result_rows.append(row)
    result: dict[str, Any] = {
        "method": method,
        "output": chosen,
        "outputs": outputs,
        "tolerance": ADDITIVITY_TOLERANCE * (1.0 + scale),
        "max_additivity_error": error,
        "evaluations": attribution.evaluations,
    }
    if method == SAMPLING:
        result["samples"] = attribution.samples if attribution.samples is not None else samples
    if text:
        result["token_method"] = "occlusion" if method == SAMPLING else "encoded"
    result["rows"] = result_rows
    return result
