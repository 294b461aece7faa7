"""Online serving: PredictFunction's warm latency, cold start and memory, and batch throughput, each as a ratio
to the scikit-learn code it stands in for, measured in the same run.

Three questions, answered with ratios rather than assertions (timings depend on the machine; the table says
PASS or MISS against the targets but the script never fails on them):

1. Warm: how does one full PredictFunction invocation (API Gateway event with a JSON body of `instances` →
   parse, validate, encode, predict, build the JSON response) compare with the unpickled pipeline's own
   `predict_proba` on the already-built input matrix, at 1, 100 and 10,000 rows? (targets: handler/bare ≤ 1.0×,
   ≤ 0.5×, ≤ 1.5×)
2. Cold: how does a fresh process that imports the predict function, reads the model from S3 and answers its
   first request compare with a minimal `import joblib, sklearn; joblib.load(...); predict_proba(one row)`
   script, in wall time, CPU time and peak RSS? (targets: ≤ 0.3× time, ≤ 0.5× memory)
3. Batch: BatchPredictFunction's rows/s on a 100k-row file in S3 against the hand-written numpy baseline of
   batch_throughput.py (its children are reused). (target: ≥ 1.0×)

Everything goes through the service's public entry points: models are trained with
`mlservice.training.trainer.train_model`, published with `registry.publish_version(..., onnx=...)` and deployed
with `registry.set_stage`; the handlers are the template's, loaded as Lambda loads them. So the figures are those
of whatever engine the code picks (ONNX export on onnxruntime, or the scikit-learn pipeline); the table says which.

S3 is moto's server in a process of its own. Every measured party is a process of its own: the warm handler,
the bare pipeline (twice: as is, and with the two process-wide settings the service applies to itself, which is
the baseline the ratio uses) and the cold-start children, so none pays for another's imports or memory.

    python benchmarks/serving.py            # the full run: ~2 minutes on 2 cores
    python benchmarks/serving.py --quick    # fewer rounds and repeats, two models cold-started: ~1 minute
    python benchmarks/serving.py --no-onnx  # the same with every version served by its scikit-learn pipeline
    python benchmarks/serving.py --help     # --models, --skip-*, --out, --tmpdir, ...
"""

# Only the standard library at module level: the cold-start children are this script too, and what it imports
# before their clock-relevant work is paid equally by both of them.
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = os.path.join(ROOT, "layers", "mlservice")
PREDICT_APP = os.path.join(ROOT, "functions", "predict", "app.py")
BENCHMARKS = os.path.join(ROOT, "benchmarks")
DEFAULT_OUT = os.path.join(BENCHMARKS, "results", "serving.json")

FUNCTION = "PredictFunction"
RESULT_MARK = "BENCH-RESULT "
SIZES = (1, 100, 10_000)
# handler/bare, warm: at most this (CPU time per request), by rows per request.
WARM_TARGETS = {1: 1.0, 100: 0.5, 10_000: 1.5}
COLD_TIME_TARGET = 0.3  # service/minimal, cold start: at most
COLD_RSS_TARGET = 0.5
BATCH_TARGET = 1.0  # handler rows/s / raw rows/s: at least
# What the slim PredictLayer lacks (layers/mlservice/requirements-predict.txt): made unimportable in the
# service's processes when the version is served from its ONNX export, so they import what that layer holds.
SLIM_ABSENT = ("sklearn", "scipy", "joblib", "threadpoolctl", "skl2onnx", "onnx", "pandas")
# Calls per timed batch, and timed rounds (default, --quick), by rows per request.
CALLS = {1: 20, 100: 10, 10_000: 1}
ROUNDS = {1: (15, 7), 100: (11, 5), 10_000: (7, 3)}
MB = 1024 * 1024


def _peak_mb() -> float:
    """This process's peak resident memory. On Linux from /proc (VmHWM): `ru_maxrss` of a spawned child starts at
    its parent's RSS (Linux carries the spawning process's high-water mark over the exec), so a child of this
    benchmark's parent — which holds scikit-learn and six models — would report at least that."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _block_slim_absent() -> None:
    """Make the packages the slim layer lacks unimportable (`import sklearn` raises ImportError, and
    `importlib.util.find_spec("sklearn")` answers None, as where it is not installed)."""
    for name in SLIM_ABSENT:
        sys.modules[name] = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------- cold children
# `serving.py --cold <kind> <spec.json>`: one fresh process each, reporting when its first prediction was done
# (time.monotonic is one clock for every process on Linux, so the parent subtracts its own start time).


class _Context:
    """What Powertools reads of Lambda's context object."""

    function_name = FUNCTION
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def cold_minimal(spec: dict) -> dict:
    """The minimal script: scikit-learn and joblib imported, the .joblib file loaded, one row predicted."""
    import joblib
    import numpy as np
    import sklearn  # noqa: F401 - the point: what importing it costs

    imported = time.monotonic()
    with open(spec["artifact"], "rb") as handle:
        pipeline = joblib.load(handle)
    row = np.array([spec["row"]], dtype=object if spec["object"] else np.float64)
    result = pipeline.predict_proba(row) if spec["classifier"] else pipeline.predict(row)
    done = time.monotonic()
    return {"imported": imported, "done": done, "output": np.asarray(result).tolist()}


def cold_service(spec: dict) -> dict:
    """The predict function in a fresh process: functions/predict/app.py imported with the layer on the path (as
    Lambda does), then one API Gateway event handled — registry and model read from S3, model loaded, answered."""
    import importlib.util

    if spec["slim"]:
        _block_slim_absent()
    sys.path.insert(0, LAYER)
    sys.path.insert(0, os.path.dirname(PREDICT_APP))
    module_spec = importlib.util.spec_from_file_location("app", PREDICT_APP)
    assert module_spec and module_spec.loader
    app = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(app)
    imported = time.monotonic()
    with open(spec["event"], encoding="utf-8") as handle:
        event = json.load(handle)
    response = app.handler(event, _Context())
    done = time.monotonic()
    if response.get("statusCode") != 200:
        raise RuntimeError(f"the first request failed: {str(response)[:500]}")
    loaded = [name for name in ("sklearn", "scipy", "joblib", "onnxruntime") if sys.modules.get(name) is not None]
    return {"imported": imported, "done": done, "output": json.loads(response["body"]), "loaded": loaded}


def cold_empty(spec: dict) -> dict:
    """The interpreter and this script alone: the floor both children above stand on."""
    now = time.monotonic()
    return {"imported": now, "done": now}


COLD = {"minimal": cold_minimal, "service": cold_service, "empty": cold_empty}


def run_cold_child(kind: str, spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    result = COLD[kind](spec)
    result.update(cpu=_cpu_seconds(), peak_mb=_peak_mb())
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # a Lambda cold start ends at the answer, not at interpreter teardown


# ---------------------------------------------------------------------------------------------- warm workers
# `serving.py --worker <kind> <spec.json>`: a long-lived process taking one JSON command per stdin line and
# answering one JSON line. Its stdout proper goes to /dev/null (the handler's logs and metrics are written there,
# as Lambda writes them to its log pipe); answers go to a duplicate of the original stdout.


class BareWorker:
    """The unpickled pipelines and their input matrices, called as a hand-written script would call them.

    `tuned` applies to this process what the service applies to its own (mlservice.serving.runners and
    gc_policy): scikit-learn's per-call `from pandas import NA` fails at once instead of after a search of
    sys.path when pandas is absent, and what was loaded is frozen out of the garbage collector's scans. That is
    the baseline the ratios use: the fastest this scikit-learn gets here. Untuned, it is the pipeline as is."""

    def __init__(self, spec: dict) -> None:
        import gc

        import joblib
        import numpy as np

        if spec["tuned"]:
            sys.meta_path.insert(0, _PandasAbsent())
        self.pipelines, self.matrices, self.bodies = {}, {}, {}
        for name, model in spec["models"].items():
            with open(model["rows"], encoding="utf-8") as handle:
                rows = json.load(handle)
            self.bodies[name] = {n: json.dumps({"instances": rows[:n]}) for n in spec["sizes"]}
            with open(model["artifact"], "rb") as handle:
                pipeline = joblib.load(handle)
            matrix = np.load(model["matrix"], allow_pickle=True)
            method = pipeline.predict_proba if model["classifier"] else pipeline.predict
            self.pipelines[name] = method
            self.matrices[name] = {n: np.ascontiguousarray(matrix[:n]) for n in spec["sizes"]}
            for n in spec["sizes"]:
                method(self.matrices[name][n])  # warm-up
        if spec["tuned"]:
            gc.set_threshold(50_000, *gc.get_threshold()[1:])
            gc.freeze()

    def run(self, command: dict) -> dict:
        method, matrix = self.pipelines[command["model"]], self.matrices[command["model"]][command["rows"]]
        calls = command["calls"]
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            method(matrix)
        return {"wall": (time.perf_counter() - started) / calls, "cpu": (time.process_time() - cpu) / calls}

    def parse(self, command: dict) -> dict:
        """`json.loads` of the request body alone: the least any handler speaking JSON does with it."""
        body, calls = self.bodies[command["model"]][command["rows"]], command["calls"]
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            json.loads(body)
        return {"wall": (time.perf_counter() - started) / calls, "cpu": (time.process_time() - cpu) / calls}

    def outputs(self, command: dict) -> dict:
        import numpy as np

        values = self.pipelines[command["model"]](self.matrices[command["model"]][command["rows"]])
        return {"outputs": np.asarray(values, dtype=np.float64).tolist()}


class _PandasAbsent:
    """Fails `import pandas` at once (mlservice.serving.runners installs the same finder in the service)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


class HandlerWorker:
    """PredictFunction through LocalLambda: the template's handler, environment and API Gateway events."""

    def __init__(self, spec: dict) -> None:
        if spec["slim"]:
            _block_slim_absent()
        for path in (ROOT, LAYER):
            if path not in sys.path:
                sys.path.insert(0, path)
        from local.lambda_events import LambdaContext, api_event
        from local.runtime import LocalLambda

        self.api_event, self.context = api_event, LambdaContext
        self.runtime = LocalLambda(substitutions={"MODEL_BUCKET": spec["bucket"], "ModelBucket": spec["bucket"]})
        self.bodies: dict[str, dict[int, str]] = {}
        self.routes: dict[str, tuple[str, str, dict]] = {}
        self.first: dict[str, dict[int, dict]] = {}
        for name, model in spec["models"].items():
            with open(model["rows"], encoding="utf-8") as handle:
                rows = json.load(handle)
            # The client's serialisation, done once: the request body as API Gateway hands it over.
            self.bodies[name] = {n: json.dumps({"instances": rows[:n]}) for n in spec["sizes"]}
            path = f"/models/{name}/predict"
            found = self.runtime.template.find_route("POST", path)
            assert found is not None and found[0].function == FUNCTION, path
            self.routes[name] = (path, found[0].resource, found[1])
            self.first[name] = {}
            for n in spec["sizes"]:  # the warm-up call: imports done, model loaded and cached
                response = self._invoke(self._event(name, n), self._ctx())
                body = json.loads(response["body"])
                if response["statusCode"] != 200 or len(body.get("predictions", ())) != n:
                    raise RuntimeError(f"warm-up of {name} with {n} rows failed: {response['body'][:500]}")
                self.first[name][n] = body
        self.loaded = [name for name in ("sklearn", "scipy", "joblib", "onnxruntime") if sys.modules.get(name)]

    def _event(self, name: str, rows: int) -> dict:
        path, resource, params = self.routes[name]
        headers = {"Content-Type": ["application/json"]}
        return self.api_event("POST", path, resource, params, None, headers, self.bodies[name][rows])

    def _ctx(self) -> Any:
        return self.context(function_name=FUNCTION, timeout_seconds=29, memory_limit_in_mb=2048)

    def _invoke(self, event: dict, context: Any) -> dict:
        return self.runtime.invoke(FUNCTION, event, context)

    def run(self, command: dict) -> dict:
        calls = command["calls"]
        # Events and contexts are API Gateway's and Lambda's work: made before the clock starts.
        events = [self._event(command["model"], command["rows"]) for _ in range(calls)]
        contexts = [self._ctx() for _ in range(calls)]
        invoke = self._invoke
        response: dict = {}
        started, cpu = time.perf_counter(), time.process_time()
        for event, context in zip(events, contexts, strict=True):
            response = invoke(event, context)
        wall, cpu = (time.perf_counter() - started) / calls, (time.process_time() - cpu) / calls
        if response.get("statusCode") != 200:
            raise RuntimeError(f"{command['model']} answered {response.get('statusCode')}: {response.get('body')}")
        return {"wall": wall, "cpu": cpu}

    def outputs(self, command: dict) -> dict:
        body = self.first[command["model"]][command["rows"]]
        return {"outputs": body.get("probabilities") or body["predictions"], "loaded": self.loaded}


WORKERS = {"bare": BareWorker, "handler": HandlerWorker}


def run_worker(kind: str, spec_path: str) -> None:
    replies = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    worker = WORKERS[kind](spec)
    replies.write(json.dumps({"ready": True, "peak_mb": _peak_mb()}) + "\n")
    replies.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        reply = getattr(worker, command["op"])(command)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


# ---------------------------------------------------------------------------------------------- data


def breast_cancer_rows(rows: int, seed: int) -> list[list[float]]:
    """Rows that look like real breast_cancer records: resampled with ±3% noise, 6 significant digits."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), rows)] * rng.normal(1.0, 0.03, (rows, data.shape[1]))
    return [[float(f"{v:.6g}") for v in row] for row in picked.tolist()]


CHURN_COLUMNS = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "internet_service",
    "last_ticket",
]
CHURN_TARGET = "churned"


def churn_rows(rows: int, seed: int, unseen: float = 0.0) -> tuple[list[list[Any]], list[str]]:
    """A churn-like table: three numbers, three categories and a short support-ticket text, with a target that
    depends on all of them. Every category and most words occur far more often than MIN_GROUP_SIZE (5). With
    `unseen`, that share of rows names a payment method the model never saw (pooled at serving)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    contracts = ["month-to-month", "one-year", "two-year"]
    payments = ["card", "bank transfer", "electronic check", "mailed check"]
    internet = ["fiber", "dsl", "none"]
    good = ["great", "fast", "helpful", "resolved", "thanks", "happy", "quick", "friendly"]
    bad = ["slow", "outage", "billing", "error", "cancel", "expensive", "waiting", "dropped", "refund", "unhappy"]
    neutral = ["router", "plan", "upgrade", "account", "address", "password", "speed", "bill", "modem", "email"]
    tenure = rng.integers(0, 73, rows)
    monthly = np.round(rng.uniform(18, 120, rows), 2)
    c = rng.choice(3, rows, p=[0.55, 0.25, 0.2])
    p = rng.choice(4, rows)
    i = rng.choice(3, rows, p=[0.45, 0.35, 0.2])
    score = (
        0.9
        - 0.045 * tenure
        + 0.015 * (monthly - 65)
        + np.array([1.0, -0.6, -1.4])[c]
        + np.array([0.0, 0.0, 0.6, 0.0])[p]
        + np.array([0.5, 0.0, -0.7])[i]
    )
    mood = rng.normal(score, 1.0)
    table = []
    for k in range(rows):
        words = [
            *rng.choice(neutral, rng.integers(2, 6)),
            *rng.choice(bad if mood[k] > 0 else good, rng.integers(1, 4)),
        ]
        rng.shuffle(words)
        payment = "prepaid voucher" if rng.random() < unseen else payments[p[k]]
        table.append(
            [
                int(tenure[k]),
                float(monthly[k]),
                round(float(monthly[k] * max(int(tenure[k]), 1)), 2),
                contracts[c[k]],
                payment,
                internet[i[k]],
                " ".join(str(w) for w in words),
            ]
        )
    churned = rng.random(rows) < 1 / (1 + np.exp(-score))
    return table, ["yes" if x else "no" for x in churned]


def model_specs() -> list[dict]:
    """The models measured: five numeric ones on breast_cancer and one on mixed data."""
    bundled = {"dataset": "breast_cancer"}
    churn, labels = churn_rows(3000, seed=1)
    mixed = {"columns": [*CHURN_COLUMNS, CHURN_TARGET], "rows": [[*r, y] for r, y in zip(churn, labels, strict=True)]}
    return [
        {
            "name": "logreg",
            "label": "logistic regression",
            "request": {"algorithm": "logistic_regression", "data": bundled},
        },
        {
            "name": "forest",
            "label": "random forest (200 trees)",
            "request": {"algorithm": "random_forest", "data": bundled, "hyperparameters": {"n_estimators": 200}},
        },
        {
            "name": "boosting",
            "label": "gradient boosting",
            "request": {"algorithm": "gradient_boosting", "data": bundled},
        },
        {"name": "mlp", "label": "MLP", "request": {"algorithm": "mlp", "data": bundled}},
        {"name": "svm", "label": "SVM (SVC)", "request": {"algorithm": "svm", "data": bundled}},
        {
            "name": "churn",
            "label": "mixed: numeric + categorical + text",
            "request": {
                "algorithm": "logistic_regression",
                "data": mixed,
                "target": CHURN_TARGET,
                "text_features": ["last_ticket"],
            },
        },
    ]


# ---------------------------------------------------------------------------------------------- the benchmark


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


class Worker:
    """The parent's handle on one warm worker process."""

    def __init__(self, kind: str, spec: dict, tmp: str, env: dict[str, str], label: str) -> None:
        import subprocess

        spec_path = os.path.join(tmp, f"worker-{label}.json")
        with open(spec_path, "w", encoding="utf-8") as handle:
            json.dump(spec, handle)
        self.label = label
        self.log_path = os.path.join(tmp, f"worker-{label}.log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, spec_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=ROOT,
            text=True,
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                log = handle.read()[-4000:]
            raise RuntimeError(f"the {self.label} worker stopped (exit {self.process.returncode}):\n{log}")
        return json.loads(line)

    def ask(self, **command: Any) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def stop(self) -> None:
        import contextlib
        import subprocess

        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, RuntimeError):
                self.ask(op="quit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a worker that does not leave is killed
                self.process.kill()
                self.process.wait()
        self.log.close()


class Bench:
    def __init__(self, args: Any, tmp: str, server: Any, env: dict[str, str]) -> None:
        self.args, self.tmp, self.server, self.env = args, tmp, server, env
        self.started = time.monotonic()
        self.models: dict[str, dict] = {}

    def note(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    # -- setup

    def setup(self) -> None:
        """The bucket; every model trained, published with its ONNX export (when it has one) and deployed to
        production; the rows each is asked about, as JSON rows and as the matrix the pipeline takes."""
        import boto3
        import numpy as np

        from mlservice import registry, storage
        from mlservice.features import rows_to_matrix
        from mlservice.training.trainer import train_model

        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1").create_bucket(
            Bucket=self.env["MODEL_BUCKET"]
        )
        storage.reset_client()
        wanted = set(self.args.models_list)
        numeric_rows = breast_cancer_rows(max(SIZES), seed=7)
        for spec in model_specs():
            if spec["name"] not in wanted:
                continue
            began = time.monotonic()
            trained = train_model(spec["request"])
            metadata = trained.metadata
            onnx = None if self.args.no_onnx else trained.onnx
            published = registry.publish_version(spec["name"], trained.artifact, metadata, onnx=onnx)
            registry.set_stage(spec["name"], "production", published["version"])
            serving = published.get("serving") or {}
            engine = "onnx" if onnx is not None and serving.get("format") == "onnx" else "scikit-learn"
            features = metadata["features"]
            if spec["name"] == "churn":
                rows, _ = churn_rows(max(SIZES), seed=2, unseen=0.02)
            else:
                rows = numeric_rows
                if len(features) != len(rows[0]):
                    raise SystemExit(f"{spec['name']} has {len(features)} features, the rows {len(rows[0])}")
            paths = {kind: os.path.join(self.tmp, f"{spec['name']}.{kind}") for kind in ("joblib", "npy", "rows")}
            with open(paths["joblib"], "wb") as handle:
                handle.write(trained.artifact)
            matrix = rows_to_matrix(rows, features)  # the service's own encoding, rare categories pooled
            np.save(paths["npy"], matrix, allow_pickle=True)
            with open(paths["rows"], "w", encoding="utf-8") as handle:
                json.dump(rows, handle)
            self.models[spec["name"]] = {
                **spec,
                "metadata": published,
                "onnx": onnx,
                "artifact": trained.artifact,
                "engine": engine,
                "serving_reason": "--no-onnx" if self.args.no_onnx else serving.get("reason"),
                "classifier": metadata["task"] == "classification",
                "object": matrix.dtype == object,
                "paths": paths,
                "first_row": matrix[0].tolist(),
                "train_seconds": time.monotonic() - began,
            }
            self.note(
                f"trained {spec['name']} ({spec['label']}) in {time.monotonic() - began:.1f}s; served by {engine}"
                + (f" ({self.models[spec['name']]['serving_reason']})" if engine != "onnx" else "")
            )

    # -- 1. warm

    def warm(self) -> list[dict]:
        names = list(self.models)
        sizes = list(SIZES)
        bare_spec = {
            "sizes": sizes,
            "models": {
                n: {
                    "artifact": m["paths"]["joblib"],
                    "matrix": m["paths"]["npy"],
                    "rows": m["paths"]["rows"],
                    "classifier": m["classifier"],
                }
                for n, m in self.models.items()
            },
        }
        env = {**self.env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # One worker per engine: the slim layer's imports for ONNX-served versions, the full layer's otherwise.
        handlers: dict[bool, Worker] = {}
        workers: list[Worker] = []
        try:
            self.note("starting the bare workers")
            tuned = Worker("bare", {**bare_spec, "tuned": True}, self.tmp, env, "bare-tuned")
            as_is = Worker("bare", {**bare_spec, "tuned": False}, self.tmp, env, "bare-as-is")
            workers += [tuned, as_is]
            for slim in sorted({m["engine"] == "onnx" for m in self.models.values()}, reverse=True):
                served = {
                    n: {"rows": m["paths"]["rows"]} for n, m in self.models.items() if (m["engine"] == "onnx") == slim
                }
                self.note(f"starting the handler worker ({'slim' if slim else 'full'} layer) for {', '.join(served)}")
                spec = {"sizes": sizes, "slim": slim, "bucket": self.env["MODEL_BUCKET"], "models": served}
                handlers[slim] = Worker("handler", spec, self.tmp, env, f"handler-{'slim' if slim else 'full'}")
                workers.append(handlers[slim])
            results = []
            for rows in sizes:
                rounds = ROUNDS[rows][1 if self.args.quick else 0]
                calls = CALLS[rows]
                for name in names:
                    model = self.models[name]
                    handler = handlers[model["engine"] == "onnx"]
                    parties = [
                        ("bare", tuned, "run"),
                        ("bare_as_is", as_is, "run"),
                        ("handler", handler, "run"),
                        ("json_loads", tuned, "parse"),
                    ]
                    samples: dict[str, list[dict]] = {label: [] for label, _, _ in parties}
                    for r in range(rounds):
                        shift = r % len(parties)  # each party goes first in turn
                        for label, worker, op in parties[shift:] + parties[:shift]:
                            samples[label].append(worker.ask(op=op, model=name, rows=rows, calls=calls))
                    cell = {"model": name, "label": model["label"], "engine": model["engine"], "rows": rows}
                    cell.update(rounds=rounds, calls_per_round=calls)
                    for label, got in samples.items():
                        cell[label] = {"cpu": median([g["cpu"] for g in got]), "wall": median([g["wall"] for g in got])}
                    cell["ratio_cpu"] = cell["handler"]["cpu"] / cell["bare"]["cpu"]
                    cell["ratio_wall"] = cell["handler"]["wall"] / cell["bare"]["wall"]
                    cell["ratio_cpu_as_is"] = cell["handler"]["cpu"] / cell["bare_as_is"]["cpu"]
                    cell["target"] = WARM_TARGETS[rows]
                    cell["pass"] = cell["ratio_cpu"] <= cell["target"]
                    if rows == 100:
                        mine = tuned.ask(op="outputs", model=name, rows=rows)["outputs"]
                        served_out = handler.ask(op="outputs", model=name, rows=rows)
                        cell["max_abs_diff"] = max_abs_diff(mine, served_out["outputs"])
                        cell["handler_loaded"] = served_out["loaded"]
                    results.append(cell)
                    self.note(
                        f"warm {name} {rows:,} rows: handler {cell['handler']['cpu'] * 1e3:.3f} ms CPU, bare "
                        f"{cell['bare']['cpu'] * 1e3:.3f} ms → {cell['ratio_cpu']:.2f}x"
                    )
            for label, worker in [("handler", w) for w in handlers.values()] + [("bare", tuned)]:
                self.note(f"{worker.label}: {worker.ready['peak_mb']:.0f} MB peak after warm-up ({label})")
            return results
        finally:
            for worker in workers:
                worker.stop()

    # -- 2. cold

    def _cold_env(self, slim: bool) -> dict[str, str]:
        from local.runtime import LocalLambda

        runtime = LocalLambda(
            substitutions={"MODEL_BUCKET": self.env["MODEL_BUCKET"], "ModelBucket": self.env["MODEL_BUCKET"]}
        )
        env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(runtime.environment(FUNCTION))
        # Bytecode is compiled once (the warm-up run) into a cache of our own, as the layer ships it compiled.
        env["PYTHONPYCACHEPREFIX"] = os.path.join(self.tmp, "pycache")
        return env

    def _cold_run(self, kind: str, spec: dict, env: dict[str, str]) -> dict:
        import subprocess

        spec_path = os.path.join(self.tmp, f"cold-{kind}.json")
        with open(spec_path, "w", encoding="utf-8") as handle:
            json.dump(spec, handle)
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--cold", kind, spec_path],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARK)]
        if completed.returncode != 0 or not lines:
            raise ColdFailed(f"{kind} run failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
        result = json.loads(lines[-1][len(RESULT_MARK) :])
        result["wall"] = result["done"] - started
        result["import_wall"] = result["imported"] - started
        return result

    def cold(self) -> tuple[list[dict], dict]:
        from local.lambda_events import api_event

        repeat = self.args.cold_repeat
        env_full, env_slim = self._cold_env(False), self._cold_env(True)
        empty_runs = []
        results = []
        for name in self.args.cold_list:
            model = self.models[name]
            slim = model["engine"] == "onnx"
            event_path = os.path.join(self.tmp, f"{name}-event.json")
            path = f"/models/{name}/predict"
            with open(model["paths"]["rows"], encoding="utf-8") as handle:
                body = json.dumps({"instances": json.load(handle)[:1]})
            with open(event_path, "w", encoding="utf-8") as handle:
                json.dump(api_event("POST", path, "/models/{model}/predict", {"model": name}, None, None, body), handle)
            minimal_spec = {
                "artifact": model["paths"]["joblib"],
                "row": model["first_row"],
                "object": model["object"],
                "classifier": model["classifier"],
            }
            service_spec = {"event": event_path, "slim": slim}
            note = None
            # Warm-up, not counted: compiles the bytecode cache and fills the page cache for both.
            self._cold_run("minimal", minimal_spec, env_full)
            try:
                self._cold_run("service", service_spec, env_slim if slim else env_full)
            except ColdFailed as error:
                if not slim:
                    raise
                note = f"the slim run failed, measured with scikit-learn importable: {str(error).splitlines()[-1]}"
                slim = False
                service_spec["slim"] = False
                self._cold_run("service", service_spec, env_full)
            if model["engine"] != "onnx":
                note = f"ONNX path not taken (served by scikit-learn: {model['serving_reason']})"
            env_service = env_slim if slim else env_full
            minimal, service = [], []
            for r in range(repeat):
                order = [("minimal", minimal_spec, env_full, minimal), ("service", service_spec, env_service, service)]
                for kind, spec, env, into in order if r % 2 == 0 else order[::-1]:
                    into.append(self._cold_run(kind, spec, env))
                empty_runs.append(self._cold_run("empty", {}, env_full))
            row = {"model": name, "label": model["label"], "engine": model["engine"], "slim": slim, "note": note}
            row["repeat"] = repeat
            for label, runs in (("minimal", minimal), ("service", service)):
                row[label] = {
                    key: median([run[key] for run in runs]) for key in ("wall", "cpu", "peak_mb", "import_wall")
                }
            row["service_loaded"] = service[-1].get("loaded")
            row["same_answer"] = same_answer(minimal[-1]["output"], service[-1]["output"], model["classifier"])
            for key in ("wall", "cpu", "peak_mb"):
                row[f"ratio_{key}"] = row["service"][key] / row["minimal"][key]
            row["pass_wall"] = row["ratio_wall"] <= COLD_TIME_TARGET
            row["pass_cpu"] = row["ratio_cpu"] <= COLD_TIME_TARGET
            row["pass_rss"] = row["ratio_peak_mb"] <= COLD_RSS_TARGET
            results.append(row)
            self.note(
                f"cold {name}: service {row['service']['wall']:.2f}s / {row['service']['peak_mb']:.0f} MB, minimal "
                f"{row['minimal']['wall']:.2f}s / {row['minimal']['peak_mb']:.0f} MB ({'slim' if slim else 'full'} layer)"
            )
        empty = (
            {key: median([run[key] for run in empty_runs]) for key in ("wall", "cpu", "peak_mb")} if empty_runs else {}
        )
        return results, empty

    # -- 3. batch

    def batch(self) -> dict:
        """batch_throughput.py's raw baseline and handler children, interleaved, on one file of logistic
        regression rows (model `bench`, published with its ONNX export like every other)."""
        import batch_throughput as bt
        import boto3
        from boto3.s3.transfer import TransferConfig

        from mlservice import registry

        source = self.models["logreg"]
        published = registry.publish_version(bt.MODEL, source["artifact"], source["metadata"], onnx=source["onnx"])
        registry.set_stage(bt.MODEL, "production", published["version"])
        features = [f["name"] for f in source["metadata"]["features"]]
        generator = bt.RowGenerator(features)
        warm_path = os.path.join(self.tmp, "batch-warm.csv")
        generator.write(bt.Path(warm_path), rows=200)
        path = os.path.join(self.tmp, f"batch-{self.args.batch_rows}.csv")
        count, size = generator.write(bt.Path(path), rows=self.args.batch_rows)
        s3 = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
        key = f"batch/input/{bt.MODEL}/{os.path.basename(path)}"
        s3.upload_file(path, self.env["MODEL_BUCKET"], key, Config=TransferConfig(multipart_chunksize=16 * MB))
        head = s3.head_object(Bucket=self.env["MODEL_BUCKET"], Key=key)
        obj = {"key": key, "size": head["ContentLength"], "etag": head["ETag"]}
        raw_spec = {
            "path": path,
            "out": os.path.join(self.tmp, "raw-out.csv"),
            "artifact": source["paths"]["joblib"],
            "features": len(features),
            "repeat": 1,
        }
        joined_spec = {**obj, "artifact": source["paths"]["joblib"], "features": len(features), "repeat": 1}
        handler_spec = {
            **obj,
            "chunk_rows": bt.DEFAULT_CHUNK_ROWS,
            "repeat": 1,
            "warm": warm_path,
            "server_pid": self.server.process.pid,
        }
        parties = [("raw", "raw", raw_spec), ("handler", "handler", handler_spec)]
        if not self.args.quick:
            parties.append(("raw_s3_joined", "raw_s3_joined", joined_spec))
        runs: dict[str, list[dict]] = {label: [] for label, _, _ in parties}
        try:
            for r in range(self.args.batch_rounds):
                shift = r % len(parties)
                for label, child, spec in parties[shift:] + parties[:shift]:
                    got = bt.run_child(child, spec, self.env)
                    if got["rows"] != count:
                        raise RuntimeError(f"batch {label} predicted {got['rows']:,} rows of {count:,}")
                    runs[label].append(got)
                    self.note(f"batch {label} {count:,} rows: {got['seconds']:.2f}s, {got['cpu']:.2f}s CPU")
        finally:
            s3.delete_object(Bucket=self.env["MODEL_BUCKET"], Key=key)
            os.unlink(path)
        result: dict = {"rows": count, "bytes": size, "rounds": self.args.batch_rounds, "engine": source["engine"]}
        for label, got in runs.items():
            result[label] = {
                "seconds": median([g["seconds"] for g in got]),
                "cpu": median([g["cpu"] for g in got]),
                # (no peak memory: batch_throughput's children report ru_maxrss, which starts at this parent's RSS)
            }
            result[label]["rows_per_s"] = count / result[label]["seconds"]
        raw, handler = result["raw"], result["handler"]
        result["ratio_wall"] = raw["seconds"] / handler["seconds"]
        result["ratio_cpu"] = raw["cpu"] / handler["cpu"]
        result["target"] = BATCH_TARGET
        result["pass"] = result["ratio_wall"] >= BATCH_TARGET
        if "raw_s3_joined" in result:
            result["ratio_joined_wall"] = result["raw_s3_joined"]["seconds"] / handler["seconds"]
        return result


class ColdFailed(RuntimeError):
    pass


def max_abs_diff(a: list, b: list) -> float | None:
    import numpy as np

    try:
        return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    except (TypeError, ValueError):
        return None


def same_answer(minimal: list, service: dict, classifier: bool) -> bool:
    import numpy as np

    served = service.get("probabilities") if classifier else service.get("predictions")
    if served is None:
        return False
    return bool(np.allclose(np.asarray(minimal, dtype=np.float64), np.asarray(served, dtype=np.float64), atol=1e-4))


# ---------------------------------------------------------------------------------------------- report


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.3f}" if ms < 10 else f"{ms:,.1f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(warm: list[dict], cold: list[dict], empty: dict, batch: dict | None, args: Any) -> list[str]:
    """Prints the tables; returns the summary lines."""
    summary: list[str] = []
    print(
        f"\nLoad average (1 min): {args.load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, on"
        f" {os.cpu_count()} CPUs. Ratios are service/baseline (batch: baseline time / service time, i.e. rows/s"
        " ratio); each compares figures of the same run, the calls interleaved."
    )
    if warm:
        print(
            "\n1. Warm PredictFunction (LocalLambda, API Gateway event, JSON `instances` body, after a warm-up call)"
            "\n   vs bare scikit-learn predict_proba on the already-built matrix; ms per request, medians of the"
            "\n   rounds. bare = the pipeline with the process settings the service gives itself (pandas lookup"
            "\n   short-circuited, gc frozen); as-is = the same without them; json.loads = parsing the request body"
            "\n   alone, the floor of any JSON handler. Verdict on CPU time; one BLAS thread in every process."
        )
        headers = (
            "model,engine,rows,bare CPU ms,as-is CPU ms,json.loads ms,handler CPU ms,handler/bare CPU,wall,max |Δp|,"
            "target,verdict"
        )
        rows = []
        diffs = {c["model"]: c.get("max_abs_diff") for c in warm if c["rows"] == 100}
        for c in warm:
            diff = diffs.get(c["model"])
            rows.append(
                [
                    c["model"],
                    c["engine"],
                    f"{c['rows']:,}",
                    _ms(c["bare"]["cpu"]),
                    _ms(c["bare_as_is"]["cpu"]),
                    _ms(c["json_loads"]["cpu"]),
                    _ms(c["handler"]["cpu"]),
                    f"{c['ratio_cpu']:.2f}x",
                    f"{c['ratio_wall']:.2f}x",
                    "-" if diff is None else f"{diff:.1e}",
                    f"≤ {c['target']}x",
                    _verdict(c["pass"]),
                ]
            )
        print(table(headers.split(","), rows))
        for rows_n in SIZES:
            cells = [c for c in warm if c["rows"] == rows_n]
            if cells:
                passed = sum(c["pass"] for c in cells)
                worst = max(cells, key=lambda c: c["ratio_cpu"])
                summary.append(
                    f"warm, {rows_n:,} row(s): {passed}/{len(cells)} PASS the ≤ {WARM_TARGETS[rows_n]}x target "
                    f"(worst {worst['model']} {worst['ratio_cpu']:.2f}x CPU, {worst['ratio_wall']:.2f}x wall)"
                )
    if cold:
        print(
            "\n2. Cold start in a fresh process, to the first prediction: the predict function (app.py imported, model"
            "\n   read from moto's S3 server, one request) vs a minimal script (import joblib + sklearn, load the"
            f"\n   .joblib file from local disk, predict_proba on one row); medians of {cold[0]['repeat']} runs each,"
            "\n   interleaved, bytecode compiled beforehand. mode: slim = scikit-learn, scipy and joblib unimportable"
            "\n   (PredictLayer); full = everything importable (ModelLayer)."
        )
        if empty:
            print(
                f"   An empty run of the same script (the interpreter alone): {empty['wall']:.3f} s wall, "
                f"{empty['cpu']:.3f} s CPU, {empty['peak_mb']:.0f} MB."
            )
        headers = "model,engine,mode,minimal s,service s,wall,minimal CPU s,service CPU s,CPU,minimal MB,service MB,RSS,verdict"
        rows = []
        for r in cold:
            verdicts = f"time {_verdict(r['pass_cpu'])}/{_verdict(r['pass_wall'])}, RSS {_verdict(r['pass_rss'])}"
            rows.append(
                [
                    r["model"],
                    r["engine"],
                    "slim" if r["slim"] else "full",
                    f"{r['minimal']['wall']:.3f}",
                    f"{r['service']['wall']:.3f}",
                    f"{r['ratio_wall']:.2f}x",
                    f"{r['minimal']['cpu']:.3f}",
                    f"{r['service']['cpu']:.3f}",
                    f"{r['ratio_cpu']:.2f}x",
                    f"{r['minimal']['peak_mb']:.0f}",
                    f"{r['service']['peak_mb']:.0f}",
                    f"{r['ratio_peak_mb']:.2f}x",
                    verdicts,
                ]
            )
        print(table(headers.split(","), rows))
        print(f"   verdict: time CPU/wall against ≤ {COLD_TIME_TARGET}x, RSS against ≤ {COLD_RSS_TARGET}x.")
        for r in cold:
            if r["note"]:
                print(f"   {r['model']}: {r['note']}")
            if not r["same_answer"]:
                print(f"   {r['model']}: the two first predictions differ by more than 1e-4")
        print(
            "   Outside Lambda Powertools' Tracer stays off; deployed with Tracing: Active it imports the X-Ray SDK,"
            "\n   ~0.12-0.14 s more per cold start (../shared/README.md)."
        )
        summary.append(
            f"cold: time {sum(r['pass_cpu'] for r in cold)}/{len(cold)} PASS by CPU, {sum(r['pass_wall'] for r in cold)}"
            f"/{len(cold)} by wall (≤ {COLD_TIME_TARGET}x); RSS {sum(r['pass_rss'] for r in cold)}/{len(cold)} PASS"
            f" (≤ {COLD_RSS_TARGET}x); service modes: {', '.join(sorted({'slim' if r['slim'] else 'full' for r in cold}))}"
        )
    if batch:
        print(
            f"\n3. Batch: BatchPredictFunction on an S3 put event of a {batch['rows']:,}-row CSV"
            f" ({batch['bytes'] / MB:.1f} MB; logistic regression, {batch['engine']})\n   vs batch_throughput.py's raw"
            " baseline (np.loadtxt of the local file, predict + predict_proba, np.savetxt);\n   fresh processes, the"
            f" handler warmed on a tiny file first; medians of {batch['rounds']} interleaved round(s)."
        )
        rows = []
        for label, name in (
            ("raw", "raw (numpy, local file)"),
            ("raw_s3_joined", "raw + S3, same output"),
            ("handler", "handler"),
        ):
            if label in batch:
                got = batch[label]
                rows.append(
                    [
                        name,
                        f"{got['seconds']:.2f}",
                        f"{got['rows_per_s']:,.0f}",
                        f"{got['cpu']:.2f}",
                        f"{batch['raw']['seconds'] / got['seconds']:.2f}x",
                        f"{batch['raw']['cpu'] / got['cpu']:.2f}x",
                    ]
                )
        print(table(["path", "seconds", "rows/s", "CPU s", "rows/s vs raw", "vs raw CPU"], rows))
        line = (
            f"batch: handler/raw rows/s {batch['ratio_wall']:.2f}x wall, {batch['ratio_cpu']:.2f}x CPU — "
            f"{_verdict(batch['pass'])} (≥ {BATCH_TARGET}x, by wall)"
        )
        if "ratio_joined_wall" in batch:
            line += f"; vs the same job by hand (S3 in and out, joined output) {batch['ratio_joined_wall']:.2f}x"
        summary.append(line)
    print("\nSummary")
    for line in summary:
        print(f"  {line}")
    return summary


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> Any:
    import argparse

    names = ["logreg", "forest", "boosting", "mlp", "svm", "churn"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repeats, cold start of two models")
    parser.add_argument("--models", default=",".join(names), help=f"models to measure warm (default {','.join(names)})")
    parser.add_argument("--cold-models", default=None, help="models to cold-start (default all; --quick: logreg,churn)")
    parser.add_argument(
        "--cold-repeat", type=int, default=None, help="cold runs per kind and model (default 5; quick 3)"
    )
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows of the batch file (default 100000)")
    parser.add_argument("--batch-rounds", type=int, default=None, help="interleaved batch rounds (default 3; quick 1)")
    parser.add_argument(
        "--no-onnx", action="store_true", help="publish without the ONNX exports: measure the scikit-learn path"
    )
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where the JSON results go (default {DEFAULT_OUT})")
    parser.add_argument("--tmpdir", default=None, help="where the generated files go (default: the system's temp dir)")
    args = parser.parse_args(argv)
    args.models_list = [n for n in args.models.split(",") if n]
    unknown = set(args.models_list) - set(names)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
    if args.cold_models is None:
        args.cold_models = "logreg,churn" if args.quick else ",".join(names)
    args.cold_list = [n for n in args.cold_models.split(",") if n in args.models_list]
    if args.cold_repeat is None:
        args.cold_repeat = 3 if args.quick else 5
    if args.batch_rounds is None:
        args.batch_rounds = 1 if args.quick else 3
    if "logreg" not in args.models_list:
        args.skip_batch = True
    return args


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "--cold":
        run_cold_child(argv[1], argv[2])
        return
    if len(argv) == 3 and argv[0] == "--worker":
        run_worker(argv[1], argv[2])
        return

    import shutil
    import signal
    import tempfile
    from pathlib import Path

    args = parse_args(argv)
    args.load_at_start = os.getloadavg()[0]
    for path in (BENCHMARKS, LAYER, ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)
    import batch_throughput as bt

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="serving-bench-", dir=args.tmpdir)
    server = None
    try:
        server = bt.MotoServer(Path(tmp) / "moto.log")
        server.wait_ready()
        env = bt.s3_environment(server.endpoint)
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(env)
        bench = Bench(args, tmp, server, env)
        bench.note(f"moto server on {server.endpoint} (pid {server.process.pid}); files in {tmp}")
        bench.setup()
        warm = [] if args.skip_warm else bench.warm()
        cold, empty = ([], {}) if args.skip_cold or not args.cold_list else bench.cold()
        batch = None if args.skip_batch else bench.batch()
        summary = report(warm, cold, empty, batch, args)
        results = {
            "machine": {"cpus": os.cpu_count(), "load_at_start": args.load_at_start, "load_at_end": os.getloadavg()[0]},
            "python": sys.version.split()[0],
            "quick": args.quick,
            "targets": {
                "warm_handler_over_bare": {str(k): v for k, v in WARM_TARGETS.items()},
                "cold_time": COLD_TIME_TARGET,
                "cold_rss": COLD_RSS_TARGET,
                "batch_rows_per_s": BATCH_TARGET,
            },
            "models": {
                n: {
                    "label": m["label"],
                    "engine": m["engine"],
                    "serving": m["metadata"].get("serving"),
                    "train_seconds": round(m["train_seconds"], 2),
                }
                for n, m in bench.models.items()
            },
            "warm": warm,
            "cold": cold,
            "cold_empty_interpreter": empty,
            "batch": batch,
            "summary": summary,
            "seconds": round(time.monotonic() - began, 1),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1, default=str)
        print(f"\nresults: {args.out}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"wall time: {time.monotonic() - began:.0f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
