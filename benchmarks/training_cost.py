"""Training cost: the budget module's estimate against the measured time of the service's real training.

The service refuses, before fitting, a training that `mlservice.training.budget` estimates above its time budget.
This script is where that estimate's constants come from and where it is checked: for a grid of configurations
across all 11 algorithms (bundled datasets, synthetic tables of 2k to 300k rows with numeric, categorical and
text columns, hyperparameter variants, cross-validation, and the three requests on iris with every bound at its
maximum), it runs
`mlservice.training.trainer.train` end to end — parse, load the inline data, encode, fit, holdout metrics,
cross-validation, permutation importance, serialisation — and prints estimate, wall and CPU seconds, and
estimate/actual.

    .venv/bin/python benchmarks/training_cost.py            # the full grid, 137 runs: ~16 minutes on 2 cores
    .venv/bin/python benchmarks/training_cost.py --quick    # 27 runs, every algorithm, cap 25 s: ~2 minutes
    .venv/bin/python benchmarks/training_cost.py --only svm --cap 120

How it measures. BLAS and OpenMP are pinned to one thread (the estimate is in single-core seconds, and it keeps
two runs on a 2-core machine from fighting over cores), the data is generated in this process, and each run is a
forked child that times `train()` alone, so imports and data generation are not counted; the parent warms every
algorithm once before forking so lazy imports are paid once. A child still running after `--cap` seconds is killed
and reported as "> cap". Runs under 2 s are repeated and the median kept. "actual" is the child's CPU time (the
steadier figure on a noisy machine; with one thread it equals wall time on an idle machine); the wall column
shows both. The summary gives median and worst estimate/actual over runs above 0.5 s, and counts the two errors
that matter to users: a false refusal (finished under 5 s, estimated over the budget) and a missed refusal
(took over the budget, estimated under it).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before numpy is imported: one BLAS/OpenMP thread, so runs measure single-core cost (what the estimate predicts).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("MODEL_BUCKET", "bench-models")  # train() reads settings; nothing is stored

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "mlservice"
if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))

from mlservice.training import algorithms, budget, trainer  # noqa: E402

BUDGET_SECONDS = 20.0
TEST_SIZE = 0.2  # the service's default holdout fraction
REPEAT_UNDER = 2.0  # runs shorter than this (seconds) are repeated and the median kept
REPEATS = 3
FALSE_REFUSAL_UNDER = 5.0
RATIO_FROM = 0.5  # ratios are summarised over runs that take longer than this
CLS, REG = "classification", "regression"
TFIDF_COLUMNS = 5000  # preprocessing.TFIDF_MAX_FEATURES


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Data:
    """A table: a bundled dataset, or synthetic rows of numeric, categorical and free-text columns."""

    dataset: str | None = None
    rows: int = 0
    numeric: int = 0
    categorical: int = 0
    levels: int = 10
    text: int = 0
    classes: int = 2

    def label(self) -> str:
        if self.dataset:
            return self.dataset
        parts = [f"{self.rows // 1000}k×{self.numeric}" if self.rows >= 1000 else f"{self.rows}×{self.numeric}"]
        if self.categorical:
            parts.append(f"+{self.categorical}cat{self.levels}")
        if self.text:
            parts.append(f"+{self.text}text")
        return "".join(parts)


@dataclass(frozen=True)
class Config:
    algorithm: str
    task: str
    data: Data
    params: dict[str, Any] = field(default_factory=dict)
    cv: int | None = None
    quick: bool = False

    def label(self) -> str:
        shown = " ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        cv = f" cv={self.cv}" if self.cv else ""
        task = "C" if self.task == CLS else "R"
        return f"{self.algorithm}/{task} {self.data.label()}{cv} {shown}".strip()


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 2 and len(set(value)) == 1:
        return f"[{value[0]}]*{len(value)}"
    return str(value).replace(" ", "")


def _words(rng: np.random.Generator, signal: np.ndarray, vocabulary: int = 3000, length: int = 12) -> list[str]:
    """Documents of `length` words; a third of the words come from a slice of the vocabulary tied to `signal`."""
    docs = []
    slices = max(1, int(signal.max()) + 1)
    for s in signal.tolist():
        common = rng.integers(0, vocabulary, length)
        tied = rng.integers(0, vocabulary // slices, length) + int(s) * (vocabulary // slices)
        pick = np.where(rng.random(length) < 0.33, tied, common)
        docs.append(" ".join(f"w{w}" for w in pick.tolist()))
    return docs


def synthetic(data: Data, task: str, seed: int = 0) -> tuple[dict[str, Any], list[str], int, int]:
    """(inline data, text column names, width after preprocessing, classes) for a synthetic table."""
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    n, p = data.rows, max(data.numeric, 2)
    informative = max(2, p // 2)
    if task == CLS:
        X, y = make_classification(
            n,
            p,
            n_informative=informative,
            n_redundant=0,
            n_classes=data.classes,
            n_clusters_per_class=1,
            flip_y=0.05,
            random_state=seed,
        )
        signal = y
        target: list[Any] = [f"class_{v}" for v in y.tolist()]
    else:
        X, y = make_regression(n, p, n_informative=informative, noise=10.0, random_state=seed)
        signal = (y > np.median(y)).astype(int)
        target = [round(v, 4) for v in y.tolist()]
    columns: list[list[Any]] = [np.round(X[:, j], 4).tolist() for j in range(data.numeric)]
    names = [f"x{j}" for j in range(data.numeric)]
    width = data.numeric
    for j in range(data.categorical):
        latent = X[:, j % p] + rng.normal(0, 1, n)
        edges = np.quantile(latent, np.linspace(0, 1, data.levels + 1)[1:-1])
        codes = np.digitize(latent, edges)
        columns.append([f"c{c}" for c in codes.tolist()])
        names.append(f"cat{j}")
        width += min(len(set(codes.tolist())), 1000)
    text_names = []
    for j in range(data.text):
        docs = _words(rng, signal)
        columns.append(docs)
        names.append(f"text{j}")
        text_names.append(f"text{j}")
        width += TFIDF_COLUMNS  # as the trainer counts a text column, whatever its vocabulary
    rows = [list(r) for r in zip(*columns, target, strict=True)]
    return {"columns": [*names, "target"], "rows": rows}, text_names, width, data.classes


def bundled(name: str) -> tuple[int, int, int | None]:
    """(rows, features, classes) of a bundled dataset."""
    from sklearn import datasets as sk

    bunch = getattr(sk, f"load_{name}")()
    classes = None if name == "diabetes" else len(np.unique(bunch.target))
    return len(bunch.target), bunch.data.shape[1], classes


@dataclass
class Prepared:
    config: Config
    request: dict[str, Any]
    estimate: budget.Estimate


def prepare(config: Config) -> Prepared:
    """The request for train() and the estimate for it (shape computed from the data as the trainer sees it)."""
    data = config.data
    request: dict[str, Any] = {"algorithm": config.algorithm, "task": config.task, "test_size": TEST_SIZE}
    if config.params:
        request["hyperparameters"] = config.params
    if config.cv:
        request["cv"] = config.cv
    if data.dataset:
        request["data"] = {"dataset": data.dataset}
        rows, width, classes = bundled(data.dataset)
        n_features = width
    else:
        request["data"], text, width, classes = synthetic(data, config.task)
        request["target"] = "target"
        if text:
            request["text_features"] = text
        rows = data.rows
        n_features = data.numeric + data.categorical + data.text
    holdout = math.ceil(TEST_SIZE * rows)
    estimate = budget.estimate(
        config.algorithm,
        config.task,
        dict(config.params),
        train_rows=rows - holdout,
        holdout_rows=holdout,
        width=width,
        n_features=n_features,
        n_classes=classes if config.task == CLS else None,
        cv=config.cv,
    )
    return Prepared(config, request, estimate)


# ---------------------------------------------------------------------------------------------- the grid

IRIS, DIABETES, DIGITS = Data("iris"), Data("diabetes"), Data("digits")
S, S_R = Data(rows=2000, numeric=20), Data(rows=2000, numeric=20)
S3 = Data(rows=2000, numeric=20, classes=3)
M = Data(rows=20_000, numeric=30, classes=3)
M_R = Data(rows=20_000, numeric=30)
K10 = Data(rows=10_000, numeric=20, classes=5)
BIG = Data(rows=100_000, numeric=10)
CAT = Data(rows=5000, numeric=10, categorical=5, levels=20, classes=4)
CAT_R = Data(rows=5000, numeric=10, categorical=5, levels=20)
WIDE_CAT = Data(rows=5000, numeric=5, categorical=3, levels=300, classes=3)
TEXT = Data(rows=2000, numeric=5, text=1, classes=2)


def grid() -> list[Config]:
    c: list[Config] = []
    classifiers = [name for name, a in algorithms.ALGORITHMS.items() if algorithms.CLASSIFICATION in a.tasks]
    regressors = [name for name, a in algorithms.ALGORITHMS.items() if algorithms.REGRESSION in a.tasks]
    quick_defaults = {"random_forest", "gradient_boosting", "svm", "knn", "mlp", "logistic_regression"}
    # Defaults on the bundled datasets and the synthetic sizes.
    c += [Config(a, CLS, IRIS, quick=True) for a in classifiers]
    c += [Config(a, REG, DIABETES, quick=a in ("linear_regression", "lasso")) for a in regressors]
    c += [Config(a, CLS, S, quick=a in quick_defaults) for a in classifiers]
    c += [Config(a, REG, S_R) for a in regressors]
    c += [Config(a, CLS, M) for a in classifiers]
    c += [Config(a, REG, M_R) for a in regressors]
    c += [
        Config(a, CLS, CAT)
        for a in (
            "logistic_regression",
            "ridge",
            "random_forest",
            "gradient_boosting",
            "svm",
            "knn",
            "mlp",
            "decision_tree",
            "naive_bayes",
        )
    ]
    c += [Config(a, REG, CAT_R) for a in ("ridge", "lasso", "random_forest", "gradient_boosting")]
    c += [Config(a, CLS, WIDE_CAT) for a in ("logistic_regression", "random_forest", "knn", "mlp")]
    c += [
        Config(a, CLS, TEXT)
        for a in ("logistic_regression", "ridge", "naive_bayes", "random_forest", "svm", "gradient_boosting")
    ]
    c += [
        Config(a, CLS, K10, quick=a == "gradient_boosting")
        for a in ("logistic_regression", "gradient_boosting", "random_forest")
    ]
    c += [Config(a, CLS, BIG) for a in ("logistic_regression", "naive_bayes", "decision_tree", "ridge")]
    c += [Config(a, REG, BIG) for a in ("linear_regression", "lasso")]
    c += [Config(a, CLS, DIGITS) for a in ("logistic_regression", "svm", "random_forest", "knn")]
    # Hyperparameters that drive the cost.
    c += [
        Config("random_forest", CLS, S, {"n_estimators": 500}, quick=True),
        Config("random_forest", CLS, M, {"n_estimators": 300}),
        Config("random_forest", REG, M_R, {"max_depth": 8}),
        Config("random_forest", REG, S_R, {"max_features": "sqrt", "min_samples_leaf": 5}),
        Config("gradient_boosting", CLS, S, {"n_estimators": 300, "max_depth": 6}, quick=True),
        Config("gradient_boosting", CLS, S3, {"n_estimators": 200, "max_depth": 10}),
        Config("gradient_boosting", REG, M_R, {"subsample": 0.5, "max_features": 0.3}),
        Config("gradient_boosting", CLS, K10, {"n_estimators": 50, "learning_rate": 0.2}),
        Config("decision_tree", REG, BIG, {"max_depth": 12}),
        Config("logistic_regression", CLS, M, {"C": 10000.0}),
        Config("logistic_regression", CLS, M, {"solver": "saga"}),
        Config("logistic_regression", CLS, S, {"solver": "newton-cholesky"}),
        Config("logistic_regression", CLS, CAT, {"solver": "sag", "max_iter": 5000}),
        Config("lasso", REG, M_R, {"alpha": 0.01}),
        Config("ridge", REG, M_R, {"solver": "saga"}),
        Config("mlp", CLS, S, {"hidden_layer_sizes": [256, 256]}, quick=True),
        Config("mlp", CLS, S, {"solver": "lbfgs"}),
        Config("mlp", REG, S_R, {"solver": "sgd", "max_iter": 500}),
        Config("mlp", CLS, M, {"early_stopping": True}),
        Config("mlp", CLS, IRIS, {"hidden_layer_sizes": [64, 64, 64], "max_iter": 1000}),
        Config("knn", CLS, M, {"n_neighbors": 50}),
        Config("knn", CLS, S, {"p": 1}),
        Config("knn", REG, Data(rows=20_000, numeric=8), {}),
        Config("svm", CLS, S, {"C": 100.0}, quick=True),
        Config("svm", CLS, S, {"kernel": "linear"}),
        Config("svm", CLS, S, {"kernel": "poly", "degree": 3}),
        Config("svm", REG, S_R, {"C": 10.0, "epsilon": 0.05}),
        Config("svm", CLS, Data(rows=6000, numeric=20), {}),
        Config("svm", CLS, IRIS, {"kernel": "poly", "degree": 5}),
        Config("svm", CLS, IRIS, {"kernel": "poly", "degree": 10, "C": 1e6}, cv=20),
        Config("svm", CLS, S, {"kernel": "poly", "degree": 10, "C": 100.0}),
        Config("svm", CLS, S, {"kernel": "linear", "C": 10.0}),
        Config("random_forest", REG, Data(rows=10_000, numeric=20), {}),
        Config("random_forest", CLS, M, {"criterion": "entropy", "max_features": 0.5}),
        Config("decision_tree", REG, M_R, {"criterion": "absolute_error"}),
        Config("logistic_regression", CLS, Data(rows=300_000, numeric=20), {}),
    ]
    # Cross-validation.
    c += [
        Config("random_forest", CLS, S, cv=5, quick=True),
        Config("logistic_regression", CLS, M, cv=5),
        Config("knn", CLS, S, cv=5),
        Config("svm", CLS, S, cv=5),
        Config("gradient_boosting", REG, S_R, cv=5),
        Config("mlp", CLS, IRIS, cv=10),
        Config("decision_tree", CLS, IRIS, cv=20, quick=True),
        Config("random_forest", CLS, IRIS, cv=20),
    ]
    # Every bound at its maximum, on iris. Measured, none of them blows the budget: 120 rows stop the trees
    # growing, the wide MLP converges in tens of epochs, and libsvm solves 120 rows in milliseconds.
    c += [
        Config("mlp", CLS, IRIS, {"hidden_layer_sizes": [1024] * 5, "max_iter": 5000}, quick=True),
        Config("gradient_boosting", CLS, IRIS, {"n_estimators": 500, "max_depth": 100}, cv=20, quick=True),
        Config("svm", CLS, IRIS, {"kernel": "poly", "degree": 10}, cv=20, quick=True),
    ]
    return c


# ---------------------------------------------------------------------------------------------- running


def train_request(request: dict[str, Any]) -> Any:
    """train() on a request body; the pydantic model when trainer no longer takes a dict."""
    try:
        return trainer.train(request)
    except (TypeError, AttributeError):
        from mlservice.api.schemas import TrainRequest

        return trainer.train(TrainRequest.model_validate(request))


def _cpu_seconds() -> float:
    """CPU of this process and of its reaped children (the trainer may fit in a forked child of its own)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(request: dict[str, Any], conn: Any) -> None:
    os.setpgrp()  # a group of its own: the trainer's fit process is killed with it when the cap is reached
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            train_request(request)
            conn.send(("ok", time.perf_counter() - wall, _cpu_seconds() - cpu))
        except BaseException as error:  # report it; the parent decides
            conn.send(("error", f"{type(error).__name__}: {getattr(error, 'message', error)}"[:200], 0.0))
    conn.close()


def run_once(request: dict[str, Any], cap: float) -> tuple[str, float, float]:
    """(status, wall, cpu) of train() in a forked child; status 'timeout' when killed after `cap` seconds."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(request, send), daemon=True)
    started = time.perf_counter()
    child.start()
    send.close()
    status, wall, cpu = "timeout", cap, cap
    try:
        if receive.poll(cap):
            with contextlib.suppress(EOFError):
                status, wall, cpu = receive.recv()
    finally:  # also on Ctrl-C: nothing of a run outlives it
        if child.is_alive():
            try:
                os.killpg(child.pid, signal.SIGKILL)  # the child and the fit process the trainer forked
            except ProcessLookupError:  # killed before it made its group
                child.kill()
        child.join()
    if status == "timeout":
        wall = time.perf_counter() - started
    return status, wall, cpu


@dataclass
class Result:
    prepared: Prepared
    status: str
    wall: float
    cpu: float
    load: float  # 1-minute load average when the run started: above ~1.5, another process competed for the cores

    @property
    def estimated(self) -> float:
        return self.prepared.estimate.seconds


def measure(prepared: Prepared, cap: float) -> Result:
    load = os.getloadavg()[0]
    status, wall, cpu = run_once(prepared.request, cap)
    if status == "ok" and cpu < REPEAT_UNDER:
        walls, cpus = [wall], [cpu]
        for _ in range(REPEATS - 1):
            s, w, c = run_once(prepared.request, cap)
            if s == "ok":
                walls.append(w)
                cpus.append(c)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
    return Result(prepared, status, wall, cpu, load)


def warm_up() -> None:
    """One tiny training per algorithm first, so the runs do not pay for importing the service's modules. (What
    the trainer imports lazily inside its own forked fit process is paid by every run, as it is by the service.)"""
    tiny = Data(rows=60, numeric=3, categorical=1, levels=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for algorithm in (name for name, a in algorithms.ALGORITHMS.items() if CLS in a.tasks):
            data, _, _, _ = synthetic(tiny, CLS)
            train_request({"algorithm": algorithm, "task": CLS, "data": data, "target": "target", "cv": 2})
        for algorithm in ("linear_regression", "lasso", "mlp", "svm"):
            data, _, _, _ = synthetic(tiny, REG)
            train_request({"algorithm": algorithm, "task": REG, "data": data, "target": "target"})


# ---------------------------------------------------------------------------------------------- report


def row(result: Result, cap: float) -> str:
    est = result.estimated
    if result.status == "timeout":
        actual, wall, ratio = f"> {cap:.0f}", f"> {cap:.0f}", f"< {est / cap:.2f}"
    elif result.status == "ok":
        actual, wall, ratio = f"{result.cpu:.2f}", f"{result.wall:.2f}", f"{est / max(result.cpu, 1e-3):.2f}"
    else:
        actual, wall, ratio = "error", "", result.status
    verdict = "refuse" if est > BUDGET_SECONDS else ""
    knobs = ",".join(result.prepared.estimate.knobs[:3])
    label = result.prepared.config.label()
    return f"{label:<74} {est:>9.2f} {actual:>8} {wall:>8} {ratio:>7} {result.load:>5.1f}  {verdict:<6} {knobs}"


def summary(results: list[Result], cap: float) -> list[str]:
    lines = []
    finished = [r for r in results if r.status == "ok"]
    timed = [r for r in finished if r.cpu > RATIO_FROM]
    ratios = sorted(r.estimated / r.cpu for r in timed)
    if ratios:
        inside = sum(1 for q in ratios if 1 / 3 <= q <= 3)
        lines.append(
            f"estimate/actual over {len(ratios)} runs above {RATIO_FROM} s: median {statistics.median(ratios):.2f}, "
            f"worst low {ratios[0]:.2f}, worst high {ratios[-1]:.2f}; {inside}/{len(ratios)} within 0.33-3x"
        )
    false_refusals = [r for r in finished if r.cpu < FALSE_REFUSAL_UNDER and r.estimated > BUDGET_SECONDS]
    missed = [
        r
        for r in results
        if (r.status == "timeout" or (r.status == "ok" and r.cpu > BUDGET_SECONDS)) and r.estimated <= BUDGET_SECONDS
    ]
    over = [r for r in results if r.status == "timeout" or (r.status == "ok" and r.cpu > BUDGET_SECONDS)]
    lines.append(
        f"false refusals (actual < {FALSE_REFUSAL_UNDER:.0f} s, estimate > {BUDGET_SECONDS:.0f} s): {len(false_refusals)}"
        + "".join(f"\n    {r.prepared.config.label()}" for r in false_refusals)
    )
    lines.append(
        f"missed refusals (actual > {BUDGET_SECONDS:.0f} s or > cap {cap:.0f} s, estimate <= {BUDGET_SECONDS:.0f} s): "
        f"{len(missed)} of {len(over)} over budget" + "".join(f"\n    {r.prepared.config.label()}" for r in missed)
    )
    errors = [r for r in results if r.status not in ("ok", "timeout")]
    if errors:
        lines.append(
            f"errors: {len(errors)}" + "".join(f"\n    {r.prepared.config.label()}: {r.status}" for r in errors)
        )
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset: every algorithm once, the refusals")
    parser.add_argument("--cap", type=float, help="seconds before a run is killed (default 60, 25 with --quick)")
    parser.add_argument("--only", help="run configurations whose label contains this text")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    cap = args.cap or (25.0 if args.quick else 60.0)
    # Measure every configuration, also those the service would refuse, and let the cap (not the service's
    # training deadline) stop the long ones.
    os.environ["TRAINING_BUDGET_SECONDS"] = "1e9"
    os.environ["TRAINING_DEADLINE_SECONDS"] = str(cap + 60)
    began = time.monotonic()
    configs = [c for c in grid() if c.quick or not args.quick]
    if args.only:
        configs = [c for c in configs if args.only in c.label()]
    print(
        f"{len(configs)} configurations, cap {cap:.0f} s, budget {BUDGET_SECONDS:.0f} s, one BLAS/OpenMP thread; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    warm_up()
    header = f"{'config':<74} {'estimate':>9} {'actual':>8} {'wall':>8} {'est/act':>7} {'load':>5}  {'':<6} knobs"
    print(header + "\n" + "-" * len(header), flush=True)
    results = []
    for config in configs:
        result = measure(prepare(config), cap)
        results.append(result)
        print(row(result, cap), flush=True)
    print("-" * len(header))
    for line in summary(results, cap):
        print(line)
    print(f"load average now {os.getloadavg()[0]:.2f}; benchmark wall time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
