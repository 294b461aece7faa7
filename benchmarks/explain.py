"""Explanation cost: what `POST /models/{model}/explain` costs per algorithm, against the raw scikit-learn call.

For every algorithm the service trains (breast_cancer for classification: 30 numeric columns, 455 training rows;
diabetes for regression: 10 columns), it trains the model the way the service does, then times, in this process:

- predict: `pipeline.predict_proba` (or `predict`) on the rows — the raw scikit-learn call;
- explain: `mlservice.explain.explainer.explain` on the same rows, with the service's defaults (64 samples for
  the sampling method, EXPLAIN_MAX_EVALUATIONS 200,000), after one warm-up call (which builds a forest's cached
  tree paths);

and prints the method, model evaluations, milliseconds, the ratio explain/predict, the largest additivity error,
and whether the request would be refused (`explanation_too_expensive`) at that row count.

    .venv/bin/python benchmarks/explain.py             # 1, 10 and 100 rows, every algorithm: ~1 minute
    .venv/bin/python benchmarks/explain.py --quick     # 10 rows only
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # Lambda's ~1 vCPU at 2 GB: one thread is what a request gets
os.environ.setdefault("MODEL_BUCKET", "bench-models")  # training reads settings; nothing is stored

import joblib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "mlservice"))

from mlservice.errors import ServiceError  # noqa: E402
from mlservice.explain import explainer  # noqa: E402
from mlservice.features import rows_to_matrix  # noqa: E402
from mlservice.training import algorithms, trainer  # noqa: E402
from mlservice.training.datasets import load_table  # noqa: E402
from mlservice.training.request import TrainRequest  # noqa: E402

REPEATS = 5
SMALL = {"random_forest": {"n_estimators": 100}, "gradient_boosting": {"n_estimators": 100}}


def _rows(dataset: str, count: int) -> list[list]:
    from mlservice.settings import get_settings

    table = load_table(
        TrainRequest.model_validate({"algorithm": "ridge", "data": {"dataset": dataset}}).data, get_settings()
    )
    target = table.index("target")
    return [[v for j, v in enumerate(row) if j != target] for row in table.rows[:count]]


def _median_ms(call) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    counts = (10,) if args.quick else (1, 10, 100)
    header = f"{'algorithm':<20} {'task':<15} {'rows':>4} {'method':<21} {'evals':>8} {'predict ms':>10} {'explain ms':>10} {'ratio':>7} {'additivity':>10}"
    print(
        f"one BLAS thread; median of {REPEATS}; load average {os.getloadavg()[0]:.2f}\n{header}\n" + "-" * len(header)
    )
    for task, dataset in (("classification", "breast_cancer"), ("regression", "diabetes")):
        for name, spec in algorithms.ALGORITHMS.items():
            if task not in spec.tasks:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                artifact, metadata = trainer.train(
                    {
                        "algorithm": name,
                        "task": task,
                        "data": {"dataset": dataset},
                        "hyperparameters": SMALL.get(name, {}),
                    }
                )
            pipeline = joblib.load(io.BytesIO(artifact))
            features, classes = metadata["features"], metadata["target"].get("classes")
            for count in counts:
                matrix = rows_to_matrix(_rows(dataset, count), features)
                raw = (
                    pipeline.predict_proba
                    if task == "classification" and hasattr(pipeline, "predict_proba")
                    else pipeline.predict
                )
                predict_ms = _median_ms(lambda: raw(matrix))  # noqa: B023

                def explain():
                    return explainer.explain(pipeline, matrix, features, task, classes)  # noqa: B023

                try:
                    result = explain()
                except ServiceError as error:
                    print(f"{name:<20} {task:<15} {count:>4} refused: {error.code}: {error.message[:80]}")
                    continue
                explain_ms = _median_ms(explain)
                print(
                    f"{name:<20} {task:<15} {count:>4} {result['method']:<21} {result['evaluations']:>8} "
                    f"{predict_ms:>10.2f} {explain_ms:>10.1f} {explain_ms / predict_ms:>7.0f} {result['max_additivity_error']:>10.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
