"""Distributed hyperparameter search: how much faster the train queue's fan-out is with 8 workers than with 1, and
what the asynchronous path costs a job over a direct fit.

A search request is queued with `mlservice.training.jobs.enqueue`, as `POST /models/{model}/versions` does; its
messages are handled by worker processes that run `jobs.work`, as TrainWorkerFunction does: one "train" message
plans the search and sends one "fold" message per candidate × fold; each fold reads the data, fits one candidate
on one fold and stores its score; the last one sends "refit", which fits the best candidate on the whole training
part and publishes the version. The clock runs from the enqueue to the moment `registry.get_version` shows the
version ready (read every 0.25 s, and at once when a worker reports the message that ended the job).

    .venv/bin/python benchmarks/search.py            # breast_cancer and 200k synthetic rows: ~7 minutes on 2 cores
    .venv/bin/python benchmarks/search.py --quick    # breast_cancer only, 8 candidates × 2 folds: ~1 minute
    .venv/bin/python benchmarks/search.py --only synthetic --skip-overhead   # one search alone

What runs. One EmbeddedS3 (local/embedded_s3.py: a moto server on 127.0.0.1, in this process) serves S3 and SQS at
one endpoint, with a bucket and the train queue; MODEL_BUCKET, AWS_ENDPOINT_URL_S3/_SQS, TRAIN_QUEUE_URL and fake
credentials are set before any worker starts. Two pools of workers are spawned ("spawn" context, so each builds
its boto3 clients itself; one BLAS/OpenMP thread each): 1 worker and 8 workers. Only one pool is active at a time
(the other waits on an Event), and the two runs of a search follow each other, so both see about the same
machine. Each worker is warmed before any timing (imports, a fit of each algorithm on iris, a full train_model,
its S3 and SQS connections), as a warm Lambda would be. It receives one message at a time (VisibilityTimeout 900
s), calls `jobs.work(body, seconds_left=840, receives=ApproximateReceiveCount)`, deletes the message when that
returns and makes it visible again after 2 s when it raises (the traceback is printed).

An idle worker does not long-poll: EmbeddedS3 serialises every non-GET request, SQS's included, so a receive with
WaitTimeSeconds=1 on an empty queue holds up every S3 write and SQS send for that second (measured: a put_object
takes ~950 ms instead of ~7 ms while one client long-polls). Polling instead with short sleeps costs CPU: 8 idle
workers at 10 receives/s took 0.4 of this machine's 2 cores. So after an empty receive (WaitTimeSeconds=0) a worker
waits on a shared multiprocessing Condition, which every `storage.send_messages` of this benchmark's processes
notifies (the function is wrapped in each process; jobs.enqueue and jobs.work send through it), for at most 1 s, then
receives again: the latency of a long poll, without its cost. S3 and SQS calls are counted per message with
botocore's before-call event. A job whose queue holds no message (visible or in flight) for 10 s while it is
unfinished is reported "stuck", with what each of its messages did, its registry entry and its refit claim.

The searches (16 candidates × 3 folds each in the full run):
- breast_cancer, logistic_regression, C (8 values) × tol (2): fits of a few ms, so the queue's bookkeeping
  dominates — the worst case for a fan-out;
- breast_cancer, random_forest, n_estimators (4) × max_depth (4): fits of ~0.1-1 s;
- synthetic: 200,000 rows of 20 numeric columns (`%.4g`), one categorical of 8 levels and a yes/no label
  (logistic in 10 of the numerics and the category), uploaded once as a 29 MB CSV to `datasets/synthetic-200k.csv`
  and read through `{"s3_key": ...}`; logistic_regression, C (8 values) × tol (2). The plan reads and encodes
  the file once and stores the training part for the folds (~10 s here); a fold loads it, or reuses it when its
  worker already did, and fits in ~2.5 s; the refit reads the file again (~20 s). `--synthetic-candidates N`
  (1-8 values of C, or 16) changes the grid; `--rows` the size.

What it reports, per search and worker count:
- wall time, enqueue → ready, and its breakdown on the workers' own clocks (CLOCK_MONOTONIC is shared by all
  processes): enqueue (the call), plan (queue wait + the "train" message), fits (end of plan → end of the last
  fold), refit (→ end of the refit that published), detect (→ the poll that saw it ready);
- Σ fold seconds: the "seconds" every score record stores (getting the prepared data + fit + score of one fold),
  and the fold messages' CPU seconds; per fold, the bookkeeping around that record (reading the request, listing
  and reading every score stored so far, the registry's progress update, the SQS calls) and its S3 + SQS calls;
- speed-up = wall(1 worker) / wall(8 workers) against the ideal min(8, cores), where cores =
  len(os.sched_getaffinity(0)); efficiency = speed-up / ideal, PASS at ≥ 0.7. The fits phase alone is compared
  with its ideal too: Σ fold seconds of the 1-worker run / min(workers, cores);
- how busy the machine was meanwhile, from /proc/stat: the CPU cores busy over the run (all processes), the part
  this benchmark's processes used and of that the parent's (moto, which serves every S3 and SQS call, and the
  registry reads), the cores the hypervisor stole, and the load average before and after.

Async overhead: `trainer.train_model` of `{"algorithm": "logistic_regression", "data": {"dataset": "breast_cancer"}}`
and the same followed by `registry.publish_version` (the synchronous API's work), against the same request queued
(jobs.enqueue → ready): 3 of each, alternately, the direct ones run in the 1-worker pool's warm process (the one
that takes the queued jobs) and the medians compared. Overhead per job = queued median − train_model median, with
the queued job's parts: the enqueue call, queue wait, the worker's train_model, the rest of its message (registry
states, progress, publish) and detection. On a loaded machine the fits themselves vary more than that overhead,
so the figure without them is printed too: the median of each queued job's wall less its own train_model, next to
the synchronous path's publish_version. train_model in the parent process is shown for reference.

Results go to benchmarks/results/search.json (git-ignored). Nothing is asserted: the script exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import queue as queue_module
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before numpy is imported (the spawned workers run this too): one BLAS/OpenMP thread per process.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
# Fake credentials and region: nothing here may reach AWS.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MODEL_BUCKET": "bench-search",
    }
)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "layers" / "mlservice", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402

QUEUE_NAME = "bench-train-queue"
DATASET_KEY = "datasets/synthetic-200k.csv"
POLL_SECONDS = 0.25  # registry.get_version, for "ready" (and at once when a worker reports a finished job)
IDLE_WAIT = 1.0  # the longest an idle worker waits for a nudge before it receives again
WORKER_SECONDS_LEFT = 840.0
TARGET_EFFICIENCY = 0.7
RUN_TIMEOUT = 1800.0
STUCK_SECONDS = 10.0
OVERHEAD_BODY = {"algorithm": "logistic_regression", "data": {"dataset": "breast_cancer"}}
OVERHEAD_REPEATS = 3


# ---------------------------------------------------------------------------------------------- workers


def _warm() -> None:
    """Imports and lazily built state a warm worker has: a fold of each algorithm, one full training."""
    import warnings

    from mlservice import fields
    from mlservice.settings import get_settings
    from mlservice.training import search, trainer
    from mlservice.training.request import TrainRequest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for algorithm, hyperparameters in (("logistic_regression", {"C": 1.0}), ("random_forest", {"n_estimators": 5})):
            body = {
                "algorithm": algorithm,
                "data": {"dataset": "iris"},
                "search": {k: [v] for k, v in hyperparameters.items()},
            }
            prepared = trainer.prepare(fields.parse(TrainRequest, body), get_settings())
            search.score_fold(prepared, hyperparameters, 0, 2)
        trainer.train_model({"algorithm": "logistic_regression", "data": {"dataset": "iris"}})


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _nudge(wake: Any, sends: Any) -> None:
    """Tell idle workers that a message may be waiting (or a command, or the stop)."""
    with wake:
        sends.value += 1
        wake.notify_all()


def _wrap_send(wake: Any, sends: Any) -> None:
    """storage.send_messages, then a nudge: what an idle worker waits for instead of polling the queue."""
    from mlservice import storage

    real = storage.send_messages

    def send_and_nudge(queue_url: str, bodies: list[str]) -> None:
        real(queue_url, bodies)
        _nudge(wake, sends)

    storage.send_messages = send_and_nudge


def _count_calls() -> dict[str, int]:
    """Counts of S3 and SQS API calls made by this process (botocore's before-call event), by operation."""
    from mlservice import storage

    counts: dict[str, int] = {}

    def count(model: Any, **_: Any) -> None:
        counts[model.name] = counts.get(model.name, 0) + 1

    for client in (storage.client(), storage.sqs_client()):
        client.meta.events.register("before-call.*.*", count)
    return counts


def _direct(command: dict) -> dict:
    """trainer.train_model in this (warm worker) process, then optionally registry.publish_version: the
    synchronous path's work, to compare a queued job with."""
    from mlservice import registry
    from mlservice.audit import Actor
    from mlservice.training import trainer

    began = time.monotonic()
    trained = trainer.train_model(command["body"])
    fitted = time.monotonic()
    registry.publish_version(
        command["model"], trained.artifact, trained.metadata, token=registry.new_token(), actor=Actor("bench:search"),
        onnx=trained.onnx,
    )  # fmt: skip
    return {"event": "direct", "train_model": fitted - began, "train_model_publish": time.monotonic() - began}


def worker(
    name: str, env: dict[str, str], active: Any, stop: Any, wake: Any, sends: Any, commands: Any, reports: Any
) -> None:
    """One train worker: receive → jobs.work → delete, while its pool is active, until `stop`."""
    os.environ.update(env)
    from mlservice import storage
    from mlservice.training import jobs, trainer

    _warm()
    url = env["TRAIN_QUEUE_URL"]
    sqs = storage.sqs_client()
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    storage.client().head_bucket(Bucket=env["MODEL_BUCKET"])
    calls = _count_calls()
    _wrap_send(wake, sends)

    timing: dict[str, float] = {}
    real_train_model = trainer.train_model

    def timed_train_model(*args: Any, **kwargs: Any) -> Any:  # jobs.fit imports it at call time
        began = time.monotonic()
        try:
            return real_train_model(*args, **kwargs)
        finally:
            timing["train_model"] = timing.get("train_model", 0.0) + time.monotonic() - began

    trainer.train_model = timed_train_model
    cpu_at_ready = time.process_time()
    reports.put({"event": "ready", "worker": name, "pid": os.getpid()})
    while not stop.is_set():
        if not active.wait(0.2):
            continue
        with contextlib.suppress(queue_module.Empty):
            command = commands.get_nowait()
            trainer.train_model = real_train_model
            try:
                reports.put({**_direct(command), "worker": name})
            finally:
                trainer.train_model = timed_train_model
            continue
        seen = sends.value
        try:
            found = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0, VisibilityTimeout=900, AttributeNames=["All"]
            ).get("Messages", [])
        except Exception as error:  # the S3/SQS server stopped (the end) or failed: not a result
            if stop.is_set():
                break
            print(f"[{name}] receive_message failed: {error}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        if not found:
            with wake:
                wake.wait_for(lambda: sends.value != seen, timeout=IDLE_WAIT)  # noqa: B023
            continue
        message = found[0]
        received, start, cpu = time.time(), time.monotonic(), time.process_time()
        body = json.loads(message["Body"])
        attributes = message.get("Attributes", {})
        record: dict[str, Any] = {
            "event": "message",
            "worker": name,
            "kind": body.get("kind", "train"),
            "model": body.get("model"),
            "token": body.get("token"),
            "candidate": body.get("candidate"),
            "fold": body.get("fold"),
            "round": body.get("round"),
            "queue_wait": received - int(attributes.get("SentTimestamp", received * 1000)) / 1000,
            "receives": int(attributes.get("ApproximateReceiveCount", 1)),
            "start": start,
        }
        timing.clear()
        calls.clear()
        try:
            record["result"] = jobs.work(body, WORKER_SECONDS_LEFT, record["receives"])
        except Exception:
            record["error"] = traceback.format_exc()
            print(f"[{name}] jobs.work raised on {body}:\n{record['error']}", file=sys.stderr, flush=True)
        record.update(end=time.monotonic(), cpu=time.process_time() - cpu, train_model=timing.get("train_model"))
        record["calls"] = dict(calls)
        if "error" in record:
            with contextlib.suppress(Exception):
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=2)
        else:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        reports.put(record)
    reports.put({"event": "exit", "worker": name, "cpu": time.process_time() - cpu_at_ready, "peak_mb": _peak_mb()})


class Pool:
    """`size` spawned workers that take messages only while `activate()`d."""

    def __init__(self, ctx: Any, size: int, env: dict[str, str], shared: tuple) -> None:
        self.size, self.active, self.commands = size, ctx.Event(), ctx.Queue()
        stop, wake, sends, reports = shared
        self.processes = [
            ctx.Process(
                target=worker,
                args=(f"w{size}.{i}", env, self.active, stop, wake, sends, self.commands, reports),
                daemon=True,
            )
            for i in range(size)
        ]
        for process in self.processes:
            process.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]


# ---------------------------------------------------------------------------------------------- measurements


def _proc_stat() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds stolen by the hypervisor, monotonic time)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]  # user nice system irq softirq (guest is in user)
    return busy / hz, ticks[7] / hz, time.monotonic()


def _runqueue_wait_of(pids: list[int]) -> float:
    """Seconds these processes spent runnable but waiting for a CPU (/proc/<pid>/schedstat's second field)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/schedstat") as stat:
            total += int(stat.read().split()[1])
    return total / 1e9


def _cpu_pressure() -> float:
    """/proc/pressure/cpu's `some` total: seconds during which some task waited for a CPU (0 without PSI)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/pressure/cpu") as psi:
        return int(psi.readline().rsplit("total=", 1)[1]) / 1e6
    return 0.0


def _cpu_of(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as stat:
                parts = stat.read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
    return total / os.sysconf("SC_CLK_TCK")


class Collector:
    """Reads the workers' reports as they come."""

    def __init__(self, reports: Any) -> None:
        self.reports, self.messages, self.exits, self.directs, self.ready = reports, [], [], [], set()

    def drain(self, wait: float = 0.0) -> None:
        """Everything reported so far; with `wait`, first wait that long at most for one report."""
        while True:
            try:
                item = self.reports.get(timeout=wait) if wait else self.reports.get_nowait()
            except queue_module.Empty:
                return
            wait = 0.0
            if item["event"] == "ready":
                self.ready.add(item["worker"])
            else:
                {"exit": self.exits, "direct": self.directs}.get(item["event"], self.messages).append(item)

    def of(self, token: str) -> list[dict]:
        return [m for m in self.messages if m["token"] == token]

    def finished(self, token: str) -> bool:
        """Whether a worker reported a message of this job ending it (ready or failed)."""
        return any((m.get("result") or {}).get("status") in ("ready", "failed") for m in self.of(token))


@dataclass
class Search:
    key: str
    label: str
    body: dict[str, Any]
    candidates: int
    folds: int
    runs: dict[int, dict] = field(default_factory=dict)


def _searches(args: argparse.Namespace) -> list[Search]:
    folds = 2 if args.quick else 3
    c8 = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    bc = {"data": {"dataset": "breast_cancer"}, "cv": folds}
    if args.quick:
        lr = {"C": c8}
        rf = {"n_estimators": [50, 100, 150, 200], "max_depth": [3, None]}
    else:
        lr = {"C": c8, "tol": [1e-4, 1e-3]}
        rf = {"n_estimators": [50, 100, 150, 200], "max_depth": [2, 4, 8, None]}
    found = [
        Search(
            "bc-logreg",
            "breast_cancer logistic_regression",
            {"algorithm": "logistic_regression", **bc, "search": lr},
            0,
            folds,
        ),
        Search(
            "bc-forest", "breast_cancer random_forest", {"algorithm": "random_forest", **bc, "search": rf}, 0, folds
        ),
    ]
    if not args.quick:
        n = args.synthetic_candidates
        grid = (
            {"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0][:n]}
            if n <= 8
            else {"C": c8, "tol": [1e-4, 1e-3]}
        )
        if n > 8 and n != 16:
            raise SystemExit("--synthetic-candidates: 1 to 8, or 16")
        body = {
            "algorithm": "logistic_regression",
            "data": {"s3_key": DATASET_KEY},
            "target": "label",
            "cv": 3,
            "search": grid,
        }
        found.append(Search("synthetic", f"synthetic {args.rows // 1000}k rows logistic_regression", body, 0, 3))
    for s in found:
        s.candidates = int(np.prod([len(v) for v in s.body["search"].values()]))
    return found


def _synthetic_csv(rows: int, seed: int = 0) -> bytes:
    """20 numeric columns, a categorical `segment` of 8 levels, a yes/no `label` (logistic in 10 numerics and the
    segment)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 20))
    segment = rng.integers(0, 8, rows)
    logit = X[:, :10] @ rng.standard_normal(10) + (segment - 3.5) * 0.3
    label = np.where(logit + rng.logistic(size=rows) > 0, "yes", "no")
    out = io.StringIO()
    out.write(",".join([*(f"x{i}" for i in range(20)), "segment", "label"]) + "\n")
    numbers = np.char.mod("%.4g", X)
    for i in range(rows):
        out.write(",".join(numbers[i]) + f",s{segment[i]},{label[i]}\n")
    return out.getvalue().encode()


def _queue_empty(url: str) -> bool:
    """No message visible and none in flight (a message is deleted only after jobs.work returned)."""
    from mlservice import storage

    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = storage.sqs_client().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(int(found.get(n, 0)) == 0 for n in names)


def _wait_ready(collector: Collector, model: str, version: int, token: str, url: str, timeout: float) -> str:
    """registry.get_version until the version is ready or failed: every POLL_SECONDS, and at once when a
    worker reports a message that ended the job. "stuck" when the queue has held no message of any kind (visible
    or in flight) for STUCK_SECONDS while the job is still unfinished: nothing will ever finish it."""
    from mlservice import registry

    deadline, next_poll, checked, empty_since = time.monotonic() + timeout, 0.0, False, None
    while time.monotonic() < deadline:
        finished = collector.finished(token)
        if time.monotonic() >= next_poll or (finished and not checked):
            checked = finished
            status = registry.get_version(model, version).get("status")
            if status in (registry.READY, registry.FAILED):
                return status
            next_poll = time.monotonic() + POLL_SECONDS
            if not _queue_empty(url):
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since > STUCK_SECONDS:
                return "stuck"
        collector.drain(0.02)
    return "timeout"


def _diagnose(run: dict) -> None:
    """What the workers did with a job that did not end, and where its registry entry and refit claim stand."""
    from mlservice import keys, registry, storage

    print(f"\n  {run['model']} v{run['version']} is {run['status']}. Its messages, in the order handled:")
    for r in sorted(run["records"], key=lambda r: r["start"]):
        where = f" candidate {r['candidate']} fold {r['fold']}" if r["kind"] == "fold" else ""
        outcome = r.get("result") or {"error": (r.get("error") or "").strip().splitlines()[-1:]}
        print(
            f"    +{r['start'] - run['began']:7.2f} s  {r['worker']:<6} {r['kind']}{where} (receive #{r['receives']}): "
            f"{json.dumps(outcome)[:300]}"
        )
    for r in run["records"]:
        if r.get("error"):
            print(f"    traceback ({r['kind']}):\n" + "\n".join("      " + line for line in r["error"].splitlines()))
    with contextlib.suppress(Exception):
        print(f"    registry: {json.dumps(registry.get_version(run['model'], run['version']))}")
    with contextlib.suppress(Exception):
        claim = storage.get_json(keys.job_refit_key(run["model"], run["token"]))
        print(f"    refit claim: {claim[0] if claim else None} (now {time.time():.1f})")
    print(flush=True)


def _wait_queue_empty(collector: Collector, url: str, timeout: float = 120.0) -> None:
    """Until every message (late duplicates of refit included) is handled and deleted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _queue_empty(url):
            return
        collector.drain(0.1)
    print(f"  (the queue still held messages after {timeout:.0f} s)", flush=True)


def run_job(pool: Pool, collector: Collector, model: str, body: dict, url: str) -> dict:
    """Enqueue one job with `pool` active; wait for its version; the wall time and the workers' records."""
    from mlservice import registry, storage
    from mlservice.audit import Actor
    from mlservice.training import jobs

    pool.active.set()
    token = registry.new_token()
    pids = [os.getpid(), *pool.pids]
    load_before = os.getloadavg()[0]
    busy0, steal0, t_stat0 = _proc_stat()
    ours0, parent0 = _cpu_of(pids), _cpu_of(pids[:1])
    waited0, pressure0 = _runqueue_wait_of(pids), _cpu_pressure()
    began = time.monotonic()
    queued = jobs.enqueue(model, body, token, Actor("bench:search"))
    enqueued = time.monotonic()
    status = _wait_ready(collector, model, queued["version"], token, url, RUN_TIMEOUT)
    ready = time.monotonic()
    busy1, steal1, t_stat1 = _proc_stat()
    ours1, parent1 = _cpu_of(pids), _cpu_of(pids[:1])
    waited1, pressure1 = _runqueue_wait_of(pids), _cpu_pressure()
    load_after = os.getloadavg()[0]
    _wait_queue_empty(collector, url)
    pool.active.clear()
    collector.drain(0.2)
    from mlservice import keys

    scores = []
    for item in storage.list_keys(keys.job_scores_prefix(model, token)):
        found = storage.get_json(item["Key"])
        if found is not None:
            scores.append(found[0])
    span = t_stat1 - t_stat0
    return {
        "model": model,
        "token": token,
        "version": queued["version"],
        "status": status,
        "workers": pool.size,
        "began": began,
        "enqueue": enqueued - began,
        "ready_at": ready,
        "wall": ready - began,
        "records": collector.of(token),
        "scores": scores,
        "machine_busy_cores": (busy1 - busy0) / span,
        "benchmark_cores": (ours1 - ours0) / span,
        "parent_cores": (parent1 - parent0) / span,
        "steal_cores": (steal1 - steal0) / span,
        "runqueue_wait_processes": (waited1 - waited0) / span,
        "cpu_pressure_some": (pressure1 - pressure0) / span,
        "load_before": load_before,
        "load_after": load_after,
    }


def _phases(run: dict) -> dict:
    """The run's breakdown on the workers' clocks."""
    records, began = run["records"], run["began"]
    plans = [r for r in records if r["kind"] == "train"]
    folds = [r for r in records if r["kind"] == "fold"]
    refits = [r for r in records if r["kind"] == "refit"]
    published = [r for r in refits if (r.get("result") or {}).get("status") == "ready" and r.get("train_model")]
    plan_end = max((r["end"] for r in plans), default=began + run["enqueue"])
    folds_end = max((r["end"] for r in folds), default=plan_end)
    refit = published[0] if published else None
    refit_end = refit["end"] if refit else folds_end
    fold_seconds = [s.get("seconds", 0.0) for s in run["scores"]]
    handled = [r["end"] - r["start"] for r in folds]
    out = {
        "enqueue": run["enqueue"],
        "plan": plan_end - began - run["enqueue"],
        "fits": folds_end - plan_end,
        "refit": refit_end - folds_end,
        "refit_train_model": refit["train_model"] if refit else None,
        "detect": run["ready_at"] - refit_end,
        "fold_messages": len(folds),
        "refit_messages": len(refits),
        "errors": [r["error"] for r in records if "error" in r],
        "score_errors": [s["error"] for s in run["scores"] if "error" in s],
        "sum_fold_seconds": sum(fold_seconds),
        "sum_fold_cpu": sum(r["cpu"] for r in folds),
        "sum_fold_handled": sum(handled),
        "fold_queue_wait_median": statistics.median([r["queue_wait"] for r in folds]) if folds else None,
    }
    out["bookkeeping_per_fold"] = (out["sum_fold_handled"] - out["sum_fold_seconds"]) / max(1, len(folds))
    per_fold = [sum(r.get("calls", {}).values()) for r in folds]
    by_operation: dict[str, int] = {}
    for r in folds:
        for name, n in r.get("calls", {}).items():
            by_operation[name] = by_operation.get(name, 0) + n
    out["fold_calls"] = {"mean": float(np.mean(per_fold)) if per_fold else None, "max": max(per_fold, default=None)}
    out["fold_calls_by_operation"] = by_operation
    return out


def _overhead(pool: Pool, collector: Collector, url: str, wake: Any, sends: Any) -> dict:
    """Direct fits and queued jobs, alternately, all in the 1-worker pool's one (warm) process; and direct fits in
    this process for reference."""
    from mlservice.training import trainer

    trainer.train_model(OVERHEAD_BODY)  # untimed: imports, lazily built state
    parent = []
    for _ in range(OVERHEAD_REPEATS):
        began = time.perf_counter()
        trainer.train_model(OVERHEAD_BODY)
        parent.append(time.perf_counter() - began)
    direct, jobs_ = [], []
    pool.active.set()
    for _ in range(OVERHEAD_REPEATS):
        pool.commands.put({"body": OVERHEAD_BODY, "model": "bench-direct"})
        _nudge(wake, sends)
        count = len(collector.directs)
        deadline = time.monotonic() + 300
        while len(collector.directs) == count and time.monotonic() < deadline:
            collector.drain(0.5)
        direct.append(collector.directs[-1])
        run = run_job(pool, collector, "bench-overhead", OVERHEAD_BODY, url)
        pool.active.set()
        (record,) = [r for r in run["records"] if r["kind"] == "train"] or [None]
        jobs_.append(
            {
                "status": run["status"],
                "wall": run["wall"],
                "enqueue": run["enqueue"],
                "queue_wait": record["queue_wait"] if record else None,
                "handled": record["end"] - record["start"] if record else None,
                "train_model": record["train_model"] if record else None,
                "detect": run["ready_at"] - record["end"] if record else None,
                "calls": record.get("calls") if record else None,
            }
        )
    pool.active.clear()
    numbers = [k for k in jobs_[0] if k not in ("status", "calls")]
    med = {k: statistics.median([j[k] for j in jobs_ if j[k] is not None] or [float("nan")]) for k in numbers}
    fit = statistics.median(d["train_model"] for d in direct)
    fit_publish = statistics.median(d["train_model_publish"] for d in direct)
    return {
        "direct_train_model": [d["train_model"] for d in direct],
        "direct_train_model_publish": [d["train_model_publish"] for d in direct],
        "parent_train_model": parent,
        "async_jobs": jobs_,
        "async_median": med,
        "direct_median": fit,
        "direct_publish_median": fit_publish,
        "overhead": med["wall"] - fit,
        "overhead_vs_sync_path": med["wall"] - fit_publish,
        # The same without the fits' own variation (a loaded machine makes one fit 0.5 s and the next 1.3 s):
        # each queued job's wall less its own train_model, against each direct run's publish alone.
        "outside_the_fit": statistics.median(j["wall"] - j["train_model"] for j in jobs_ if j["train_model"]),
        "sync_outside_the_fit": statistics.median(d["train_model_publish"] - d["train_model"] for d in direct),
    }


# ---------------------------------------------------------------------------------------------- output


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="breast_cancer only, 8 candidates × 2 folds")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic dataset")
    parser.add_argument("--synthetic-candidates", type=int, default=16, help="1-8 (values of C), or 16 (C × tol)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--only", help="run only the search with this key (bc-logreg, bc-forest, synthetic)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.json")
    args = parser.parse_args(argv)

    from local.embedded_s3 import EmbeddedS3

    cpu_count, affinity = os.cpu_count(), len(os.sched_getaffinity(0))
    ideal = min(args.workers, affinity)
    started = time.monotonic()
    load_start = os.getloadavg()
    print(
        f"Cores: os.cpu_count() = {cpu_count}, sched_getaffinity = {affinity}; ideal speed-up of {args.workers} "
        f"workers over 1 = min({args.workers}, {affinity}) = {ideal}. Load average at the start: "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}.",
        flush=True,
    )
    s3 = EmbeddedS3().start()
    ctx = multiprocessing.get_context("spawn")
    stop, wake, sends, reports = ctx.Event(), ctx.Condition(), ctx.Value("q", 0, lock=False), ctx.Queue()
    pools: list[Pool] = []
    collector: Collector | None = None
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = os.environ["AWS_ENDPOINT_URL_SQS"] = s3.endpoint
        from mlservice import storage

        storage.reset_client()
        storage.client().create_bucket(Bucket=os.environ["MODEL_BUCKET"])
        url = storage.sqs_client().create_queue(QueueName=QUEUE_NAME, Attributes={"VisibilityTimeout": "900"})[
            "QueueUrl"
        ]
        os.environ["TRAIN_QUEUE_URL"] = url
        _wrap_send(wake, sends)  # jobs.enqueue's message wakes an idle worker, as a long poll would
        env = {
            name: os.environ[name]
            for name in (
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL_SQS",
                "TRAIN_QUEUE_URL",
                "MODEL_BUCKET",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION",
                "AWS_REGION",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
            )
        }
        searches = [s for s in _searches(args) if args.only in (None, s.key)]
        if any(s.key == "synthetic" for s in searches):
            began = time.monotonic()
            data = _synthetic_csv(args.rows)
            storage.client().put_object(Bucket=os.environ["MODEL_BUCKET"], Key=DATASET_KEY, Body=data)
            print(
                f"Uploaded {DATASET_KEY}: {args.rows:,} rows, {len(data) / 2**20:.1f} MB in {time.monotonic() - began:.1f} s.",
                flush=True,
            )

        collector = Collector(reports)
        began = time.monotonic()
        shared = (stop, wake, sends, reports)
        pools = [Pool(ctx, 1, env, shared), Pool(ctx, args.workers, env, shared)]
        alone, many = pools
        while len(collector.ready) < 1 + args.workers:
            collector.drain(1.0)
            if any(p.exitcode is not None for pool in pools for p in pool.processes):
                raise SystemExit("a worker died while starting (its traceback is above)")
        print(f"{1 + args.workers} workers spawned and warmed in {time.monotonic() - began:.1f} s.\n", flush=True)

        for s in searches:
            for pool in (alone, many):
                print(
                    f"  {s.label}: {s.candidates} candidates × {s.folds} folds, {pool.size} worker(s)...",
                    end=" ",
                    flush=True,
                )
                run = run_job(pool, collector, f"{s.key}-{pool.size}w", s.body, url)
                run["phases"] = _phases(run)
                s.runs[pool.size] = run
                print(
                    f"{run['status']} in {run['wall']:.1f} s (load {run['load_before']:.2f} → {run['load_after']:.2f})",
                    flush=True,
                )
                for error in run["phases"]["errors"]:
                    print(f"    worker error: {error.strip().splitlines()[-1]}", flush=True)
                if run["status"] not in ("ready", "failed"):
                    _diagnose(run)
        overhead = None
        if not args.skip_overhead:
            print("  async overhead: direct train_model ×3, then 3 queued jobs with 1 worker...", flush=True)
            overhead = _overhead(alone, collector, url, wake, sends)
        stop.set()
        for pool in pools:
            pool.active.set()
        _nudge(wake, sends)
        deadline = time.monotonic() + 30
        while len(collector.exits) < 1 + args.workers and time.monotonic() < deadline:
            collector.drain(0.5)
        load_end = os.getloadavg()
        report(args, searches, overhead, collector, cpu_count, affinity, ideal, load_start, load_end, started)
    finally:
        stop.set()
        for pool in pools:
            pool.active.set()
        with contextlib.suppress(Exception):
            _nudge(wake, sends)
        deadline = time.monotonic() + 15
        for process in (p for pool in pools for p in pool.processes):
            while process.is_alive() and time.monotonic() < deadline:
                if collector is not None:  # keep the reports pipe flowing: a worker's exit waits for it
                    with contextlib.suppress(Exception):
                        collector.drain(0.1)
                process.join(0.1)
            if process.is_alive():
                process.terminate()
                process.join(5)
        s3.stop()
    return 0


def report(
    args: argparse.Namespace,
    searches: list[Search],
    overhead: dict | None,
    collector: Collector,
    cpu_count: int | None,
    affinity: int,
    ideal: int,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
    started: float,
) -> None:
    n = args.workers
    print(
        f"\nLoad average (1 min): {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; cores: "
        f"os.cpu_count() {cpu_count}, sched_getaffinity {affinity}. Every worker one BLAS thread; S3 and SQS: one "
        "EmbeddedS3 (moto) in the parent process, which also reads the registry for the version's status.\n"
    )
    print(
        f"1. Wall time from enqueue to the version ready: 1 worker vs {n}; ideal speed-up min({n}, {affinity}) = {ideal}"
    )
    rows, summary = [], []
    for s in searches:
        one, many = s.runs.get(1), s.runs.get(n)
        if not one or not many:
            continue
        speed = one["wall"] / many["wall"]
        efficiency = speed / ideal
        fits_speed = one["phases"]["fits"] / many["phases"]["fits"] if many["phases"]["fits"] > 0 else None
        # Amdahl: the 1-worker run's serial parts (enqueue, plan, refit, detect) as they were, its fits / ideal.
        serial = one["wall"] - one["phases"]["fits"]
        ceiling = one["wall"] / (serial + one["phases"]["fits"] / ideal)
        cores_gained = many["benchmark_cores"] / one["benchmark_cores"]
        verdict = "PASS" if efficiency >= TARGET_EFFICIENCY else "MISS"
        if "ready" not in (one["status"], many["status"]) or one["status"] != many["status"]:
            verdict = f"{one['status']}/{many['status']}"
        s_summary = {
            "search": s.key,
            "label": s.label,
            "grid": f"{s.candidates}x{s.folds}",
            "wall_1": one["wall"],
            f"wall_{n}": many["wall"],
            "speedup": speed,
            "ideal": ideal,
            "efficiency": efficiency,
            "fits_speedup": fits_speed,
            "amdahl_ceiling": ceiling,
            "benchmark_cores_1": one["benchmark_cores"],
            f"benchmark_cores_{n}": many["benchmark_cores"],
            "speedup_per_core_gained": speed / cores_gained,
            "verdict": verdict,
        }
        summary.append(s_summary)
        rows.append(
            [s.label, f"{s.candidates}×{s.folds}", _s(one["wall"]), _s(many["wall"]), f"{speed:.2f}x", f"{ideal}x",
             f"{efficiency:.2f}", f"≥ {TARGET_EFFICIENCY}", verdict, _s(fits_speed, 2) + "x", f"{ceiling:.2f}x",
             f"{one['benchmark_cores']:.2f}→{many['benchmark_cores']:.2f}", f"{speed / cores_gained:.2f}"]
        )  # fmt: skip
    print(
        "   fits phase = the fits phase's own speed-up; ceiling = the best speed-up with the 1-worker run's serial parts "
        "(enqueue, plan, refit, detect) as they were (Amdahl); cores used = CPU cores this benchmark's processes got, "
        "1 worker → 8 (the rest went to other work: see 2.); speed-up / cores gained = the speed-up divided by the "
        "ratio of those: how much of the CPU the 8 workers actually got became speed."
    )
    print(
        _table(
            [
                "search",
                "grid",
                "wall 1w s",
                f"wall {n}w s",
                "speed-up",
                "ideal",
                "efficiency",
                "target",
                "verdict",
                "fits phase",
                "ceiling",
                "cores used",
                "speed-up / cores gained",
            ],
            rows,
        )
    )

    print(
        "\n2. Breakdown (seconds; workers' clocks). plan = queue wait + the train message; fits = end of plan → end of "
        "the last fold; refit = → end of the publishing refit (its train_model in brackets); detect = → the poll "
        "that saw it ready. Σfold = the seconds the score records store (data + fit + score); ideal fits "
        "= Σfold of the 1-worker run / min(workers, cores); bookkeeping = per fold message, its time outside that "
        "record; calls = S3 + SQS API calls per fold message. busy = CPU cores busy on the whole machine during the run (/proc/stat), ours = the part this "
        "benchmark's processes used, parent = the part of that the parent used (moto's S3 + SQS, the registry "
        "reads), steal = CPU the hypervisor gave to other machines; waiting = how many of this benchmark's processes "
        "were, on average, runnable but waiting for a CPU (/proc/<pid>/schedstat); psi cpu = the share of the time "
        "some task on the machine waited for a CPU (/proc/pressure/cpu)."
    )
    rows = []
    for s in searches:
        base = s.runs.get(1)
        for workers, run in sorted(s.runs.items()):
            p = run["phases"]
            ideal_fits = base["phases"]["sum_fold_seconds"] / min(workers, affinity) if base else None
            rows.append(
                [s.key, workers, _s(run["wall"]), _s(p["enqueue"], 2), _s(p["plan"], 2), _s(p["fits"]),
                 f"{_s(p['refit'])} [{_s(p['refit_train_model'])}]", _s(p["detect"], 2), _s(p["sum_fold_seconds"]),
                 _s(p["sum_fold_cpu"]), _s(ideal_fits), _s(p["fits"] / ideal_fits if ideal_fits else None, 2),
                 f"{p['bookkeeping_per_fold'] * 1000:.0f} ms", f"{_s(p['fold_calls']['mean'], 0)}/{p['fold_calls']['max']}",
                 f"{p['fold_messages']}+{p['refit_messages']}",
                 f"{run['machine_busy_cores']:.2f}", f"{run['benchmark_cores']:.2f}", f"{run['parent_cores']:.2f}",
                 f"{run['steal_cores']:.2f}", f"{run['runqueue_wait_processes']:.2f}",
                 f"{run['cpu_pressure_some'] * 100:.0f}%",
                 f"{run['load_before']:.2f}→{run['load_after']:.2f}", len(p["errors"]) + len(p["score_errors"])]
            )  # fmt: skip
    print(
        _table(
            ["search", "workers", "wall", "enqueue", "plan", "fits", "refit [fit]", "detect", "Σfold s", "Σfold CPU",
             "ideal fits", "fits/ideal", "bookkeeping", "calls mean/max", "fold+refit msgs", "busy", "ours", "parent", "steal", "waiting", "psi cpu", "load", "errors"],
            rows,
        )
    )  # fmt: skip

    if overhead:
        direct, direct_publish = overhead["direct_median"], overhead["direct_publish_median"]
        med = overhead["async_median"]
        print(
            f"\n3. Async overhead per job: breast_cancer logistic_regression, default hyperparameters; medians of "
            f"{OVERHEAD_REPEATS}. Direct fits and queued jobs alternate, all in the 1-worker pool's one warm process."
        )
        rows = [
            ["direct trainer.train_model (in the worker process)", _s(direct, 3), "", ""],
            ["direct train_model + registry.publish_version", _s(direct_publish, 3), f"+{direct_publish - direct:.3f}", ""],
            ["queued: enqueue → ready", _s(med["wall"], 3), f"+{med['wall'] - direct:.3f}", f"{med['wall'] / direct:.2f}x"],
            ["  jobs.enqueue call (parent)", _s(med["enqueue"], 3), "", ""],
            ["  queue wait (SentTimestamp → receive)", _s(med["queue_wait"], 3), "", ""],
            ["  worker: train_model inside jobs.work", _s(med["train_model"], 3), "", ""],
            ["  worker: rest of jobs.work (states, progress, publish)", _s(med["handled"] - med["train_model"], 3), "", ""],
            ["  detect (end of work → parent saw ready)", _s(med["detect"], 3), "", ""],
            ["reference: train_model in the parent (hosts moto)", _s(statistics.median(overhead["parent_train_model"]), 3), "", ""],
        ]  # fmt: skip
        print(_table(["path", "seconds", "vs direct", "ratio"], rows))
        calls = (overhead["async_jobs"][0].get("calls") or {}) if overhead["async_jobs"] else {}
        print(
            f"   overhead per job = {overhead['overhead']:.3f} s over train_model alone, "
            f"{overhead['overhead_vs_sync_path']:.3f} s over train_model + publish_version (the synchronous API's work). "
            f"The worker's S3/SQS calls for one job: {sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})."
        )
        print(
            f"   Without the fits' own variation: a queued job spends {overhead['outside_the_fit']:.3f} s outside its "
            f"train_model (median of wall − its own fit), the synchronous path {overhead['sync_outside_the_fit']:.3f} s "
            "(publish_version)."
        )

    print("\nSummary")
    print(f"  cores: os.cpu_count() {cpu_count}, sched_getaffinity {affinity}; ideal speed-up {ideal}x")
    for item in summary:
        print(
            f"  {item['label']} ({item['grid']}): 1 worker {item['wall_1']:.1f} s, {n} workers {item[f'wall_{n}']:.1f} s, "
            f"speed-up {item['speedup']:.2f}x of {ideal}x ideal, efficiency {item['efficiency']:.2f} — {item['verdict']} "
            f"(≥ {TARGET_EFFICIENCY})"
        )
    if overhead:
        print(f"  async overhead per job: {overhead['overhead']:.3f} s ({overhead['async_median']['wall']:.3f} s queued vs "
              f"{overhead['direct_median']:.3f} s direct train_model); outside the fit: {overhead['outside_the_fit']:.3f} s")  # fmt: skip
    peaks = [e["peak_mb"] for e in collector.exits]
    if peaks:
        print(f"  worker peak memory (VmHWM): max {max(peaks):.0f} MB")
    print(f"  total time {time.monotonic() - started:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "cpu_count": cpu_count,
        "sched_getaffinity": affinity,
        "ideal_speedup": ideal,
        "workers": n,
        "quick": args.quick,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "summary": summary,
        "runs": {
            s.key: {
                "label": s.label,
                "body": s.body,
                "candidates": s.candidates,
                "folds": s.folds,
                "by_workers": {str(w): run for w, run in s.runs.items()},
            }
            for s in searches
        },
        "overhead": overhead,
        "worker_exits": collector.exits,
    }
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"  results: {args.out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
