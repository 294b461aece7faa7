"""Concurrent writers on one model — train, deploy, rollback, undeploy, delete — and concurrent deliveries of one
batch job: whatever the interleaving, every registry copy anyone reads keeps the invariant (every stage serves
nothing or a ready version), nothing answers 500, version numbers are never handed out twice, and a batch
output holds every row exactly once.

Where the concurrency is. In production each concurrent request is its own Lambda process, sharing nothing but
S3. In one test process, the API handlers are module-level singletons (Powertools' resolver keeps the current
event on the app), so two requests through the same handler at once would trample each other's event — an
artefact no deployment has. So the writers race where processes really meet, in the layer's registry and batch
functions (each thread one "process"), with moto's request handling serialised as S3's is atomic
(`serialized_moto`), and one thread at a time goes through the HTTP handlers, interleaved with them.
Randomness is seeded; what is asserted does not depend on the interleaving.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import BUCKET
from faults import Store, registry_problems

from mlservice import keys, registry
from mlservice.errors import ServiceError

MODEL = "iris"
STAGES = ("production", "staging")
WRITERS, WRITES_PER_WRITER = 3, 60
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
INFER = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [v for row in ROWS for v in row]}]}
# What a concurrent change may be refused with: the version or stage it names is gone or not there yet, the
# stage has nothing to roll back to, the version is deployed — or too many writers at once (503, retry).
DOCUMENTED = {
    404: {"version_not_found", "stage_not_found", "stage_not_deployed"},
    409: {"version_in_use", "no_previous_version"},
    503: {"write_contention"},
}


@contextlib.contextmanager
def fits_in_process() -> Iterator[None]:
    """The training's fit in the calling thread instead of a forked child.

    Forking while other threads hold locks (moto's, logging's, a buffered stream's) can leave the child waiting
    forever on a lock no thread will release: a hazard of this test process, never of Lambda, which runs one
    request per process. The deadline machinery has its own tests."""
    from mlservice.training import deadline

    original = deadline.run
    deadline.run = lambda task, seconds, *, total=None: task()
    try:
        yield
    finally:
        deadline.run = original


@pytest.fixture
def race(api: Any, runtime: Any, serialized_moto: None, iris_model: tuple[bytes, dict]) -> Iterator[Any]:
    """iris v1-v3 published, production serving 1; every prediction re-reads the registry."""
    saved = dict(runtime.substitutions)
    runtime.substitutions["STAGE_CACHE_TTL_SECONDS"] = "0"
    for _ in range(3):
        registry.publish_version(MODEL, *iris_model)
    registry.set_stage(MODEL, "production", 1)
    yield api
    runtime.substitutions.clear()
    runtime.substitutions.update(saved)


def _outcome(call: Callable[[], Any]) -> tuple[int, str | None, Any]:
    """(status, error code, result) of a layer call, as the API would answer it; 500 for anything unexpected."""
    try:
        return 200, None, call()
    except ServiceError as error:
        return error.status, error.code, None
    except Exception as error:
        return 500, f"{type(error).__name__}: {error}", None


def _documented(status: int, code: str | None) -> bool:
    return status < 400 or code in DOCUMENTED.get(status, set())


def _chained(document: dict) -> list[str]:
    """A registry copy as a reader may see it mid-race: the invariant and chained histories (artifacts are
    checked at the end: a reader's object reads are not one snapshot with its registry read)."""
    problems = []
    try:
        registry.check(document)
    except RuntimeError as error:
        problems.append(str(error))
    for stage, entry in document["stages"].items():
        history = entry["history"]
        problems += [f"{stage}: {a} -> {b}" for a, b in itertools.pairwise(history) if b["from"] != a["to"]]
    return problems


def _final_problems() -> list[str]:
    """The invariants at rest, plus: a deleted version's objects are gone, and numbers are contiguous."""
    objects = Store(BUCKET).objects()
    problems = registry_problems(objects)
    document = json.loads(objects[keys.registry_key(MODEL)])
    for number, entry in document["versions"].items():
        if entry["state"] == registry.DELETED:
            for key in (keys.artifact_key(MODEL, int(number)), keys.metadata_key(MODEL, int(number))):
                if key in objects:
                    problems.append(f"v{number} is deleted but {key} remains")
    if sorted(int(v) for v in document["versions"]) != list(range(1, document["next_version"])):
        problems.append(f"version numbers not contiguous: {sorted(document['versions'])} / {document['next_version']}")
    return problems


class Recorder:
    """Every answer the race produced, by operation, and every problem a reader saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: list[tuple[str, int, str | None]] = []
        self.versions: list[int] = []  # every version number a training was given
        self.problems: list[str] = []

    def answer(self, operation: str, status: int, code: str | None) -> None:
        with self.lock:
            self.answers.append((operation, status, code))

    def undocumented(self) -> list[tuple[str, int, str | None]]:
        return [a for a in self.answers if not _documented(a[1], a[2])]


def test_concurrent_train_deploy_rollback_undeploy_delete_keep_every_registry_copy_sound(
    race: Any, aws: Any, iris_model: tuple[bytes, dict]
) -> None:
    """Three writers change the registry at random (train, deploy, rollback, undeploy, delete) while a reader
    checks every copy it can get and a client goes through the API (the same changes, real trainings,
    predictions, v2 inference). Every answer is a success or a documented refusal, never a 500; no copy ever
    shows a stage on a version that is not ready; no version number is handed out twice; at rest, every ready
    version's artifact matches its digest and every deleted version's objects are gone."""
    record = Recorder()
    done = threading.Event()

    def writer(seed: int) -> None:
        """One 'process' making random registry changes, as many concurrent Lambda invocations would."""
        rng = random.Random(seed)
        for _ in range(WRITES_PER_WRITER):
            document = registry.load(MODEL)
            known = [int(v) for v in document["versions"]]
            stage = rng.choice(STAGES)
            operation = rng.choices(["train", "deploy", "rollback", "undeploy", "delete"], [2, 4, 2, 1, 3])[0]
            call: Callable[[], Any] = {
                "train": lambda: registry.publish_version(MODEL, *iris_model)["version"],
                "deploy": functools.partial(registry.set_stage, MODEL, stage, rng.choice(known)),
                "rollback": functools.partial(registry.rollback_stage, MODEL, stage),
                "undeploy": functools.partial(registry.clear_stage, MODEL, stage),
                "delete": functools.partial(registry.delete_version, MODEL, rng.choice(known)),
            }[operation]
            status, code, result = _outcome(call)
            record.answer(operation, status, code)
            if operation == "train" and status == 200:
                with record.lock:
                    record.versions.append(result)

    def reader() -> None:
        """Reads the registry as fast as it can while the writers run; every copy must be sound."""
        while not done.is_set():
            document = json.loads(aws.get_object(Bucket=BUCKET, Key=keys.registry_key(MODEL))["Body"].read())
            problems = _chained(document)
            if problems:
                with record.lock:
                    record.problems += problems

    def client(seed: int) -> None:
        """The HTTP side, one request at a time: predictions, and every change through the API too."""
        rng = random.Random(seed)
        trainings = 0
        while not done.is_set():
            version = rng.randint(1, 12)
            stage = rng.choice(STAGES)
            headers = {"Idempotency-Key": f"k-{seed}-{rng.random()}"} if rng.random() < 0.5 else None
            operation, method, path, body = rng.choice(
                [
                    ("predict", "POST", f"/models/{MODEL}/predict", {"instances": ROWS}),
                    ("predict", "POST", f"/models/{MODEL}/predict", {"instances": ROWS}),
                    ("infer", "POST", f"/v2/models/{MODEL}/infer", INFER),
                    ("deploy", "PUT", f"/models/{MODEL}/stages/{stage}", {"version": version}),
                    ("rollback", "POST", f"/models/{MODEL}/stages/{stage}/rollback", None),
                    ("undeploy", "DELETE", f"/models/{MODEL}/stages/{stage}", None),
                    ("delete", "DELETE", f"/models/{MODEL}/versions/{version}", None),
                    ("train", "POST", f"/models/{MODEL}/versions", None),
                ]
            )
            if operation == "train":
                if trainings == 3:
                    continue
                trainings += 1
                body = {"algorithm": "naive_bayes", "data": {"dataset": "iris"}}
            response = race.request(method, path, body, headers=headers)
            code = None
            if response.status >= 400:
                error = response.json()["error"]
                code = _v2_code(response.status, error) if path.startswith("/v2/") else error["code"]
            record.answer(f"api {operation}", response.status, code)
            if operation == "train" and response.status == 201:
                with record.lock:
                    record.versions.append(response.json()["version"])

    with fits_in_process(), ThreadPoolExecutor(max_workers=5) as pool:
        background = [pool.submit(reader), pool.submit(client, 99)]
        writers = [pool.submit(writer, seed) for seed in range(WRITERS)]
        for future in writers:
            future.result()
        done.set()
        for future in background:
            future.result()

    assert record.problems == [], record.problems[:5]
    assert record.undocumented() == [], record.undocumented()[:10]
    assert len(record.versions) == len(set(record.versions)), f"a version number was handed out twice: {record.versions}"
    assert _final_problems() == []
    answered = {operation for operation, status, _ in record.answers if status < 300}
    assert {"train", "deploy", "rollback", "delete", "api predict"} <= answered, sorted(answered)


def _v2_code(status: int, message: str) -> str:
    """The Open Inference Protocol's errors carry only a message: name the documented code it stands for."""
    for code in DOCUMENTED.get(status, set()):
        if code.split("_")[0] in message:
            return code
    return message


def test_a_deploy_racing_a_delete_of_the_same_version_never_leaves_the_stage_on_a_deleted_version(
    race: Any, aws: Any, iris_model: tuple[bytes, dict]
) -> None:
    """The old bug: production left on a deleted version in 24 of 60 trials. Now exactly one of them wins each
    time: the deploy (and the delete is refused 409 version_in_use) or the delete (and the deploy is 404)."""
    outcomes = []
    for _ in range(60):
        version = registry.publish_version(MODEL, *iris_model)["version"]
        start = threading.Barrier(2)

        def deploy(v: int = version, barrier: threading.Barrier = start) -> tuple[int, str | None, Any]:
            barrier.wait()
            return _outcome(lambda: registry.set_stage(MODEL, "production", v))

        def delete(v: int = version, barrier: threading.Barrier = start) -> tuple[int, str | None, Any]:
            barrier.wait()
            return _outcome(lambda: registry.delete_version(MODEL, v))

        with ThreadPoolExecutor(max_workers=2) as pool:
            deployed, deleted = (f.result() for f in [pool.submit(deploy), pool.submit(delete)])
        document = registry.load(MODEL)
        state = document["versions"][str(version)]["state"]
        serving = document["stages"]["production"]["version"]
        outcome = (deployed[:2], deleted[:2])
        if deployed[0] == 200:
            assert deleted[:2] == (409, "version_in_use"), outcome
            assert (serving, state) == (version, registry.READY), outcome
        else:
            assert deployed[:2] == (404, "version_not_found") and deleted[0] == 200, outcome
            assert state == registry.DELETED and serving != version, outcome
        assert _chained(document) == []
        outcomes.append("deploy" if deployed[0] == 200 else "delete")
    assert _final_problems() == []
    assert outcomes.count("deploy") + outcomes.count("delete") == 60


def test_a_container_with_an_older_registry_copy_never_answers_500_for_a_version_deleted_since(
    api: Any, runtime: Any, iris_model: tuple[bytes, dict]
) -> None:
    """A warm container keeps its registry copy for STAGE_CACHE_TTL_SECONDS. When the version that copy names
    was deleted since (production moved on, then the old version was removed), a prediction must not fail with
    a 500: the copy is stale, not the store broken — it should look again (and serve the new version, or 404)."""
    saved = dict(runtime.substitutions)
    runtime.substitutions["STAGE_CACHE_TTL_SECONDS"] = "60"
    try:
        registry.publish_version(MODEL, *iris_model)
        registry.publish_version(MODEL, *iris_model)
        registry.set_stage(MODEL, "production", 1)
        registry.set_stage(MODEL, "staging", 2)
        assert api.post(f"/models/{MODEL}/predict", {"instances": ROWS}, query={"stage": "staging"}).status == 200
        assert api.put(f"/models/{MODEL}/stages/production", {"version": 2}).status == 200
        assert api.delete(f"/models/{MODEL}/versions/1").status == 204
        for path, body in [
            (f"/models/{MODEL}/predict", {"instances": ROWS}),
            (f"/v2/models/{MODEL}/infer", INFER),
        ]:
            response = api.post(path, body)
            assert response.status != 500, response.body
            assert response.status in (200, 404), response.body
    finally:
        runtime.substitutions.clear()
        runtime.substitutions.update(saved)


# ---------------------------------------------------------------- batch: the same event, twice at once


def _csv(count: int) -> bytes:
    names = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    lines = ["id," + ",".join(names)] + [f"r{i}," + ",".join(map(str, ROWS[i % 2])) for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def _ids(data: bytes) -> list[str]:
    return [line.split(",", 1)[0] for line in data.decode().splitlines()[1:]]


@pytest.fixture
def batch_model(aws: Any, serialized_moto: None, iris_model: tuple[bytes, dict]) -> Any:
    registry.publish_version(MODEL, *iris_model)
    registry.set_stage(MODEL, "production", 1)
    return aws


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; each result is a value or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.mark.parametrize("trial", range(3))
def test_an_s3_event_delivered_twice_at_once_predicts_the_file_exactly_once(batch_model: Any, trial: int) -> None:
    """S3 delivers at least once, sometimes to two invocations at the same moment: one runs the job, the other
    finds it done or meets its live lease (LeaseHeld, retried later) — never a second, interleaved output."""
    from mlservice.batch import runner
    from mlservice.batch.job import LeaseHeld

    key = f"batch/input/{MODEL}/twice-{trial}.csv"
    body = _csv(40)
    etag = batch_model.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    results = _at_once([lambda: runner.handle_object(key, etag, len(body))] * 3)
    for result in results:
        assert isinstance(result, LeaseHeld) or result["status"] in ("succeeded", "duplicate"), result
    if not any(isinstance(r, dict) and r["status"] == "succeeded" for r in results):
        # every delivery met another's lease (whose holder then failed?): Lambda's retry, after they finished
        assert runner.handle_object(key, etag, len(body))["status"] == "succeeded"
    assert runner.handle_object(key, etag, len(body))["status"] == "duplicate"
    output = batch_model.get_object(Bucket=BUCKET, Key=f"batch/output/{MODEL}/twice-{trial}.csv")["Body"].read()
    assert _ids(output) == [f"r{i}" for i in range(40)]
    manifest = json.loads(
        batch_model.get_object(Bucket=BUCKET, Key=f"batch/output/{MODEL}/twice-{trial}.csv.manifest.json")["Body"].read()
    )
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 40


@pytest.mark.parametrize("trial", range(3))
def test_every_fan_out_message_delivered_twice_at_once_assembles_the_output_exactly_once(
    batch_model: Any, trial: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS delivers at least once: every part's message handled by two workers at the same moment. Parts are
    predicted twice (identically), the assembly runs once under its lease (the other meets LeaseHeld and is
    redelivered), and the output holds every row once, in order."""
    import boto3

    from mlservice.batch import fanout, runner
    from mlservice.batch.job import LeaseHeld

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"race-{trial}")["QueueUrl"]
    body = _csv(60)
    monkeypatch.setenv("BATCH_QUEUE_URL", queue)
    monkeypatch.setenv("BATCH_FANOUT_BYTES", "100")
    monkeypatch.setenv("BATCH_PART_BYTES", str(len(body) // 3))
    key = f"batch/input/{MODEL}/fan-{trial}.csv"
    etag = batch_model.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    started = runner.handle_object(key, etag, len(body))
    assert started["status"] == "fanned_out" and started["parts"] >= 3, started
    messages = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    assert len(messages) == started["parts"]
    pending = messages * 2
    for _ in range(5):
        results = _at_once([lambda m=m: fanout.process_part(m) for m in pending])
        for result in results:
            # a part recorded; the job assembled (its manifest); or the job already finished and cleaned up
            assert isinstance(result, LeaseHeld) or result["status"] in ("part_done", "succeeded", "finished"), result
        pending = [m for m, r in zip(pending, results, strict=True) if isinstance(r, LeaseHeld)]
        if not pending:
            break
        Store(BUCKET).lapse_leases()  # the lease holder is done; SQS redelivers after the visibility timeout
    assert pending == []
    output = batch_model.get_object(Bucket=BUCKET, Key=f"batch/output/{MODEL}/fan-{trial}.csv")["Body"].read()
    assert _ids(output) == [f"r{i}" for i in range(60)]
    manifest = json.loads(
        batch_model.get_object(Bucket=BUCKET, Key=f"batch/output/{MODEL}/fan-{trial}.csv.manifest.json")["Body"].read()
    )
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 60
    assert manifest["parts"] == started["parts"]
