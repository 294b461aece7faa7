"""A version's ONNX export, run by onnxruntime: the predict path without scikit-learn, scipy or joblib.

The export (mlservice.training.onnx_export) takes one input per feature, named by position — `f0`, `f1`, … in
the order of the version's `features` — each of shape [N, 1]: float32 for a numeric feature (NaN is missing),
a string for a categorical or text feature. `feeds` builds them from the matrix `mlservice.features.rows_to_matrix`
makes, so the request formats, the rare-category pooling and the missing-value spellings stay exactly those of
the scikit-learn path. Text is lowercased here with Python's `str.lower`, exactly as scikit-learn's TF-IDF
does: the graph itself holds no lowercasing operator (onnxruntime's StringNormalizer needs an installed
en_US.UTF-8 locale, and maps fewer characters than Python does).

Classifier outputs are `label` [N] and `probabilities` [N, classes] (no ZipMap); regressors output `variable`
[N, 1]. Labels come back typed as scikit-learn returns them (str, int64 or bool), probabilities and values as
float64, so a JSON response is the same whichever engine served it (up to float32 rounding, within the
tolerances the training's parity check recorded in the version's `serving.parity`).

Only numpy is imported with this module, and onnxruntime when the first runner is built: the training
function imports `feeds` to check the export with onnx's reference evaluator, which has no onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NUMERIC, CATEGORICAL, TEXT = "numeric", "categorical", "text"
CLASSIFICATION = "classification"
LABEL, PROBABILITIES, VARIABLE = "label", "probabilities", "variable"
# Model metadata: the most rows to run at once (kNN exports hold a [rows, training rows] distance matrix).
BATCH_ROWS_KEY = "mlservice.batch_rows"
# float32's largest finite value: a number beyond it would reach the model as infinity.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def input_name(position: int) -> str:
    """The graph input of the feature at `position` in the version's `features`."""
    return f"f{position}"


def feeds(matrix: np.ndarray, features: Sequence[dict]) -> dict[str, np.ndarray]:
    """The graph's inputs for the rows of a rows_to_matrix matrix: one [N, 1] array per feature.

    Raises ValueError for a number beyond float32's range (it would become infinity inside the model; the
    predictor answers 400 invalid_value, as it does when scikit-learn's float32 trees refuse one)."""
    inputs: dict[str, np.ndarray] = {}
    numeric = [j for j, f in enumerate(features) if f["kind"] == NUMERIC]
    if numeric:
        # One cast for every numeric column (NaN, the missing value, stays NaN).
        block = matrix[:, numeric] if len(numeric) < matrix.shape[1] else matrix
        with np.errstate(over="ignore", invalid="ignore"):
            as_float = np.asarray(block, dtype=np.float64)
            if (np.abs(as_float) > _FLOAT32_MAX).any():
                raise ValueError("a value is beyond float32's range")
            numbers = as_float.astype(np.float32).T.copy()  # feature-major: each row below is contiguous
        for row, j in enumerate(numeric):
            inputs[input_name(j)] = numbers[row].reshape(-1, 1)
    for j, feature in enumerate(features):
        kind = feature["kind"]
        if kind == CATEGORICAL:
            inputs[input_name(j)] = np.asarray(matrix[:, j], dtype=object).reshape(-1, 1)
        elif kind == TEXT:
            column = np.empty((len(matrix), 1), dtype=object)
            column[:, 0] = [str(text).lower() for text in matrix[:, j].tolist()]
            inputs[input_name(j)] = column
    return inputs


def label_array(classes: Sequence[Any] | None) -> np.ndarray | None:
    """The classes as scikit-learn's `classes_` holds them: bool, int64 or str (object) labels."""
    if classes is None:
        return None
    values = list(classes)
    if values and all(isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=bool)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    labels = np.empty(len(values), dtype=object)
    labels[:] = values
    return labels


class OnnxRunner:
    """One model's ONNX export in one onnxruntime session, created here once and reused by every call.

    `features`, `task` and `classes` are the version's metadata (`features`, `task`, `target.classes`).
    `session` replaces onnxruntime with any object that has its `run(output_names, feeds)` (the training
    function passes onnx's reference evaluator, so its parity check runs this very code)."""

    def __init__(
        self,
        onnx_bytes: bytes,
        features: Sequence[dict],
        task: str,
        classes: Sequence[Any] | None = None,
        *,
        session: Any = None,
    ) -> None:
        self.features = list(features)
        self.is_classifier = task == CLASSIFICATION
        self.classes = label_array(classes) if self.is_classifier else None
        self.batch_rows: int | None = None
        if session is None:
            session, inputs, outputs = _session(onnx_bytes)
            rows = session.get_modelmeta().custom_metadata_map.get(BATCH_ROWS_KEY)
            self.batch_rows = int(rows) if rows else None
        else:
            inputs, outputs = list(session.input_names), list(session.output_names)
        expected_inputs = [input_name(j) for j in range(len(self.features))]
        if inputs != expected_inputs:
            raise ValueError(f"the ONNX export takes inputs {inputs}, not one per feature ({expected_inputs})")
        self.session = session
        if self.is_classifier:
            # A classifier without predict_proba (ridge) has no such output in its export.
            self.has_probabilities = PROBABILITIES in outputs
            self._label_index = self.classes is not None and self.classes.dtype == bool
        else:
            self.has_probabilities = False
            self._label_index = False
        self._empty = self._empty_outputs()

    def outputs(self, matrix: np.ndarray, with_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels or values, probabilities or None) for every row of `matrix`."""
        want = with_probabilities and self.has_probabilities
        if len(matrix) == 0:  # onnxruntime's Tokenizer refuses an empty batch; nothing to compute anyway
            labels, probabilities = self._empty
            return labels, probabilities if want else None
        if self.batch_rows is not None and len(matrix) > self.batch_rows:
            parts = [
                self._run(matrix[start : start + self.batch_rows], want)
                for start in range(0, len(matrix), self.batch_rows)
            ]
            labels = np.concatenate([part[0] for part in parts])
            return labels, np.concatenate([part[1] for part in parts]) if want else None
        return self._run(matrix, want)

    def _run(self, matrix: np.ndarray, want: bool) -> tuple[np.ndarray, np.ndarray | None]:
        inputs = feeds(matrix, self.features)
        if not self.is_classifier:
            (values,) = self.session.run([VARIABLE], inputs)
            return np.asarray(values, dtype=np.float64).reshape(-1), None
        names = [LABEL, PROBABILITIES] if want else [LABEL]
        results = self.session.run(names, inputs)
        labels = self._labels(np.asarray(results[0]).reshape(-1))
        probabilities = None
        if want:
            # float32 out of the graph: in float64 and renormalised, each row sums to 1 as scikit-learn's do
            # (the float32 sum is off by up to ~1e-7); the values move by float32's own rounding at most.
            probabilities = np.asarray(results[1], dtype=np.float64)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        return labels, probabilities

    def _labels(self, raw: np.ndarray) -> np.ndarray:
        if self._label_index:  # bool classes are exported as 0/1
            return self.classes[raw.astype(np.int64)]
        if raw.dtype.kind in "iu":
            return raw.astype(np.int64, copy=False)
        if raw.dtype == object:  # onnxruntime's strings: Python str already
            return raw
        return raw.astype(object)  # numpy str_ (onnx's reference evaluator) → str

    def _empty_outputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.is_classifier:
            return np.empty(0, dtype=np.float64), None
        count = len(self.classes) if self.classes is not None else 0
        dtype = self.classes.dtype if self.classes is not None else object
        return np.empty(0, dtype=dtype), np.empty((0, count), dtype=np.float64)


def _session(onnx_bytes: bytes) -> tuple[Any, list[str], list[str]]:
    import onnxruntime  # not at import time: the training function imports this module without it

    options = onnxruntime.SessionOptions()
    # One thread: Lambda's predict function has about one vCPU. Measured here (2 cores) with the default
    # thread pools instead: single rows 1.5–2.5× slower, 1,000-row batches 0.7–2× (a forest, boosting, SVM,
    # kNN, logistic regression); a session of a 200-tree forest loads in ~20 ms at any optimisation level.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no per-model optimiser notices in the function's logs
    session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
