r"""The ONNX export of a fitted pipeline, made at training and checked against scikit-learn on the holdout.

`export` converts the whole Pipeline (preprocessing included) with skl2onnx and returns the ONNX bytes with
a JSON-ready report, which the trainer stores in the version's metadata as `serving`. A version with an
export is served by onnxruntime (mlservice.serving.onnx_runner) without scikit-learn or scipy; one without is
served by scikit-learn from its joblib artifact, and the report says why:

    {"format": "onnx", "seconds": …,
     "onnx": {"bytes", "sha256", "opset": {domain: version}, "precision": "float32" | "float64",
              "converter": {"skl2onnx", "onnx"},
              "inputs": [{"name": "f0", "feature", "type", "shape", "lowercase" (text)}, …],
              "outputs": [{"name", "type", "shape"}, …]},
     "parity": {"rows", "engine": "onnx.reference", "seconds", "passed",
                classification: "label_agreement", "tied_rows_differing", "max_abs_probability_diff";
                regression: "max_abs_diff", "max_rel_diff"; kNN: "neighbour_tied_rows";
                "tolerance": {…}}}
    {"format": "joblib", "reason": "…", "parity": {… "failure"} when that was the reason, "seconds"}

The graph, for the version's `features` in order:

- Inputs: one per feature, named by position — `f0`, `f1`, … — of shape [N, 1]: float32 for a numeric feature
  (NaN is missing; the median imputer, a float32 ai.onnx.ml Imputer, fills it), a string for a categorical
  feature (rows_to_matrix pools rare and unseen values first, for both engines) and for a text feature,
  lowercased by the caller (below).
- Outputs: classifiers `label` [N] and `probabilities` [N, classes] (no ZipMap: it costs ~7× in throughput);
  a classifier without predict_proba (ridge) has no `probabilities`. Regressors `variable` [N, 1]. Labels are
  the classes themselves (strings or int64), except boolean classes, exported as 0/1 (skl2onnx has no boolean
  labels) and mapped back by the runner.
- Precision: the preprocessing is float32 (exact for one-hot and TF-IDF; numbers carry float32's 7 digits).
  The model's own part is float32 too, and is exported again in float64 (a Cast after the preprocessing)
  when float32 fails the parity check — for the estimators of FLOAT64_ESTIMATORS, whose float64 graphs
  onnxruntime runs. Trees stay float32, as scikit-learn runs them. Gaussian naive Bayes starts in float64:
  its log-likelihoods (variances near var_smoothing on one-hot columns: terms of 1e9) mean nothing in float32.
- Target scaling: svm and mlp regressors are fitted on a standardised target (TransformedTargetRegressor
  with a StandardScaler); a converter registered here appends the inverse, `y * scale + mean`.
- TF-IDF: skl2onnx writes StringNormalizer (lowercase) → com.microsoft Tokenizer → TfIdfVectorizer, and two of
  those would not reproduce scikit-learn:
  * skl2onnx replaces scikit-learn's default token pattern `(?u)\b\w\w+\b` with `[a-zA-Z0-9_]+` (ASCII
    only: "café" becomes "caf"). The export gives the Tokenizer ONNX_TOKEN_PATTERN, `[\p{L}\p{N}_]+` in
    RE2 (onnxruntime's regex engine): maximal runs of Unicode letters, digits and underscores, which is what
    `\b\w\w+\b` finds in Python (one-letter runs come out too, but are never in the vocabulary). Checked on
    every code point (tests/test_onnx.py): the same words for every character Python's Unicode database
    assigns; a character assigned only in a later Unicode version than the training's Python knows (3.13:
    15.1) may join a word in onnxruntime that Python splits. scikit-learn's tokenisation is unchanged
    (preprocessing.TOKEN_PATTERN spells out its default), so older artifacts mean what they meant.
  * StringNormalizer becomes Identity and the runner lowercases with Python's `str.lower`, as scikit-learn
    does. onnxruntime's StringNormalizer needs an installed en_US.UTF-8 locale (this machine has only
    C.utf8: the session does not load) and lowercases one character at a time ("İ", final sigma) where
    Python does not.
- kNN: the fitted rows (a sparse matrix after sparse preprocessing) go to the converter as a dense copy
  (refused over MAX_ONNX_BYTES); euclidean distances use onnxruntime's CDist (one GEMM; ~20× faster per call
  than the Scan skl2onnx writes otherwise). Either computes all distances of a batch at once, so the model's
  metadata (BATCH_ROWS_KEY, reported as `batch_rows`) tells the runner how many rows to run at a time. weights "distance" is refused: skl2onnx 1.20 computes every
  weight as 1e6 (it clips the negated distances TopK returns), i.e. uniform weights.

Parity check. The training function has no onnxruntime (with scipy it would pass Lambda's 250 MB layer
limit), so the export is run by `onnx.reference.ReferenceEvaluator` (pure Python) through the very runner
code that serves it (OnnxRunner with the evaluator as its session), on at most PARITY_MAX_ROWS holdout rows,
in chunks of PARITY_CHUNK_ROWS while PARITY_SECONDS last (at least one chunk; `rows` says how many). Five
operators get implementations of our own (reference_operators): com.microsoft Tokenizer and CDist (absent
from the reference; CDist computed as onnxruntime does, GEMM form in float32), the tree ensembles (the
reference walks each tree node by node in Python, minutes for a 500-tree forest; ours moves every row
through a tree at once with numpy, with the same float32 comparisons), and SVMClassifier (two onnx 1.23
bugs fixed: libsvm's probability coupling for 3+ classes, string labels of two classes). Criteria:

- labels identical on at least LABEL_AGREEMENT of the rows, not counting rows where scikit-learn's two
  highest probabilities are within PROBABILITY_TOLERANCE (an exact tie may fall either way in float32);
- probabilities within PROBABILITY_TOLERANCE (absolute);
- regression values within REGRESSION_RTOL × |value| + REGRESSION_ATOL × max |value on the checked rows|
  (float32 carries ~7 significant digits, so the absolute part scales with the target);
- kNN rows whose k-th nearest training row is as far as the next one (categories alone make that common)
  have no single right answer: scikit-learn's choice among the tied rows follows rounding in its distance
  computation. There the export's probabilities (or value) must be ones that some choice among the tied
  rows gives (within the tolerances); their labels are not compared.

Any failure — conversion, a graph the reference cannot run, parity — makes the version joblib-served, with
the reason; so does an export over MAX_ONNX_BYTES (checked from the tree sizes before converting, too).
`export_within` runs the export in a child process stopped when its time is up (skl2onnx's and scikit-learn's
loops cannot be interrupted otherwise): an export that would outlast the training deadline costs the ONNX
file, never the training.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlservice.errors import ServiceError
from mlservice.serving.onnx_runner import (
    BATCH_ROWS_KEY,
    CATEGORICAL,
    CLASSIFICATION,
    LABEL,
    NUMERIC,
    PROBABILITIES,
    TEXT,
    VARIABLE,
    OnnxRunner,
    input_name,
)
from mlservice.training import deadline as deadline_runner
from mlservice.training.preprocessing import TOKEN_PATTERN

FORMAT_ONNX, FORMAT_JOBLIB = "onnx", "joblib"
FLOAT32, FLOAT64 = "float32", "float64"
# Estimators exported in float64 when float32 fails parity; each one's float64 export runs in onnxruntime
# (tests/test_onnx.py converts every one of them).
FLOAT64_ESTIMATORS = frozenset(
    {
        "LinearRegression",
        "Ridge",
        "Lasso",
        "LogisticRegression",
        "SVC",
        "KNeighborsClassifier",
        "KNeighborsRegressor",
        "GaussianNB",
        "MLPClassifier",
        "MLPRegressor",
    }
)
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
MAX_ONNX_BYTES = 100 * 1024 * 1024
# What one run of a kNN export may hold in distances (batch_rows).
BATCH_BYTES = 64 * 1024 * 1024
PARITY_MAX_ROWS = 2000
PARITY_CHUNK_ROWS = 250
PARITY_SECONDS = 4.0
LABEL_AGREEMENT = 0.999
PROBABILITY_TOLERANCE = 1e-4
REGRESSION_RTOL = 1e-4
REGRESSION_ATOL = 1e-5
# The export gives up this long before the training deadline, which also has to return the result.
DEADLINE_MARGIN_SECONDS = 1.0
# Below this, an export is not attempted at all.
MIN_EXPORT_SECONDS = 0.5
# onnxruntime's Tokenizer: what scikit-learn's (?u)\b\w\w+\b matches, in RE2 (see the module docstring).
ONNX_TOKEN_PATTERN = r"[\p{L}\p{N}_]+"
_PYTHON_TOKEN_PATTERNS = {ONNX_TOKEN_PATTERN: r"\w+", "[a-zA-Z0-9_]+": r"[a-zA-Z0-9_]+"}
MAX_REASON = 300


class NotExported(Exception):
    """Why a pipeline has no ONNX export (the `reason` of its report)."""


def joblib_report(reason: str, **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT_JOBLIB, "reason": reason[:MAX_REASON], **extra}


def export(
    pipeline: Any,
    features: Sequence[dict],
    task: str,
    X_check: np.ndarray,
    *,
    seconds: float | None = None,
    expected: Expected | None = None,
) -> tuple[bytes | None, dict[str, Any]]:
    """(ONNX bytes or None, report) for a fitted pipeline.

    `features` is the version's published feature list (name, kind, …, in input order), `task` its task,
    `X_check` the holdout as rows_to_matrix made it (rare categories pooled); its first PARITY_MAX_ROWS rows
    are compared with the pipeline's own outputs, `expected` (`expected_outputs(pipeline, task, X_check)`,
    computed here when not given). `seconds` bounds the parity check's chunks (default PARITY_SECONDS). The
    pipeline is not modified. Never raises for a model that does not convert: the report then has `format`
    "joblib" and a `reason`.
    """
    started = time.perf_counter()
    if expected is None:
        try:
            expected = expected_outputs(pipeline, task, X_check)
        except Exception as error:
            return None, joblib_report(f"scikit-learn's outputs for the parity check failed: {_describe(error)}")
    data, report = None, {}
    for attempt, precision in enumerate(_precisions(pipeline)):
        try:
            data, report = _export_once(pipeline, features, task, expected, precision, seconds)
        except Exception as error:  # skl2onnx's refusals are of every type
            if attempt:  # the float64 retry does not convert: the float32 parity failure stands
                report["float64_retry"] = _describe(error)
                break
            reason = str(error) if isinstance(error, NotExported) else f"conversion failed: {_describe(error)}"
            data, report = None, joblib_report(reason)
        if report["format"] == FORMAT_ONNX or "parity" not in report:
            break
    report["seconds"] = round(time.perf_counter() - started, 3)
    return data, report


def _export_once(
    pipeline: Any, features: Sequence[dict], task: str, expected: Expected, precision: str, seconds: float | None
) -> tuple[bytes | None, dict[str, Any]]:
    model = convert(pipeline, features, task, precision)
    data = model.SerializeToString()
    if len(data) > MAX_ONNX_BYTES:
        return None, joblib_report(f"the ONNX export would be {len(data):,} bytes, {_over_cap()}")
    classes = _classes(pipeline) if task == CLASSIFICATION else None
    try:
        parity = check_parity(model, data, features, task, classes, expected, seconds)
    except Exception as error:
        return None, joblib_report(f"the parity check could not run the export: {_describe(error)}")
    if not parity["passed"]:
        parity = {**parity, "precision": precision}
        return None, joblib_report(f"parity check failed: {parity['failure']}", parity=parity)
    import onnx
    import skl2onnx

    description = {
        **_describe_model(model, data, features),
        "precision": precision,
        "converter": {"skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__},
    }
    return data, {"format": FORMAT_ONNX, "onnx": description, "parity": parity}


def _precisions(pipeline: Any) -> tuple[str, ...]:
    """The precisions the model's own computation is tried in, in order (the preprocessing is float32):
    float32, then float64 when float32 fails the parity check, for the estimators whose float64 graph
    skl2onnx writes and onnxruntime runs (FLOAT64_ESTIMATORS; not SVR, whose SVMRegressor onnxruntime has
    in float32 only, not ridge's classifier, nor trees, which scikit-learn itself runs in float32). Gaussian
    naive Bayes starts in float64: its log-likelihoods (variances near var_smoothing on one-hot columns,
    terms of 1e9) lose everything in float32."""
    estimator = algorithms_core(pipeline.named_steps["model"])
    name = type(estimator).__name__
    if name == "GaussianNB":
        return (FLOAT64,)
    if name in FLOAT64_ESTIMATORS:
        return (FLOAT32, FLOAT64)
    return (FLOAT32,)


def algorithms_core(model: Any) -> Any:
    """The estimator inside the target-scaling wrapper, if any."""
    return getattr(model, "regressor_", model)


def export_within(
    pipeline: Any, features: Sequence[dict], task: str, X_check: np.ndarray, seconds: float
) -> tuple[bytes | None, dict[str, Any]]:
    """`export` in a child process stopped when `seconds` (the time the training deadline leaves) less
    DEADLINE_MARGIN_SECONDS have passed: a timeout, a crash or running out of memory is a joblib report, not
    an error, and the training goes on.

    The child runs OpenMP with one thread: scikit-learn's kNN (predict, neighbour search) runs OpenMP
    threads, and GNU OpenMP hangs in a process forked from one that has run them (the fit may have, here)."""
    seconds -= DEADLINE_MARGIN_SECONDS
    if seconds < MIN_EXPORT_SECONDS:
        return None, joblib_report("no time was left before the training deadline to export the model to ONNX")
    # The parity check stops its chunks well before the child would be stopped.
    check_seconds = min(PARITY_SECONDS, seconds / 3)

    def work() -> tuple[bytes | None, dict[str, Any]]:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return export(pipeline, features, task, X_check, seconds=check_seconds)

    try:
        return deadline_runner.run(work, seconds, total=seconds)
    except ServiceError as error:
        if error.code == "training_timeout":
            return None, joblib_report(f"the ONNX export did not finish within the {seconds:.1f} s left")
        if error.message == deadline_runner.OUT_OF_MEMORY:
            return None, joblib_report("the ONNX export ran out of memory")
        return None, joblib_report(f"the ONNX export failed: {error.message}")
    except deadline_runner.ChildCrashed as error:
        return None, joblib_report(f"the ONNX export failed: {str(error).splitlines()[0]}")


def preload() -> None:
    """Import skl2onnx and onnx's reference evaluator and register what the export adds (~0.2 s), in this
    process: the export runs in forked children, which would otherwise each pay the imports again."""
    import onnx.reference  # noqa: F401
    import skl2onnx  # noqa: F401

    _register_converters()
    reference_operators()


# ---------------------------------------------------------------- conversion


def initial_types(features: Sequence[dict]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    types: list[tuple[str, Any]] = []
    for j, feature in enumerate(features):
        if feature["kind"] == NUMERIC:
            types.append((input_name(j), FloatTensorType([None, 1])))
        elif feature["kind"] in (CATEGORICAL, TEXT):
            types.append((input_name(j), StringTensorType([None, 1])))
        else:
            raise NotExported(f"feature kind {feature['kind']!r} has no ONNX input")
    return types


def convert(pipeline: Any, features: Sequence[dict], task: str, precision: str = "float32") -> Any:
    """The ModelProto of `pipeline` with the adjustments the module docstring lists; with `precision`
    "float64" the model's own computation (after the float32 preprocessing) is done in float64."""
    from skl2onnx import convert_sklearn

    _register_converters()
    convertible, options = _convertible(pipeline, task, precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of attributes skl2onnx reads (SVC's probA_)
        model = convert_sklearn(
            convertible, initial_types=initial_types(features), options=options, target_opset=TARGET_OPSET
        )
    _lowercase_outside(model)
    outputs = [output.name for output in model.graph.output]
    if task == CLASSIFICATION:
        if outputs[:1] != [LABEL] or (len(outputs) > 1 and outputs[1] != PROBABILITIES):
            raise NotExported(f"unexpected outputs {outputs} of the converted classifier")
        if not hasattr(pipeline, "predict_proba"):
            _drop_outputs(model, keep=[LABEL])  # decision scores, not probabilities
    elif len(outputs) != 1:
        raise NotExported(f"unexpected outputs {outputs} of the converted regressor")
    elif outputs != [VARIABLE]:
        _rename_output(model, outputs[0], VARIABLE)  # some converters (kNN's Scan) name it otherwise
    model.graph.name = "mlservice"
    model.doc_string = "mlservice export; inputs f0… are the version's features in order (see onnx_runner)"
    rows = batch_rows(pipeline)
    if rows is not None:
        from onnx import helper

        helper.set_model_props(model, {BATCH_ROWS_KEY: str(rows)})
    return model


def batch_rows(pipeline: Any) -> int | None:
    """The most rows a kNN export should be run on at once (None: any number): its CDist/Scan computes a
    [rows, training rows] distance matrix in one piece, where scikit-learn works in chunks. The runner reads
    it from the model's metadata (BATCH_ROWS_KEY) and splits larger batches."""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    estimator = pipeline.named_steps["model"]
    if not isinstance(estimator, (KNeighborsClassifier, KNeighborsRegressor)):
        return None
    # float32 distances plus TopK's working copy, per row and training row
    return max(1, BATCH_BYTES // (8 * estimator.n_samples_fit_))


def _convertible(pipeline: Any, task: str, precision: str) -> tuple[Any, dict[Any, dict[str, Any]]]:
    """The object to convert (the pipeline, or a copy of it where the converter needs something else) and
    skl2onnx's options for it. The pipeline itself is never modified."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import Pipeline

    preprocess, estimator = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
    options: dict[Any, dict[str, Any]] = {}
    for _, transformer, _ in preprocess.transformers_:
        if isinstance(transformer, TfidfVectorizer):
            if (
                transformer.token_pattern != TOKEN_PATTERN
                or transformer.analyzer != "word"
                or transformer.ngram_range != (1, 1)
            ):
                raise NotExported("a TF-IDF vectorizer with another tokenisation than the service's")
            options[id(transformer)] = {"tokenexp": ONNX_TOKEN_PATTERN}
    estimated = _estimated_tree_bytes(estimator, task)
    if estimated > MAX_ONNX_BYTES:
        raise NotExported(f"the ONNX export would be about {estimated:,} bytes of tree nodes, {_over_cap()}")
    replaced = estimator
    if isinstance(estimator, (KNeighborsClassifier, KNeighborsRegressor)):
        if estimator.weights != "uniform":
            # skl2onnx 1.20 takes max(·, 1e-6) of the negated distances TopK returns: every weight is 1e6.
            raise NotExported("skl2onnx exports kNN's distance weights as uniform ones (weights 'distance')")
        fitted = estimator._fit_X
        if hasattr(fitted, "toarray"):
            cells = fitted.shape[0] * fitted.shape[1]
            if cells * 4 > MAX_ONNX_BYTES:
                raise NotExported(
                    f"a kNN export holds its {fitted.shape[0]:,} training rows × {fitted.shape[1]:,} columns, "
                    f"{cells * 4:,} bytes, {_over_cap()}"
                )
            replaced = copy.copy(estimator)
            replaced._fit_X = np.asarray(fitted.toarray(), dtype=np.float64)
        metric = getattr(estimator, "effective_metric_", estimator.metric)
        if metric == "euclidean" or (metric == "minkowski" and getattr(estimator, "p", 2) == 2):
            # onnxruntime's CDist (one GEMM) instead of a Scan over the training rows: ~20× faster per call.
            options[id(replaced)] = {"optim": "cdist"}
    if task == CLASSIFICATION:
        classes = np.asarray(estimator.classes_)
        if classes.dtype == bool:
            replaced = replaced if replaced is not estimator else copy.copy(estimator)
            replaced.classes_ = classes.astype(np.int64)
    convertible = pipeline
    if precision == FLOAT64:
        from skl2onnx.sklapi import CastTransformer

        cast = CastTransformer(dtype=np.float64)
        convertible = Pipeline([("preprocess", preprocess), ("float64", cast), ("model", replaced)])
    elif replaced is not estimator:
        convertible = Pipeline([("preprocess", preprocess), ("model", replaced)])
    if task == CLASSIFICATION:
        options[id(convertible)] = {"zipmap": False}
    return convertible, options


def _estimated_tree_bytes(estimator: Any, task: str) -> int:
    """What a tree model's export will weigh, measured on skl2onnx's output: ~32 bytes per node plus ~12 per
    leaf weight (one per class in a classifier's own trees, one in boosting's regression trees). 0 for
    models without trees. Checked before converting, which takes seconds per million nodes."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    core = algorithms_core(estimator)
    trees = np.ravel(getattr(core, "estimators_", [core]))
    weights = 1
    if task == CLASSIFICATION and not isinstance(core, (GradientBoostingClassifier, GradientBoostingRegressor)):
        weights = len(getattr(core, "classes_", [0]))
    total = 0
    for tree in trees:
        structure = getattr(tree, "tree_", None)
        if structure is None:
            return 0
        total += 32 * structure.node_count + 12 * weights * structure.n_leaves
    return total


def _lowercase_outside(model: Any) -> None:
    """Replace the StringNormalizers of TF-IDF (lowercase, no stop words) by Identity: the runner lowercases."""
    for node in model.graph.node:
        if node.op_type != "StringNormalizer":
            continue
        attributes = {a.name: a for a in node.attribute}
        action = attributes.get("case_change_action")
        if set(attributes) - {"case_change_action", "is_case_sensitive"} or action is None or action.s != b"LOWER":
            raise NotExported("a TF-IDF vectorizer with stop words or another normalisation than lowercase")
        node.op_type, node.domain = "Identity", ""
        del node.attribute[:]


def _rename_output(model: Any, old: str, new: str) -> None:
    """Name the graph's output `new` (an Identity of `old`), renaming an inner tensor already called so."""
    from onnx import helper

    taken = {name for node in model.graph.node for name in [*node.input, *node.output]}
    if new in taken:
        inner = f"{new}_inner"
        for node in model.graph.node:
            node.input[:] = [inner if name == new else name for name in node.input]
            node.output[:] = [inner if name == new else name for name in node.output]
    model.graph.node.append(helper.make_node("Identity", [old], [new], name=f"rename_{new}"))
    (output,) = [o for o in model.graph.output if o.name == old]
    output.name = new


def _drop_outputs(model: Any, keep: Sequence[str]) -> None:
    kept = [output for output in model.graph.output if output.name in keep]
    del model.graph.output[:]
    model.graph.output.extend(kept)


_registered = False


def _register_converters() -> None:
    """skl2onnx has no converter for TransformedTargetRegressor: the regressor's graph, then the inverse of
    the StandardScaler the service fits on the target."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMul
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    def convert_target_scaling(scope: Any, operator: Any, container: Any) -> None:
        model = operator.raw_operator
        scaler = model.transformer_
        if not isinstance(scaler, StandardScaler) or model.func is not None or model.inverse_func is not None:
            raise NotImplementedError("only a StandardScaler on the target converts")
        opset = container.target_opset
        dtype = np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType) else np.float32
        values = OnnxSubEstimator(model.regressor_, operator.inputs[0], op_version=opset)
        scale = np.asarray(scaler.scale_ if scaler.scale_ is not None else [1.0], dtype=dtype)
        mean = np.asarray(scaler.mean_ if scaler.mean_ is not None else [0.0], dtype=dtype)
        result = OnnxAdd(
            OnnxMul(values, scale, op_version=opset), mean, op_version=opset, output_names=operator.outputs[:1]
        )
        result.add_to(scope, container)

    update_registered_converter(
        TransformedTargetRegressor,
        "MlserviceTransformedTargetRegressor",
        calculate_linear_regressor_output_shapes,
        convert_target_scaling,
    )
    _registered = True


def _classes(pipeline: Any) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(pipeline.classes_).tolist()]


def _describe_model(model: Any, data: bytes, features: Sequence[dict]) -> dict[str, Any]:
    def shape(value_info: Any) -> list[int | None]:
        dims = value_info.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else None for d in dims]

    from onnx import TensorProto

    def element(value_info: Any) -> str:
        return TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()

    inputs = []
    for j, value_info in enumerate(model.graph.input):
        entry: dict[str, Any] = {
            "name": value_info.name,
            "feature": features[j]["name"],
            "type": element(value_info),
            "shape": shape(value_info),
        }
        if features[j]["kind"] == TEXT:
            entry["lowercase"] = True  # the caller lowercases (Python's str.lower): see the module docstring
        inputs.append(entry)
    outputs = [{"name": o.name, "type": element(o), "shape": shape(o)} for o in model.graph.output]
    properties = {p.key: p.value for p in model.metadata_props}
    extra = {"batch_rows": int(properties[BATCH_ROWS_KEY])} if BATCH_ROWS_KEY in properties else {}
    return {
        **extra,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "inputs": inputs,
        "outputs": outputs,
    }


def _over_cap() -> str:
    return f"over the {MAX_ONNX_BYTES:,}-byte cap (MAX_ONNX_BYTES)"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:MAX_REASON]


# ---------------------------------------------------------------- parity


@dataclass
class Expected:
    """The pipeline's own outputs on the rows the parity check may use (scikit-learn computes them)."""

    task: str
    rows: np.ndarray
    labels: np.ndarray  # labels, or regression values
    proba: np.ndarray | None  # predict_proba of a classifier that has it
    neighbours: _Neighbours | None  # kNN rows whose k-th neighbour is tied

    def first(self, count: int) -> Expected:
        neighbours = self.neighbours
        if neighbours is not None:
            kept = int(neighbours.tied[:count].sum())
            neighbours = _Neighbours(neighbours.tied[:count], neighbours.lower[:kept], neighbours.upper[:kept])
        proba = self.proba[:count] if self.proba is not None else None
        return Expected(self.task, self.rows[:count], self.labels[:count], proba, neighbours)


def expected_outputs(pipeline: Any, task: str, X: np.ndarray, limit: int = PARITY_MAX_ROWS) -> Expected:
    """scikit-learn's outputs on the first `limit` rows of `X`, for `compare`."""
    rows = X[:limit]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        labels = pipeline.predict(rows)
        proba = None
        if task == CLASSIFICATION and hasattr(pipeline, "predict_proba"):
            proba = pipeline.predict_proba(rows)
        neighbours = _neighbour_ties(pipeline, task, rows)
    if task != CLASSIFICATION:
        labels = np.asarray(labels, dtype=np.float64)
    return Expected(task, rows, labels, proba, neighbours)


def check_parity(
    model: Any,
    data: bytes,
    features: Sequence[dict],
    task: str,
    classes: list[Any] | None,
    expected: Expected,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Run the export with onnx's reference evaluator through OnnxRunner on the rows of `expected` (chunks of
    PARITY_CHUNK_ROWS while `seconds` last, at least one) and compare with scikit-learn's outputs."""
    from onnx.reference import ReferenceEvaluator

    budget = PARITY_SECONDS if seconds is None else seconds
    started = time.perf_counter()
    evaluator = ReferenceEvaluator(model, new_ops=list(reference_operators()))
    runner = OnnxRunner(data, features, task, classes, session=evaluator)
    got_labels, got_proba, done = [], [], 0
    for start in range(0, len(expected.rows), PARITY_CHUNK_ROWS):
        if done and time.perf_counter() - started > budget:
            break
        chunk = expected.rows[start : start + PARITY_CHUNK_ROWS]
        with np.errstate(all="ignore"):
            labels, proba = runner.outputs(chunk, with_probabilities=True)
        got_labels.append(labels)
        if proba is not None:
            got_proba.append(proba)
        done += len(chunk)
    labels = np.concatenate(got_labels) if got_labels else np.empty(0)
    proba = np.concatenate(got_proba) if got_proba else None
    result: dict[str, Any] = {"rows": done, "engine": "onnx.reference"}
    if task == CLASSIFICATION and runner.has_probabilities != (expected.proba is not None):
        result.update(passed=False, failure="the export's probabilities do not match the pipeline's predict_proba")
    else:
        result.update(compare(expected.first(done), labels, proba))
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def compare(expected: Expected, labels: np.ndarray, proba: np.ndarray | None) -> dict[str, Any]:
    """The parity criteria (module docstring) between an export's outputs — `labels` (or regression values)
    and `proba` — and scikit-learn's on the same rows; JSON-ready, with `passed` and, if not, `failure`."""
    if expected.task == CLASSIFICATION:
        return _compare_classes(labels, proba, expected.labels, expected.proba, expected.neighbours)
    return _compare_values(np.asarray(labels, dtype=np.float64), expected.labels, expected.neighbours)


def compare_outputs(
    pipeline: Any, task: str, X: np.ndarray, labels: np.ndarray, proba: np.ndarray | None
) -> dict[str, Any]:
    """`compare` with scikit-learn's outputs computed here, on every row of `X`."""
    return compare(expected_outputs(pipeline, task, X, limit=len(X)), labels, proba)


def _compare_classes(
    labels: np.ndarray,
    proba: np.ndarray | None,
    expected: np.ndarray,
    expected_proba: np.ndarray | None,
    neighbours: _Neighbours | None,
) -> dict[str, Any]:
    rows = len(expected)
    same = np.asarray(labels == expected, dtype=bool).reshape(rows) & np.asarray(
        [type(a) is type(b) or _both_numbers(a, b) for a, b in zip(labels.tolist(), expected.tolist(), strict=True)],
        dtype=bool,
    )
    ties = np.zeros(rows, dtype=bool)
    tied_neighbours = neighbours.tied if neighbours is not None else np.zeros(rows, dtype=bool)
    result: dict[str, Any] = {
        "label_agreement": _fraction(int(same.sum()), rows),
        "tolerance": {"label_agreement": LABEL_AGREEMENT},
    }
    failure = None
    if expected_proba is not None and proba is not None:
        if proba.shape != expected_proba.shape:
            failure = f"probabilities of shape {list(proba.shape)}, expected {list(expected_proba.shape)}"
            diff = math.inf
        else:
            exact = ~tied_neighbours
            diff = float(np.max(np.abs(proba[exact] - expected_proba[exact]))) if exact.any() else 0.0
            if expected_proba.shape[1] >= 2 and rows:
                top = np.sort(expected_proba, axis=1)[:, -2:]
                ties = (top[:, 1] - top[:, 0]) <= PROBABILITY_TOLERANCE
            if neighbours is not None and tied_neighbours.any():
                outside = _outside(proba[tied_neighbours], neighbours, PROBABILITY_TOLERANCE)
                result["neighbour_tied_rows"] = int(tied_neighbours.sum())
                if outside:
                    failure = (
                        f"on {outside} rows whose k-th neighbour is tied, the probabilities are none that a "
                        "choice among the tied neighbours gives"
                    )
        result["max_abs_probability_diff"] = diff if math.isfinite(diff) else None
        result["tolerance"]["probability"] = PROBABILITY_TOLERANCE
        if failure is None and not diff <= PROBABILITY_TOLERANCE:
            failure = f"probabilities differ by up to {diff:.3g} (tolerance {PROBABILITY_TOLERANCE:g})"
    elif tied_neighbours.any():
        result["neighbour_tied_rows"] = int(tied_neighbours.sum())
    counted = (~ties & ~tied_neighbours) | same
    agreement = _fraction(int((same & counted).sum()), int(counted.sum()))
    result["tied_rows_differing"] = int((~counted).sum())
    if failure is None and agreement < LABEL_AGREEMENT:
        failure = (
            f"labels agree on {agreement:.4%} of the {int(counted.sum())} untied rows (need {LABEL_AGREEMENT:.1%})"
        )
    result["passed"] = failure is None
    if failure:
        result["failure"] = failure
    return result


def _compare_values(values: np.ndarray, expected: np.ndarray, neighbours: _Neighbours | None) -> dict[str, Any]:
    scale = float(np.max(np.abs(expected))) if len(expected) and np.isfinite(expected).all() else 0.0
    atol = REGRESSION_ATOL * scale
    tied = neighbours.tied if neighbours is not None else np.zeros(len(expected), dtype=bool)
    diff = np.abs(values - expected)
    finite = np.isfinite(values) == np.isfinite(expected)
    both = np.isfinite(values) & np.isfinite(expected) & ~tied
    worst = float(diff[both].max()) if both.any() else 0.0
    relative = diff[both] / np.maximum(np.abs(expected[both]), np.finfo(np.float64).tiny)
    result: dict[str, Any] = {
        "max_abs_diff": worst,
        "max_rel_diff": float(relative.max()) if relative.size else 0.0,
        "tolerance": {"relative": REGRESSION_RTOL, "absolute": atol, "absolute_of_max_value": REGRESSION_ATOL},
    }
    failure = None
    if not finite.all():
        failure = "the export gives non-finite values where scikit-learn does not (or the reverse)"
    elif not bool((diff[both] <= atol + REGRESSION_RTOL * np.abs(expected[both])).all()):
        failure = f"values differ by up to {worst:.3g} (tolerance {REGRESSION_RTOL:g} × |value| + {atol:.3g})"
    if neighbours is not None and tied.any():
        result["neighbour_tied_rows"] = int(tied.sum())
        margin = atol + REGRESSION_RTOL * np.abs(expected[tied])
        outside = _outside(values[tied], neighbours, margin)
        if failure is None and outside:
            failure = (
                f"on {outside} rows whose k-th neighbour is tied, the value is none that a choice among the tied "
                "neighbours gives"
            )
    result["passed"] = failure is None
    if failure:
        result["failure"] = failure
    return result


# ---------------------------------------------------------------- kNN ties

# A neighbour at the k-th distance tied with the next: distances closer than this × (|query|² + the largest
# |training row|²), in squared units, are equal as far as float32 (and the GEMM form of CDist) can tell.
NEIGHBOUR_TIE = 1e-5


@dataclass
class _Neighbours:
    """kNN rows whose k nearest training rows are not unique (the k-th is as close as the next one): any
    choice among the tied rows is a correct kNN answer, and scikit-learn's depends on rounding in its own
    distance computation. `lower`/`upper` bound the probabilities (or values) every such choice gives."""

    tied: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _outside(got: np.ndarray, neighbours: _Neighbours, margin: Any) -> int:
    low, high = neighbours.lower, neighbours.upper
    if got.ndim == 2:
        margin = np.asarray(margin).reshape(-1, 1) if np.ndim(margin) else margin
        return int(((got < low - margin) | (got > high + margin)).any(axis=1).sum())
    return int(((got < low - margin) | (got > high + margin)).sum())


def _neighbour_ties(pipeline: Any, task: str, X: np.ndarray) -> _Neighbours | None:
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    knn = pipeline.named_steps["model"]
    if not isinstance(knn, (KNeighborsClassifier, KNeighborsRegressor)) or not len(X):
        return None
    k, fitted = knn.n_neighbors, knn._fit_X
    if k >= knn.n_samples_fit_:
        return None
    Z = pipeline.named_steps["preprocess"].transform(X)
    distances, _ = knn.kneighbors(Z, n_neighbors=k + 1)
    metric, params = knn.effective_metric_, dict(knn.effective_metric_params_ or {})
    euclidean = metric == "euclidean" or (metric == "minkowski" and params.get("p", 2) == 2)
    if euclidean:
        query = np.asarray(Z.multiply(Z).sum(axis=1) if hasattr(Z, "multiply") else (Z * Z).sum(axis=1)).ravel()
        largest = float(
            np.asarray(
                fitted.multiply(fitted).sum(axis=1) if hasattr(fitted, "multiply") else (fitted**2).sum(axis=1)
            ).max()
        )
        # |d1 - d2| = |d1² - d2²| / (d1 + d2): the squared-distance tolerance, in distance units.
        width = NEIGHBOUR_TIE * (query + largest) / np.maximum(distances[:, k - 1] + distances[:, k], 1e-300)
    else:
        width = NEIGHBOUR_TIE * (1 + distances[:, k])
    tied = (distances[:, k] - distances[:, k - 1]) <= width
    if not tied.any():
        return None
    classes = len(knn.classes_) if task == CLASSIFICATION else 0
    shape = (int(tied.sum()), classes) if classes else (int(tied.sum()),)
    lower, upper = np.empty(shape), np.empty(shape)
    y = np.asarray(knn._y)
    rows = np.flatnonzero(tied)
    step = max(1, 2_000_000 // knn.n_samples_fit_)
    dense = not euclidean and metric not in ("manhattan", "cityblock", "l1")
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        queries, reference = Z[chunk], fitted
        if dense:  # chebyshev and minkowski p≠1,2 take no sparse input
            queries = queries.toarray() if hasattr(queries, "toarray") else queries
            reference = reference.toarray() if hasattr(reference, "toarray") else reference
        all_distances = pairwise_distances(queries, reference, metric=metric, **params)
        for i, row in enumerate(chunk):
            lower[start + i], upper[start + i] = _bounds(
                all_distances[i], distances[row, k - 1], width[row], k, y, classes, knn.weights
            )
    return _Neighbours(tied, lower, upper)


def _bounds(
    distances: np.ndarray, kth: float, width: float, k: int, y: np.ndarray, classes: int, weights: str
) -> tuple[Any, Any]:
    """Lowest and highest probabilities (per class) or value over the choices of the k nearest rows among
    those tied at the k-th distance, weighted as scikit-learn weighs them (uniform, or 1/distance with a row
    at distance 0 taking all the weight)."""
    strict = np.flatnonzero(distances < kth - width)
    group = np.flatnonzero(np.abs(distances - kth) <= width)
    missing = k - len(strict)
    chosen = np.concatenate([distances[strict], np.full(missing, kth)])
    if weights == "distance":
        with np.errstate(divide="ignore"):
            w = 1.0 / chosen
        w = np.isinf(w).astype(np.float64) if np.isinf(w).any() else w
    else:
        w = np.ones(len(chosen))
    w_strict, w_tied, total = w[: len(strict)], (w[-1] if missing else 0.0), float(w.sum())
    if classes:
        strict_sum = np.bincount(y[strict], weights=w_strict, minlength=classes)
        tied_count = np.bincount(y[group], minlength=classes)
        others = len(group) - tied_count
        low = (strict_sum + np.maximum(0, missing - others) * w_tied) / total
        high = (strict_sum + np.minimum(missing, tied_count) * w_tied) / total
        return low, high
    values = np.sort(y[group].astype(np.float64))
    base = float(np.dot(w_strict, y[strict]))
    return (base + w_tied * values[:missing].sum()) / total, (
        base + w_tied * values[len(values) - missing :].sum()
    ) / total


def _both_numbers(a: Any, b: Any) -> bool:
    return isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))


def _fraction(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 1.0


# ---------------------------------------------------------------- reference implementations


@functools.cache
def reference_operators() -> tuple[type, ...]:
    """The operator implementations check_parity gives onnx's reference evaluator (see the module docstring):
    com.microsoft Tokenizer, and numpy versions of ai.onnx.ml's TreeEnsembleClassifier and
    TreeEnsembleRegressor, com.microsoft CDist (kNN), and SVMClassifier with libsvm's coupling. Built on first use: importing this module does not import onnx."""
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.aionnxml._common_classifier import softmax
    from onnx.reference.ops.aionnxml.op_svm_classifier import SVMClassifier, sigmoid_probability
    from onnx.reference.ops.aionnxml.op_tree_ensemble_classifier import TreeEnsembleClassifier
    from onnx.reference.ops.aionnxml.op_tree_ensemble_regressor import TreeEnsembleRegressor

    class Tokenizer(OpRun):
        """com.microsoft Tokenizer in its regex mode (`tokenexp`), for the two patterns the export writes:
        tokens are the pattern's matches of at least `mincharnum` characters, each row padded with
        `pad_value` to the longest row, shape [N, tokens] for an [N] input (onnxruntime's layout)."""

        op_domain = "com.microsoft"

        def _run(
            self,
            text: np.ndarray,
            mark: int | None = None,
            mincharnum: int | None = None,
            pad_value: str | None = None,
            separators: list[str] | None = None,
            tokenexp: str | None = None,
            tokenexpsplit: int | None = None,
            stopwords: list[str] | None = None,
        ) -> tuple[np.ndarray]:
            if mark or separators or tokenexpsplit or stopwords or tokenexp not in _PYTHON_TOKEN_PATTERNS:
                raise NotImplementedError("only the export's own Tokenizer settings are implemented")
            pattern = re.compile(_PYTHON_TOKEN_PATTERNS[tokenexp])
            shortest = mincharnum or 1
            flat = [str(s) for s in np.asarray(text).reshape(-1).tolist()]
            tokens = [[t for t in pattern.findall(s) if len(t) >= shortest] for s in flat]
            width = max((len(row) for row in tokens), default=0)
            out = np.full((len(flat), width), pad_value or "#", dtype=object)
            for i, row in enumerate(tokens):
                out[i, : len(row)] = row
            return (out.reshape((*np.asarray(text).shape, width)) if np.asarray(text).ndim > 1 else out,)

    class CDist(OpRun):
        """com.microsoft CDist as onnxruntime computes it in float32: -2·A·Bᵀ by GEMM, plus |a|², plus |b|²,
        then abs (and sqrt for euclidean)."""

        op_domain = "com.microsoft"

        def _run(self, a: np.ndarray, b: np.ndarray, metric: str | bytes | None = None) -> tuple[np.ndarray]:
            name = metric.decode() if isinstance(metric, bytes) else (metric or "sqeuclidean")
            if name not in ("euclidean", "sqeuclidean"):
                raise NotImplementedError(f"CDist metric {name!r}")
            a_squares = np.einsum("ij,ij->i", a, a)
            b_squares = np.einsum("ij,ij->i", b, b)
            distances = np.abs((-2 * (a @ b.T) + a_squares[:, None]) + b_squares[None, :]).astype(a.dtype)
            return (np.sqrt(distances) if name == "euclidean" else distances,)

    class _Trees:
        """Every row through one tree at a time with numpy, for the node modes skl2onnx writes (BRANCH_LEQ
        and LEAF), comparing float32 values to float32 thresholds like onnxruntime and the reference."""

        def __init__(self, attributes: dict[str, Any], weights_prefix: str) -> None:
            modes = np.asarray(attributes["nodes_modes"])
            if set(modes.tolist()) - {"BRANCH_LEQ", "LEAF"} or attributes.get("nodes_values") is None:
                raise NotImplementedError("node modes other than BRANCH_LEQ")
            tree_ids = np.asarray(attributes["nodes_treeids"], dtype=np.int64)
            node_ids = np.asarray(attributes["nodes_nodeids"], dtype=np.int64)
            stride = int(node_ids.max()) + 1 if len(node_ids) else 1
            keys = tree_ids * stride + node_ids
            order = np.argsort(keys, kind="stable")

            def position(trees: Any, nodes: Any) -> np.ndarray:
                wanted = np.asarray(trees, dtype=np.int64) * stride + np.asarray(nodes, dtype=np.int64)
                found = order[np.clip(np.searchsorted(keys, wanted, sorter=order), 0, len(keys) - 1)]
                return np.where(keys[found] == wanted, found, -1)

            self.leaf = modes == "LEAF"
            self.feature = np.asarray(attributes["nodes_featureids"], dtype=np.int64)
            self.threshold = np.asarray(attributes["nodes_values"], dtype=np.float32)
            missing = attributes.get("nodes_missing_value_tracks_true")
            self.missing_true = np.asarray(missing, dtype=np.int64) >= 1 if missing else np.zeros(len(modes), bool)
            own = np.arange(len(modes))
            true_next = position(tree_ids, attributes["nodes_truenodeids"])
            false_next = position(tree_ids, attributes["nodes_falsenodeids"])
            if ((true_next < 0) & ~self.leaf).any() or ((false_next < 0) & ~self.leaf).any():
                raise NotImplementedError("a branch to a node that does not exist")
            self.true_next = np.where(self.leaf, own, true_next)
            self.false_next = np.where(self.leaf, own, false_next)
            self.trees, self.roots = np.unique(tree_ids, return_index=True)  # a tree's first node is its root
            ids = np.asarray(attributes[f"{weights_prefix}_ids"], dtype=np.int64)
            self.targets = int(ids.max()) + 1 if len(ids) else 0
            self.weights = np.zeros((len(modes), self.targets), dtype=np.float32)
            where = position(attributes[f"{weights_prefix}_treeids"], attributes[f"{weights_prefix}_nodeids"])
            if (where < 0).any():
                raise NotImplementedError("a weight on a node that does not exist")
            weights = np.asarray(attributes[f"{weights_prefix}_weights"], dtype=np.float32)
            np.add.at(self.weights, (where, ids), weights)

        def totals(self, X: np.ndarray, targets: int) -> np.ndarray:
            X = np.asarray(X, dtype=np.float32)
            rows = np.arange(len(X))
            total = np.zeros((len(X), max(targets, self.targets)), dtype=np.float32)
            for root in self.roots:
                node = np.full(len(X), root, dtype=np.int64)
                while True:
                    inner = ~self.leaf[node]
                    if not inner.any():
                        break
                    value = X[rows, self.feature[node]]
                    go_true = np.where(np.isnan(value), self.missing_true[node], value <= self.threshold[node])
                    node = np.where(inner, np.where(go_true, self.true_next[node], self.false_next[node]), node)
                total[:, : self.targets] += self.weights[node]
            return total

    node_names = (
        "nodes_modes",
        "nodes_treeids",
        "nodes_nodeids",
        "nodes_featureids",
        "nodes_values",
        "nodes_truenodeids",
        "nodes_falsenodeids",
        "nodes_missing_value_tracks_true",
    )

    class FastClassifier(TreeEnsembleClassifier):
        """Scores as onnxruntime 1.32 computes them (measured: tests/test_onnx.py), which the reference does
        not for two classes scored in one column: label by score > 0.5 when every weight is ≥ 0 (else > 0),
        probabilities [1 - s, s] (weights ≥ 0) or [-s, s] (mixed), each through LOGISTIC if asked."""

        def _run(self, X: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
            classes = kwargs.get("classlabels_int64s") or kwargs.get("classlabels_strings")
            post_transform = kwargs.get("post_transform") or "NONE"
            base = kwargs.get("base_values")
            class_ids = kwargs.get("class_ids")
            one_column = len(set(class_ids)) == 1
            if (
                kwargs.get("nodes_values_as_tensor") is not None
                or kwargs.get("class_weights_as_tensor") is not None
                or not classes
                or len(classes) < 2
                or post_transform not in ("NONE", "LOGISTIC", "SOFTMAX")
                or (one_column and (len(classes) != 2 or post_transform == "SOFTMAX" or len(base or ()) > 1))
            ):
                return super()._run(X, **kwargs)
            names = (*node_names, "class_treeids", "class_nodeids", "class_ids", "class_weights")
            trees = self.__dict__.get("_fast_trees")
            if trees is None:  # built once per node, used by every chunk
                trees = self._fast_trees = _Trees({n: kwargs.get(n) for n in names}, "class")
            totals = trees.totals(X, len(classes))
            int_labels = kwargs.get("classlabels_int64s") is not None
            labels_of = np.asarray(classes, dtype=np.int64 if int_labels else object)
            if one_column:
                score = totals[:, class_ids[0]] + (np.float32(base[0]) if base else np.float32(0))
                if min(kwargs.get("class_weights")) >= 0:
                    positive, scores = score > 0.5, np.stack([1 - score, score], axis=1)
                else:
                    positive, scores = score > 0, np.stack([-score, score], axis=1)
                if post_transform == "LOGISTIC":
                    scores = np.stack([_sigmoid(-score), _sigmoid(score)], axis=1)
                return labels_of[positive.astype(np.int64)], scores.astype(np.float32)
            res = totals[:, : len(classes)].astype(np.float32)
            if base is not None:
                res += np.asarray(base, dtype=np.float32).reshape(1, -1)
            if post_transform == "LOGISTIC":
                res = _sigmoid(res)
            elif post_transform == "SOFTMAX":
                res = softmax(res)
            return labels_of[np.argmax(res, axis=1)], res.astype(np.float32)

    class FastRegressor(TreeEnsembleRegressor):
        def _run(self, X: np.ndarray, **kwargs: Any) -> tuple[np.ndarray]:  # type: ignore[override]
            aggregate = kwargs.get("aggregate_function")
            as_tensors = (
                kwargs.get("nodes_values_as_tensor") is not None or kwargs.get("target_weights_as_tensor") is not None
            )
            if (
                as_tensors
                or aggregate not in ("SUM", "AVERAGE", None)
                or kwargs.get("post_transform") not in (None, "NONE")
            ):
                return super()._run(X, **kwargs)
            names = (*node_names, "target_treeids", "target_nodeids", "target_ids", "target_weights")
            trees = self.__dict__.get("_fast_trees")
            if trees is None:
                trees = self._fast_trees = _Trees({n: kwargs.get(n) for n in names}, "target")
            n_targets = kwargs.get("n_targets") or 1
            res = trees.totals(X, n_targets)[:, :n_targets].astype(np.asarray(X).dtype)
            if aggregate == "AVERAGE":
                res /= len(trees.trees)
            base = kwargs.get("base_values")
            if base is not None:
                res += np.asarray(base).reshape(1, -1)
            return (res,)

    class CoupledSVMClassifier(SVMClassifier):
        """The reference's SVMClassifier with two onnx 1.23 bugs fixed: libsvm's pairwise coupling of
        probabilities as libsvm (and onnxruntime) computes it (the reference builds the off-diagonal of Q
        from a dot product where libsvm multiplies element by element: wrong for three classes or more), and
        string labels of two classes (the reference indexes `classlabels_ints`, None then)."""

        def _run(self, X: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
            strings = kwargs.get("classlabels_strings")
            if not strings:
                return super()._run(X, **kwargs)
            kwargs.update(classlabels_ints=list(range(len(strings))), classlabels_strings=None)
            indices, scores = super()._run(X, **kwargs)
            return np.asarray(strings, dtype=object)[np.asarray(indices, dtype=np.int64)], scores

        def _probabilities(self, scores: np.ndarray, class_count_: int) -> np.ndarray:
            pairs = np.zeros((class_count_, class_count_), dtype=np.float64)
            index = 0
            for i in range(class_count_):
                for j in range(i + 1, class_count_):
                    value = sigmoid_probability(
                        scores[index], self._svm.atts.prob_a[index], self._svm.atts.prob_b[index]
                    )
                    value = min(max(value, 1.0e-7), 1 - 1.0e-7)
                    pairs[i, j], pairs[j, i] = value, 1 - value
                    index += 1
            return _libsvm_multiclass_probability(class_count_, pairs).astype(scores.dtype)

    # The evaluator finds an implementation by (domain, class name): these replace the reference's own.
    FastClassifier.__name__ = FastClassifier.__qualname__ = "TreeEnsembleClassifier"
    FastRegressor.__name__ = FastRegressor.__qualname__ = "TreeEnsembleRegressor"
    CoupledSVMClassifier.__name__ = CoupledSVMClassifier.__qualname__ = "SVMClassifier"
    return Tokenizer, CDist, FastClassifier, FastRegressor, CoupledSVMClassifier


def _sigmoid(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))).astype(np.float32)


def _libsvm_multiclass_probability(k: int, r: np.ndarray) -> np.ndarray:
    """libsvm's multiclass_probability (svm.cpp): class probabilities from pairwise ones, r[i, j] being
    P(i | i or j), by the fixed-point iteration of Wu, Lin and Weng (2004)."""
    q = np.zeros((k, k))
    for t in range(k):
        q[t, t] = float((r[:t, t] ** 2).sum() + (r[t + 1 :, t] ** 2).sum())
        q[t, :t] = q[:t, t]
        q[t, t + 1 :] = -r[t + 1 :, t] * r[t, t + 1 :]
    p = np.full(k, 1.0 / k)
    eps = 0.005 / k
    for _ in range(max(100, k)):
        qp = q @ p
        pqp = float(p @ qp)
        if np.max(np.abs(qp - pqp)) < eps:
            break
        for t in range(k):
            diff = (-qp[t] + pqp) / q[t, t]
            p[t] += diff
            pqp = (pqp + diff * (diff * q[t, t] + 2 * qp[t])) / (1 + diff) / (1 + diff)
            qp = (qp + diff * q[t, :]) / (1 + diff)
            p /= 1 + diff
    return p
