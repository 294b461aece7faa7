"""The warm predict path does each piece of work once: one model pass per request where the labels follow from
the probabilities, no failed `import pandas` searches, no repr of request bodies, a garbage collector that leaves
the long-lived objects alone, no X-Ray SDK when tracing is off, and (API Gateway's) gzip for the clients that accept it.

Behaviour only: what the speed-ups are worth is measured by benchmarks, never asserted here."""

from __future__ import annotations

import gzip
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from mlservice.serving import runners

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "mlservice"

# Every classifier the service trains (training/algorithms.py), and how its labels relate to its probabilities.
CLASSIFIERS = {
    "logistic_regression": ({}, runners.MONOTONE),
    "svm": ({}, runners.SEPARATE),
    "knn": ({}, runners.SAME),
    "knn_distance": ({"weights": "distance"}, runners.SEPARATE),
    "naive_bayes": ({}, runners.MONOTONE),
    "decision_tree": ({}, runners.SAME),
    "random_forest": ({"n_estimators": 50}, runners.SAME),
    "gradient_boosting": ({"n_estimators": 50}, runners.MONOTONE),
    "mlp": ({"max_iter": 500}, runners.SAME),
}
DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine}


class Counting:
    """A pipeline whose predict and predict_proba calls are counted (and optionally rewritten)."""

    def __init__(self, pipeline: Any, rewrite_probabilities: Any = None) -> None:
        self.pipeline = pipeline
        self.calls = {"predict": 0, "predict_proba": 0}
        self.rewrite = rewrite_probabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls["predict"] += 1
        return self.pipeline.predict(matrix)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        self.calls["predict_proba"] += 1
        probabilities = self.pipeline.predict_proba(matrix)
        return self.rewrite(probabilities) if self.rewrite else probabilities


@pytest.fixture(scope="module")
def pipelines() -> dict[tuple[str, str], Any]:
    """Each classifier trained by the service's trainer on each dataset: {(classifier, dataset): pipeline}."""
    from mlservice.training.trainer import train

    trained = {}
    for name, (hyperparameters, _) in CLASSIFIERS.items():
        for dataset in DATASETS:
            request = {
                "algorithm": name.split("_distance")[0],
                "hyperparameters": hyperparameters,
                "data": {"dataset": dataset},
            }
            artifact, _ = train(request)
            trained[name, dataset] = joblib.load(io.BytesIO(artifact))
    return trained


# ---------------------------------------------------------------- one model pass per request


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_labels_equal_predict_row_for_row_with_one_pass_where_they_can(pipelines, name, dataset):
    pipeline = pipelines[name, dataset]
    matrix = DATASETS[dataset]().data
    expected_relation = CLASSIFIERS[name][1]
    counted = Counting(pipeline)
    runner = runners.SklearnRunner(counted, is_classifier=True)
    assert runner.relation == expected_relation

    labels, probabilities = runner.outputs(matrix, with_probabilities=True)

    reference = pipeline.predict(matrix)
    assert labels.dtype == reference.dtype
    assert labels.tolist() == reference.tolist()
    np.testing.assert_array_equal(probabilities, pipeline.predict_proba(matrix))
    passes = (
        {"predict": 1, "predict_proba": 1}
        if expected_relation == runners.SEPARATE
        else {"predict": 0, "predict_proba": 1}
    )
    assert counted.calls == passes


@pytest.mark.parametrize("name", ["logistic_regression", "svm", "random_forest"])
def test_without_probabilities_only_predict_runs(pipelines, name):
    counted = Counting(pipelines[name, "wine"])
    labels, probabilities = runners.SklearnRunner(counted, is_classifier=True).outputs(
        load_wine().data, with_probabilities=False
    )
    assert probabilities is None and counted.calls == {"predict": 1, "predict_proba": 0}
    assert labels.tolist() == pipelines[name, "wine"].predict(load_wine().data).tolist()


def _tie_first_row(probabilities: np.ndarray) -> np.ndarray:
    tied = probabilities.copy()
    tied[0] = 0.0
    tied[0, :2] = 0.5
    return tied


def test_a_tied_top_probability_takes_labels_from_predict_when_they_may_differ(pipelines):
    """LogisticRegression's predict compares scores that a rounding can make equal probabilities: any tie, and
    the labels are predict's own."""
    pipeline = pipelines["logistic_regression", "breast_cancer"]
    matrix = load_breast_cancer().data
    counted = Counting(pipeline, rewrite_probabilities=_tie_first_row)
    labels, _ = runners.SklearnRunner(counted, is_classifier=True).outputs(matrix, with_probabilities=True)
    assert counted.calls == {"predict": 1, "predict_proba": 1}
    assert labels.tolist() == pipeline.predict(matrix).tolist()


def test_a_tie_is_predicts_own_answer_where_predict_is_the_argmax(pipelines):
    """A forest's predict is classes_[argmax(predict_proba)]: a tie goes to the first class, as predict's does."""
    pipeline = pipelines["random_forest", "breast_cancer"]
    counted = Counting(pipeline, rewrite_probabilities=_tie_first_row)
    labels, _ = runners.SklearnRunner(counted, is_classifier=True).outputs(
        load_breast_cancer().data, with_probabilities=True
    )
    assert counted.calls == {"predict": 0, "predict_proba": 1}
    assert labels[0] == pipeline.classes_[0]


def test_an_estimator_not_in_the_table_calls_both():
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    pipeline = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)).fit(
        data.data, data.target
    )
    counted = Counting(pipeline)
    runner = runners.SklearnRunner(counted, is_classifier=True)
    runner.outputs(data.data, with_probabilities=True)
    assert runner.relation == runners.SEPARATE and counted.calls == {"predict": 1, "predict_proba": 1}


# ---------------------------------------------------------------- pandas, absent, is not searched for

PANDAS_SCRIPT = """
import importlib.machinery, json, sys
sys.path[:0] = [{layer!r}] + {extra!r}
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import importlib.util
absent = importlib.util.find_spec("pandas") is None
from mlservice.serving.runners import SklearnRunner
X, y = load_iris(return_X_y=True)
runner = SklearnRunner(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), is_classifier=True)
searched = []
path_finder = importlib.machinery.PathFinder.find_spec
def counting(name, *args, **kwargs):
    searched.append(name)
    return path_finder(name, *args, **kwargs)
importlib.machinery.PathFinder.find_spec = counting
labels, _ = runner.outputs(X[:3], with_probabilities=True)
importlib.machinery.PathFinder.find_spec = path_finder
try:
    import pandas
    imported = getattr(pandas, "MARKER", "real pandas")
    error = None
except ImportError as exc:
    imported, error = None, [type(exc).__name__, exc.name, str(exc)]
try:
    find_spec = str(importlib.util.find_spec("pandas"))
except ImportError as exc:
    find_spec = type(exc).__name__
print(json.dumps({{"absent": absent, "labels": labels.tolist(), "searched_pandas": searched.count("pandas"),
                  "imported": imported, "error": error, "in_sys_modules": "pandas" in sys.modules,
                  "find_spec": find_spec}}))
"""


def _run(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_pandas_its_import_fails_at_once_as_it_would_after_a_search():
    found = _run(PANDAS_SCRIPT.format(layer=str(LAYER), extra=[]))
    if not found["absent"]:
        pytest.skip("pandas is installed here")
    assert found["labels"] == [0, 0, 0]
    assert found["searched_pandas"] == 0  # scikit-learn asked for it during predict_proba, no path was searched
    assert found["error"] == ["ModuleNotFoundError", "pandas", "No module named 'pandas'"]
    assert found["in_sys_modules"] is False  # scikit-learn's is_pandas_df reads sys.modules["pandas"]
    # The one difference (runners._PandasAbsent): asking whether pandas exists raises rather than answering None.
    assert found["find_spec"] == "ModuleNotFoundError"


def test_an_installed_pandas_is_left_alone(tmp_path):
    package = tmp_path / "pandas"
    package.mkdir()
    (package / "__init__.py").write_text(
        "MARKER = 'the installed one'\nNA = object()\nclass DataFrame: ...\nclass Series: ...\n"
    )
    found = _run(PANDAS_SCRIPT.format(layer=str(LAYER), extra=[str(tmp_path)]))
    assert found["absent"] is False and found["imported"] == "the installed one" and found["error"] is None
    assert found["searched_pandas"] == 0  # imported by then: predict found it in sys.modules


# ---------------------------------------------------------------- no repr of request bodies


@pytest.fixture
def powertools_debug_log():
    """What Powertools' event handler logs at DEBUG (it is never on in production; the message is built
    whatever the level)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    powertools = logging.getLogger("aws_lambda_powertools.event_handler.api_gateway")
    level = powertools.level
    powertools.addHandler(handler)
    powertools.setLevel(logging.DEBUG)
    yield stream
    powertools.removeHandler(handler)
    powertools.setLevel(level)


@pytest.fixture
def deployed(api, iris_model):
    from mlservice import registry

    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    return api


def test_route_arguments_are_formatted_without_their_values(deployed, powertools_debug_log):
    marker = 5.123456789
    response = deployed.post("/models/iris/predict", {"instances": [[marker, 3.5, 1.4, 0.2]]})
    assert response.status == 200
    logged = powertools_debug_log.getvalue()
    # Powertools still formats the route's arguments there, as the quiet repr
    line = next(line for line in logged.splitlines() if line.startswith("Calling API Route Handler: "))
    assert sorted(line.removeprefix("Calling API Route Handler: ").strip("{}").split(", ")) == [
        "'model': ...",
        "'request': ...",
        "'stage': ...",
        "'version': ...",
    ]
    assert str(marker) not in logged and "instances" not in logged


def test_route_arguments_repr():
    from mlservice.api.resolver import RouteArguments

    arguments = RouteArguments(model="iris", request={"instances": [[1.0] * 4] * 1000})
    assert repr(arguments) == "{'model': ..., 'request': ...}" and f"{arguments}" == repr(arguments)
    assert dict(arguments) == {"model": "iris", "request": {"instances": [[1.0] * 4] * 1000}}


# ---------------------------------------------------------------- start-up: X-Ray only when tracing, gc frozen

STARTUP_SCRIPT = """
import gc, json, os, sys
sys.path[:0] = [{root!r}, {layer!r}]
for name in [n for n in os.environ if n.startswith(("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN"))]:
    del os.environ[name]
os.environ.update({env!r})
os.environ.update(AWS_DEFAULT_REGION="us-east-1", MODEL_BUCKET="startup-check")
from local.template import Template, load_handler
template = Template()
handler = load_handler(template.functions["PredictFunction"], template)
from mlservice import observability
from mlservice.serving import gc_policy
import weakref
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5)).fit(*load_iris(return_X_y=True))
frozen = gc.get_freeze_count()
gc_policy.after_model_loaded()
frozen_after_load = gc.get_freeze_count() - frozen
released = weakref.ref(model)
gc.disable()
del model  # evicted from the cache: freed at once, frozen or not, having no reference cycle
print(json.dumps({{"xray": "aws_xray_sdk" in sys.modules, "tracer": observability.tracer is not None,
                  "threshold": gc.get_threshold()[0], "frozen": frozen, "frozen_after_load": frozen_after_load,
                  "released_model_freed": released() is None}}))
"""


def _startup(env: dict[str, str]) -> dict:
    return _run(STARTUP_SCRIPT.format(root=str(ROOT), layer=str(LAYER), env=env))


def test_tracing_disabled_never_imports_the_xray_sdk():
    found = _startup({"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": "/var/task"})
    assert found["xray"] is False and found["tracer"] is False


@pytest.mark.parametrize(
    ("env", "traced"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),  # deployed: Powertools traces
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),  # sam local: it does not
        ({}, False),  # outside Lambda (make run, the tests): it does not
    ],
    ids=["lambda", "sam-local", "local"],
)
def test_the_tracer_exists_where_powertools_would_trace(env, traced):
    found = _startup(env)
    assert found["tracer"] is traced and found["xray"] is traced


def test_the_predict_function_freezes_its_start_up_and_each_loaded_model():
    from mlservice.serving import gc_policy

    found = _startup({"POWERTOOLS_TRACE_DISABLED": "true"})
    assert found["threshold"] == gc_policy.YOUNG_THRESHOLD
    assert found["frozen"] > 10_000  # the modules imported by the handler
    assert found["frozen_after_load"] > 1000  # what was alive when the model was loaded: it, scikit-learn
    assert found["released_model_freed"]


# ---------------------------------------------------------------- gzip for clients that accept it
# API Gateway compresses (the template's MinimumCompressionSize); LocalLambda.http and `make run` do what it does.

GZIP = {"Accept-Encoding": "gzip, deflate"}


def _gunzipped(response: Any) -> bytes:
    assert response.headers.get("Content-Encoding") == "gzip", response.headers
    return gzip.decompress(response.body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/models/iris/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]] * 50}),
        (
            "POST",
            "/v2/models/iris/infer",
            {
                "inputs": [
                    {"name": "input-0", "shape": [200, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2] * 200}
                ]
            },
        ),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/models/iris/versions/1", None),
    ],
)
def test_gzip_when_accepted_and_plain_otherwise(deployed, method, path, body):
    path, _, query = path.partition("?")
    params = dict([query.split("=")]) if query else None
    plain = deployed.request(method, path, body, query=params)
    compressed = deployed.request(method, path, body, query=params, headers=GZIP)
    assert "Content-Encoding" not in plain.headers
    assert compressed.status == plain.status
    assert compressed.headers["Content-Type"] == plain.headers["Content-Type"]
    unpacked = _gunzipped(compressed)
    if plain.headers["Content-Type"] == "application/json":
        without_id = [{k: v for k, v in json.loads(b).items() if k != "id"} for b in (unpacked, plain.body)]
        assert without_id[0] == without_id[1]  # (a v2 answer carries a fresh id each time)
    else:
        assert unpacked == plain.body


@pytest.mark.parametrize("path", ["/v2/health/live", "/models", "/models/iris/versions/99"])
def test_answers_below_the_minimum_compression_size_stay_plain(deployed, path):
    from local.template import Template

    response = deployed.get(path, headers=GZIP)
    assert len(response.body) < Template().minimum_compression_size
    assert "Content-Encoding" not in response.headers and response.json()


# ---------------------------------------------------------------- v2 tensors checked without a loop per element

SPECIAL_VALUES = [
    *(0, 1, -1, 1.5, 2.0, -0.0, 1e-300, True, False, None, "a", "", [1], {"a": 1}),
    *(255, 256, 127, -128, -129, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**400),
    *(65504, 65505, 65504.0, 65504.5, 1e5, 3.4028234663852886e38, 3.5e38, 2**128, 1e308, -1e308),
    *(float("inf"), float("-inf"), float("nan")),
]


def test_tensor_checks_answer_as_the_element_by_element_check(monkeypatch):
    """The whole-tensor test (open_inference._all_fit) only ever accepts; anything it does not accept is looked
    at element by element, so the first misfit is named exactly as before."""
    import random

    from mlservice.errors import ServiceError
    from mlservice.protocols import open_inference

    def outcome(values: list, datatype: str) -> str | None:
        try:
            open_inference._check_elements(values, datatype, "x")
        except ServiceError as error:
            return error.message
        return None

    rng = random.Random(0)
    cases = [
        [rng.choice([1.0, 2, 3.5]) for _ in range(rng.randint(0, 3))]
        + [rng.choice(SPECIAL_VALUES) for _ in range(rng.randint(0, 3))]
        for _ in range(600)
    ]
    for datatype in sorted(open_inference.DATATYPES):
        fast = [outcome(values, datatype) for values in cases]
        with monkeypatch.context() as patched:
            patched.setattr(open_inference, "_all_fit", lambda values, datatype: False)
            slow = [outcome(values, datatype) for values in cases]
        assert fast == slow, datatype


def test_nested_tensor_data_flattens_row_major():
    from mlservice.protocols.open_inference import _flatten

    assert _flatten([[1, 2], [3, 4]], "x") == [1, 2, 3, 4]
    assert _flatten([[[1], [2]], [[3], [4]]], "x") == [1, 2, 3, 4]  # deeper: the general walk
    assert _flatten([[1, [2]], [3]], "x") == [1, 2, 3]  # ragged (the element count is checked against the shape)
    assert _flatten([1, [2]], "x") == [1, [2]]  # not nested at its first element: left to the element check


# ---------------------------------------------------------------- the scikit-learn fallback's failures


@pytest.mark.parametrize("code", ["TooManyRequestsException", "ServiceException"])
def test_a_fallback_that_cannot_run_now_is_a_503_to_retry_not_a_500(monkeypatch, code):
    """A version without an ONNX export, served by a function without scikit-learn, while Lambda refuses to run
    the fallback (throttled, or failing itself): 503 storage_unavailable with Retry-After."""
    from botocore.exceptions import ClientError

    from mlservice import storage
    from mlservice.errors import StorageUnavailable
    from mlservice.serving import fallback

    class Refusing:
        def invoke(self, **_: Any) -> Any:
            status = 429 if code.startswith("TooMany") else 500
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Invoke")

    monkeypatch.setenv(fallback.FUNCTION_VARIABLE, "fallback-fn")
    monkeypatch.setattr(storage, "lambda_client", lambda: Refusing())
    with pytest.raises(StorageUnavailable) as caught:
        fallback.forward({"path": "/models/iris/predict"}, None)
    assert caught.value.status == 503 and caught.value.retry_after


def test_without_a_configured_fallback_the_error_says_so(monkeypatch):
    from mlservice.errors import ServiceError
    from mlservice.serving import fallback

    monkeypatch.delenv(fallback.FUNCTION_VARIABLE, raising=False)
    with pytest.raises(ServiceError) as caught:
        fallback.forward({}, None)
    assert caught.value.code == "configuration_error"
