"""Every S3/SQS call of train, deploy, rollback, undeploy, delete, predict, v2 infer, explain, the model card (HTML
and JSON), the front page and batch prediction fails in turn — throttled, 500, timed out, reset, or applied with
its reply lost — and the service keeps its promises: no 500 ever, the registry's invariants hold after every
failure, and retrying the same request (with the same Idempotency-Key) ends in exactly the state one fault-free
run leaves. Batch jobs are also killed at every call and redelivered: the output holds every row exactly once and
the manifest says succeeded.

Asynchronous training too: the queued request (202, or 503 and a retry that queues the same one version), and
the train worker handling a training's message, and a search's plan, fold and refit messages, with a call
failing or the worker killed: SQS delivers the message again and the job ends with one ready version whose
artifact matches its recorded digest, never failed for an S3 fault. And the dataset routes (create, list,
describe with its profile, complete, delete) against a versioned bucket: 2xx or 503, a retry converges, a delete
leaves no object version behind.

How (tests/faults.py): each operation is first run fault-free at collection time, which names its calls; each
case then breaks one of them. A test id reads `<operation>-<call index>-<S3/SQS operation>:<object>-<fault>-
<mode>`, so a failure says what broke where. One moto account serves the whole module (starting moto and
creating boto3 clients per case would cost more than the cases); every case starts from the same seeded bucket
and a cold cache.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import BUCKET, Api
from faults import (
    KINDS,
    NOT_APPLIED,
    Call,
    Fault,
    Injector,
    Killed,
    Store,
    cached_moto_routes,
    instant_retries,
    registry_problems,
)
from faults import registry_shape as shape_of

from local.lambda_events import s3_put_event, sqs_event
from mlservice import keys
from mlservice.serving.model_cache import cache

# A failed invocation has no metrics to flush; Powertools says so on every one of them.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

MODEL = "iris"
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.3, 1.3]]
# A real training through the API, as small as they come (and trained once: see `trains_once`): 20 rows leave
# each class the 5 training rows (MIN_GROUP_SIZE) a published class needs.
TRAIN_BODY = {
    "algorithm": "naive_bayes",
    "data": {"columns": ["x", "y"], "rows": [[i, i % 2] for i in range(20)]},
    "target": "y",
}
V2_BODY = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": [v for r in ROWS for v in r]}]}
IDEMPOTENCY_KEY = "fault-case-1"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:batch-queue"
TRAIN_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:train-queue"
BASE_SUBSTITUTIONS = {"MODEL_BUCKET": BUCKET, "ModelBucket": BUCKET}
# Asynchronous training: the same training queued; a search as small as they come (2 candidates × 2 folds); and
# a successive halving as small: 3 candidates × 2 folds on a third of the rows, then the best one on all of them.
ASYNC_BODY = {**TRAIN_BODY, "async": True}
SEARCH_BODY = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "search": {"C": [0.1, 1.0]}, "cv": 2}
HALVING_BODY = {
    "algorithm": "logistic_regression",
    "data": {"dataset": "iris"},
    "search": {"C": [0.01, 0.1, 1.0]},
    "search_strategy": "halving",
    "cv": 2,
}
QUEUED_VERSION = 4  # the seed holds v1-v3


# ---------------------------------------------------------------- the operations under test


@dataclass(frozen=True)
class ApiOp:
    """One API request and the status a fault-free run answers with."""

    name: str
    method: str
    path: str
    body: Any
    success: int
    keyed: bool  # a mutating route: sent with an Idempotency-Key
    query: dict[str, str] | None = None
    train_queue: bool = False  # runs with a train queue (TRAIN_QUEUE_URL): asynchronous training

    @property
    def v2(self) -> bool:
        return self.path.startswith("/v2/")


# The seed: iris v1-v3 ready; production deployed 1 → 2, staging serving 3.
API_OPS = {
    op.name: op
    for op in [
        ApiOp("train", "POST", f"/models/{MODEL}/versions", TRAIN_BODY, 201, True),
        # Queued: 202 {version 4, status queued}; the worker's side is `TRAININGS` below.
        ApiOp("train_async", "POST", f"/models/{MODEL}/versions", ASYNC_BODY, 202, True, train_queue=True),
        ApiOp("deploy", "PUT", f"/models/{MODEL}/stages/production", {"version": 3}, 200, True),
        ApiOp("rollback", "POST", f"/models/{MODEL}/stages/production/rollback", None, 200, True),
        ApiOp("undeploy", "DELETE", f"/models/{MODEL}/stages/staging", None, 204, True),
        ApiOp("delete", "DELETE", f"/models/{MODEL}/versions/1", None, 204, True),
        # Erasure keeps no Idempotency-Key record (it would outlive the model): a retry after it completed
        # answers 404, since nothing is left (see `_check_same_answer`).
        ApiOp("erase", "DELETE", f"/models/{MODEL}", None, 202, False, {"undeploy": "true"}),
        ApiOp("predict", "POST", f"/models/{MODEL}/predict", {"instances": ROWS}, 200, False),
        ApiOp("infer", "POST", f"/v2/models/{MODEL}/infer", V2_BODY, 200, False),
        ApiOp("explain", "POST", f"/models/{MODEL}/explain", {"instances": ROWS}, 200, False),
        # The pages read the registry and the version's metadata directly, never from the serving cache.
        ApiOp("card", "GET", f"/models/{MODEL}/versions/1/card", None, 200, False),
        ApiOp("card_json", "GET", f"/models/{MODEL}/versions/1/card", None, 200, False, {"format": "json"}),
        ApiOp("front_page", "GET", "/", None, 200, False),
    ]
}


def _csv(count: int, bad: int) -> str:
    """`count` iris rows with ids r0..; row `bad` has a value that is not a number (a rejected row)."""
    lines = ["id," + ",".join(NAMES)]
    for i in range(count):
        values = [str(v) for v in ROWS[i % 3]]
        if i == bad:
            values[0] = "oops"
        lines.append(f"r{i}," + ",".join(values))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BatchJob:
    """One uploaded file, the environment the batch functions run with, and its rows."""

    name: str
    key: str
    body: str
    rejected: str  # the id of the row that is not a number
    environment: dict[str, str]

    @property
    def spec(self) -> keys.BatchInput:
        return keys.parse_batch_input(self.key)

    @property
    def predicted_ids(self) -> list[str]:
        """The ids the output must hold, each once, in input order."""
        return [
            line.split(",", 1)[0] for line in self.body.splitlines()[1:] if not line.startswith(self.rejected + ",")
        ]


_FANOUT_BODY = _csv(24, bad=10)
BATCH_JOBS = {
    job.name: job
    for job in [
        BatchJob("batch", f"batch/input/{MODEL}/day1/flowers.csv", _csv(6, bad=3), "r3", {}),
        # Fanned out into two SQS messages (two line-aligned ranges), the rejected row in the first.
        BatchJob(
            "fanout",
            f"batch/input/{MODEL}/big.csv",
            _FANOUT_BODY,
            "r10",
            {"BATCH_FANOUT_BYTES": "100", "BATCH_PART_BYTES": str(len(_FANOUT_BODY) // 2)},
        ),
    ]
}


# ---------------------------------------------------------------- datasets

MiB = 1024 * 1024
DATASET_BUCKET = "test-datasets"
# A small CSV a dataset's profile and a training can use: 30 rows, a numeric, a categorical and a target column.
HOUSES = (
    "rooms,city,price\n" + "".join(f"{1 + i % 5},{'oslo' if i % 2 else 'bergen'},{100 + 7 * i}\n" for i in range(30))
).encode()


@dataclass(frozen=True)
class DatasetSeed:
    """A dataset in the bucket every dataset case starts from."""

    created_at: str
    files: tuple[bytes, ...] = ()  # the versions of its file, the last one current
    multipart: bool = False  # awaiting a multipart upload whose part 1 (HOUSES) is uploaded
    profiled: bool = False


DS_GET, DS_DELETE, DS_DELETE_MULTIPART, DS_COMPLETE = (c * 32 for c in "abcd")
SEEDED_DATASETS = {
    DS_GET: DatasetSeed("2026-01-01T00:00:00.000Z", files=(HOUSES,)),  # uploaded, not profiled yet
    DS_DELETE: DatasetSeed("2026-01-02T00:00:00.000Z", files=(HOUSES[:100], HOUSES), profiled=True),
    DS_DELETE_MULTIPART: DatasetSeed("2026-01-03T00:00:00.000Z", multipart=True),
    DS_COMPLETE: DatasetSeed("2026-01-04T00:00:00.000Z", multipart=True),
}
# Datasets take no Idempotency-Key (creating twice makes two; completing and deleting are idempotent by nature).
DATASET_OPS = {
    op.name: op
    for op in [
        ApiOp(
            "dataset_create", "POST", "/datasets", {"name": "houses", "format": "csv", "bytes": len(HOUSES)}, 201, False
        ),
        # Over 5 GiB: a multipart upload is started with the record (and aborted when the record is not written).
        ApiOp("dataset_create_multipart", "POST", "/datasets", {"format": "csv", "bytes": 6 * 1024 * MiB}, 201, False),
        ApiOp("dataset_list", "GET", "/datasets", None, 200, False),
        # The first GET after the upload profiles the file and keeps profile.json (a conditional write).
        ApiOp("dataset_get", "GET", f"/datasets/{DS_GET}", None, 200, False),
        ApiOp(
            "dataset_complete",
            "POST",
            f"/datasets/{DS_COMPLETE}/complete",
            {"parts": [{"part_number": 1, "etag": hashlib.md5(HOUSES).hexdigest()}]},
            200,
            False,
        ),
        ApiOp("dataset_delete", "DELETE", f"/datasets/{DS_DELETE}", None, 204, False),
        ApiOp("dataset_delete_multipart", "DELETE", f"/datasets/{DS_DELETE_MULTIPART}", None, 204, False),
    ]
}


def _object_versions(s3: Any, prefix: str) -> list[dict]:
    """Every object version and delete marker under `prefix` in the dataset bucket, as {"Key", "VersionId"}."""
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=DATASET_BUCKET, Prefix=prefix):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    return found


# ---------------------------------------------------------------- the world every case starts from


@functools.cache
def seed_models() -> dict[str, tuple[bytes, dict]]:
    from mlservice.training.trainer import train

    return {
        "lr": train({"algorithm": "logistic_regression", "data": {"dataset": "iris"}}),
        "nb": train({"algorithm": "naive_bayes", "data": {"dataset": "iris"}}),
    }


@contextlib.contextmanager
def trains_once() -> Iterator[None]:
    """The first training of each request body in the module really trains (validation, data, fork, fit,
    holdout metrics, ONNX export); later ones with the same body get its result again, as a deterministic fit
    would. Likewise each search fold is scored once per candidate and fold.

    What these cases test is everything around the fit — the S3 calls before and after it failing — and the
    fit is the one step without any, yet ~100 ms of each of a hundred training cases. The route, the registry,
    the idempotency layer, the train worker and every S3 call still run in full, progress reports included
    (`train_model` reports the start and the end of the fit: a replay reports them too)."""
    from mlservice.training import search, trainer

    original, original_score = trainer.train_model, search.score_fold
    results: dict[str, Any] = {}
    scores: dict[str, float] = {}

    def train_model(request: Any, deadline: float | None = None, **options: Any) -> Any:
        body = json.dumps(request, sort_keys=True) if isinstance(request, dict) else repr(request)
        key = f"{body}|{options.get('budget_seconds')}"
        if key not in results:
            results[key] = original(request, deadline, **options)
            return results[key]
        progress = options.get("progress")
        if progress is not None:  # the fit's start and end, as train_model reports them
            progress(0, 1, 0.0)
            progress(1, 1, 0.0)
        return results[key]

    def score_fold(prepared: Any, hyperparameters: dict, *where: Any) -> float:  # fold, folds[, row fraction]
        key = json.dumps([prepared.digest, hyperparameters, *where], sort_keys=True)
        if key not in scores:
            scores[key] = original_score(prepared, hyperparameters, *where)
        return scores[key]

    trainer.train_model, search.score_fold = train_model, score_fold  # type: ignore[assignment]
    try:
        yield
    finally:
        trainer.train_model, search.score_fold = original, original_score  # type: ignore[assignment]


@dataclass
class JobTrace:
    """What the environment (Lambda's retries, SQS redelivery) saw while driving one batch job to its end."""

    failures: list[str] = field(default_factory=list)  # exceptions a handler raised or a worker item failed with
    kills: int = 0
    lease_held: int = 0
    invocations: int = 0
    # Train queue: each delivery's (index of its first S3/SQS call, message body), in order.
    deliveries: list[tuple[int, dict]] = field(default_factory=list)


class World:
    """One moto account for a whole module: the service's bucket seeded with a model, a fault injector, and the
    template's functions in process. `reset()` puts every case on the same start."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.api = Api(runtime)
        self.store = Store(BUCKET)
        self.faults = Injector()
        self.snapshot: dict[str, bytes] = {}
        self.s3: Any = None
        self.sqs: Any = None
        self.queue_url = ""
        self.train_queue_url = ""
        self._queues = 0

    @classmethod
    @contextlib.contextmanager
    def opened(cls, runtime: Any) -> Iterator[World]:
        import boto3
        from moto import mock_aws

        from mlservice import storage

        world = cls(runtime)
        saved = dict(runtime.substitutions)
        with mock_aws(), world.faults, instant_retries(), cached_moto_routes(), trains_once():
            storage.reset_client()
            world.s3 = boto3.client("s3", region_name="us-east-1")
            world.s3.create_bucket(Bucket=BUCKET)
            # The datasets' cases run against a bucket of their own, versioned as the template's is (so that
            # "every stored version is erased" means something); the others keep the plain, faster one.
            world.s3.create_bucket(Bucket=DATASET_BUCKET)
            world.s3.put_bucket_versioning(Bucket=DATASET_BUCKET, VersioningConfiguration={"Status": "Enabled"})
            world.sqs = boto3.client("sqs", region_name="us-east-1")
            world._seed()
            try:
                yield world
            finally:
                storage.reset_client()
                cache.clear()
                runtime.substitutions.clear()
                runtime.substitutions.update(saved)

    def _seed(self) -> None:
        from mlservice import registry

        models = seed_models()
        for name in ("lr", "nb", "lr"):
            registry.publish_version(MODEL, *models[name])
        registry.set_stage(MODEL, "production", 1)
        registry.set_stage(MODEL, "production", 2)
        registry.set_stage(MODEL, "staging", 3)
        self.snapshot = self.store.objects()

    def reset(self, environment: dict[str, str] | None = None, queue: bool = False, train_queue: bool = False) -> None:
        """The seeded bucket, a cold container (empty caches), nothing armed; a new empty batch queue and train
        queue if asked."""
        self.faults.arm(None)
        self.store.restore(self.snapshot)
        cache.clear()
        self.runtime.substitutions.clear()
        self.runtime.substitutions.update(BASE_SUBSTITUTIONS, **(environment or {}))
        if queue:
            self._queues += 1
            self.queue_url = self.sqs.create_queue(QueueName=f"batch-{self._queues}")["QueueUrl"]
            self.runtime.substitutions["BatchQueue"] = self.queue_url
        if train_queue:
            self._queues += 1
            self.train_queue_url = self.sqs.create_queue(QueueName=f"train-{self._queues}")["QueueUrl"]
            self.runtime.substitutions["TrainQueue"] = self.train_queue_url

    def restart(self) -> None:
        """After a kill: the store answers again and the next invocation runs in a new container."""
        self.faults.recover()
        cache.clear()

    # ------------------------------------------------------------ API

    def request(self, op: ApiOp) -> Any:
        headers = {"Idempotency-Key": IDEMPOTENCY_KEY} if op.keyed else None
        with self.faults.live():
            return self.api.request(op.method, op.path, op.body, headers=headers, query=op.query)

    def registry(self) -> dict:
        return self.store.json(keys.registry_key(MODEL))

    def idempotency_record(self) -> dict | None:
        """The (one) Idempotency-Key record in the bucket, if any."""
        records = [json.loads(v) for v in self.store.objects(keys.IDEMPOTENCY).values()]
        assert len(records) <= 1, records
        return records[0] if records else None

    def model_keys(self) -> set[str]:
        return set(self.store.objects(keys.versions_prefix(MODEL)))

    # ------------------------------------------------------------ asynchronous training

    def train_work(self, message: dict, trace: JobTrace) -> list[BaseException]:
        """One train-queue message through TrainWorkerFunction; the exceptions its item failed with ([] when it
        succeeded: SQS then deletes the message)."""
        trace.invocations += 1
        trace.deliveries.append((len(self.faults.calls), json.loads(message["Body"])))
        with self.faults.live():
            response = self.runtime.invoke("TrainWorkerFunction", sqs_event(message, TRAIN_QUEUE_ARN))
        if not response["batchItemFailures"]:
            return []
        processor = sys.modules["_lambda_TrainWorkerFunction"].processor
        return [info[1] for info in processor.exceptions] or [RuntimeError("item failed without an exception")]

    def queued_messages(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.train_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    # ------------------------------------------------------------ datasets

    def reset_datasets(self) -> None:
        """The seeded model bucket as for every case, the service pointed at the (versioned) dataset bucket, and
        that bucket holding exactly the seeded datasets: every object version and unfinished upload of an earlier
        case gone."""
        self.reset({"MODEL_BUCKET": DATASET_BUCKET, "ModelBucket": DATASET_BUCKET})
        s3 = self.s3
        versions = _object_versions(s3, "")
        for start in range(0, len(versions), 1000):
            s3.delete_objects(Bucket=DATASET_BUCKET, Delete={"Objects": versions[start : start + 1000], "Quiet": True})
        for upload in s3.list_multipart_uploads(Bucket=DATASET_BUCKET).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=DATASET_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        for dataset_id, seed in SEEDED_DATASETS.items():
            key = keys.dataset_object_key(dataset_id, "csv", False)
            upload: dict[str, Any] = {"method": "PUT"}
            if seed.multipart:
                upload_id = s3.create_multipart_upload(Bucket=DATASET_BUCKET, Key=key, ContentType="text/csv")[
                    "UploadId"
                ]
                s3.upload_part(Bucket=DATASET_BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=HOUSES)
                upload = {"method": "multipart", "upload_id": upload_id, "part_size": 100 * MiB, "part_count": 62}
            record = {
                "dataset_id": dataset_id,
                "name": f"seed {dataset_id[:4]}",
                "format": "csv",
                "gzip": False,
                "bytes": 6 * 1024 * MiB if seed.multipart else len(HOUSES),
                "s3_key": key,
                "created_at": seed.created_at,
                "created_by": {"principal": "seed", "request_id": None},
                "upload": upload,
            }
            s3.put_object(
                Bucket=DATASET_BUCKET, Key=keys.dataset_record_key(dataset_id), Body=json.dumps(record).encode()
            )
            for body in seed.files:  # each a version of the file, the last one current
                s3.put_object(Bucket=DATASET_BUCKET, Key=key, Body=body)
            if seed.profiled:
                profile = {"etag": hashlib.md5(seed.files[-1]).hexdigest(), "status": "uploaded", "rows": 1}
                s3.put_object(
                    Bucket=DATASET_BUCKET, Key=keys.dataset_profile_key(dataset_id), Body=json.dumps(profile).encode()
                )

    def dataset_versions(self, prefix: str = keys.DATASETS) -> list[dict]:
        """Every object version and delete marker under the prefix in the dataset bucket."""
        return _object_versions(self.s3, prefix)

    def unfinished_uploads(self, prefix: str = keys.DATASETS) -> set[str]:
        uploads = self.s3.list_multipart_uploads(Bucket=DATASET_BUCKET, Prefix=prefix).get("Uploads", [])
        return {u["UploadId"] for u in uploads}

    # ------------------------------------------------------------ batch

    def upload(self, job: BatchJob) -> dict:
        response = self.s3.put_object(Bucket=BUCKET, Key=job.key, Body=job.body.encode())
        return s3_put_event(BUCKET, job.key, len(job.body), response["ETag"])

    def any_live_lease(self) -> bool:
        return any(
            self.store.live_lease(k)
            for k in self.store.objects("batch/state/")
            if k.endswith(("/lease.json", "/assembly.json"))
        )

    def deliver(self, event: dict, trace: JobTrace) -> dict:
        trace.invocations += 1
        with self.faults.live():
            return self.runtime.invoke("BatchPredictFunction", event)["results"][0]

    def work(self, message: dict, trace: JobTrace) -> list[BaseException]:
        """One SQS message through BatchWorkerFunction; the exceptions its item failed with ([] on success)."""
        trace.invocations += 1
        with self.faults.live():
            response = self.runtime.invoke("BatchWorkerFunction", sqs_event(message, QUEUE_ARN))
        if not response["batchItemFailures"]:
            return []
        processor = sys.modules["_lambda_BatchWorkerFunction"].processor
        return [info[1] for info in processor.exceptions] or [RuntimeError("item failed without an exception")]


# ---------------------------------------------------------------- profiles: each operation run fault-free


@dataclass
class Profile:
    """A fault-free run: the calls it made (in order) and what it left behind, which every case must match."""

    calls: list[Call]
    status: int = 0
    body: Any = None
    shape: dict | None = field(default_factory=dict)
    model_keys: set[str] = field(default_factory=set)
    manifest: dict = field(default_factory=dict)
    output: bytes = b""
    errors: bytes | None = None
    invocations: int = 0
    extra: dict = field(default_factory=dict)  # trainings: the outcome and the deliveries


# Dates and times as the pages show them (ISO 8601, a day, a time of day): when the seed was published, which
# differs between the fault-free run (another bucket, seeded earlier) and the cases.
_TIMES = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?|\b\d{2}:\d{2}(?::\d{2})?\b"
)


def _timeless(value: Any) -> Any:
    if isinstance(value, str):
        return _TIMES.sub("<time>", value)
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _body(response: Any) -> Any:
    """The JSON answer, without the V2 response id (a fresh uuid per request when the client sent none); a
    page's HTML as text. A page's or card's dates and times are left out."""
    if response.headers.get("Content-Type", "").startswith("text/html"):
        return _timeless(response.body.decode("utf-8"))
    body = response.json() if response.body else None
    if isinstance(body, dict) and "model_name" in body:
        body.pop("id", None)
    if isinstance(body, dict) and "stage_history" in body and "digests" in body:  # a model card
        body = _timeless(body)
    return body


@functools.cache
def profiles() -> dict[str, Profile]:
    """Run every operation once without faults (at collection time: the calls name the parametrized cases)."""
    from local.runtime import LocalLambda

    saved = dict(os.environ)
    found: dict[str, Profile] = {}
    try:
        with World.opened(LocalLambda(substitutions=dict(BASE_SUBSTITUTIONS))) as world:
            for op in API_OPS.values():
                world.reset(train_queue=op.train_queue)
                response = world.request(op)
                assert response.status == op.success, (op, response.status, response.body)
                found[op.name] = Profile(
                    list(world.faults.calls),
                    response.status,
                    _body(response),
                    shape_of(world.registry()),
                    world.model_keys(),
                )
            for job in BATCH_JOBS.values():
                world.reset(job.environment, queue=True)
                event = world.upload(job)
                trace = _drive(world, job, event, None)
                assert (trace.failures, trace.kills, trace.lease_held) == ([], 0, 0), trace
                manifest = world.store.json(job.spec.manifest_key)
                assert manifest["status"] == "succeeded", manifest
                found[job.name] = Profile(
                    list(world.faults.calls),
                    manifest=_manifest_essentials(manifest),
                    output=world.store.get(job.spec.output_key),
                    errors=world.store.get(job.spec.errors_key),
                    invocations=trace.invocations,
                )
            for name, body in TRAININGS.items():
                world.reset(train_queue=True)
                _queue_training(world, body)
                trace = _drive_training(world)
                assert (trace.failures, trace.kills) == ([], 0), trace
                entry = world.registry()["versions"][str(QUEUED_VERSION)]
                assert entry["state"] == "ready", (name, entry)
                found[name] = Profile(
                    list(world.faults.calls),
                    shape=shape_of(world.registry()),
                    invocations=trace.invocations,
                    extra={"outcome": _training_outcome(world), "deliveries": trace.deliveries},
                )
            for op in DATASET_OPS.values():
                world.reset_datasets()
                response = world.request(op)
                assert response.status == op.success, (op, response.status, response.body)
                found[op.name] = Profile(list(world.faults.calls), response.status, _dataset_body(op, response))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return found


def _receive_all(world: World) -> Iterator[dict]:
    """Messages as the SQS event source hands them over, one at a time, until the queue is empty."""
    while True:
        messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            return
        yield messages[0]


def _manifest_essentials(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("status", "error", "model", "version", "stage", "rows", "outputs", "parts")}


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    operation: str
    fault: Fault
    call: Call | None  # the call the fault hits (None: every call)

    def __str__(self) -> str:
        where = "every" if self.call is None else f"{self.call.index:02d}-{self.call.label}"
        return f"{self.operation}-{where}-{self.fault.kind}-{self.fault.mode}"


def _api_cases() -> list[Case]:
    """Every call × every kind, failing until botocore gives up (the service sees it); the reply-lost write
    once more with botocore's retry meeting it (transient); and every call as the start of an outage — for a
    write not applied and applied — so the request's own cleanup fails too."""
    cases = []
    for name in API_OPS:
        calls = profiles()[name].calls
        for call in calls:
            cases += [Case(name, Fault(kind, call.index, "persistent"), call) for kind in KINDS]
            cases.append(Case(name, Fault("reply_lost", call.index, "transient"), call))
            cases += [Case(name, Fault(kind, call.index, "outage"), call) for kind in ("reset", "reply_lost")]
    return cases


def _every_call_cases() -> list[Case]:
    """Every call's first attempt failing at once, per operation and kind: botocore's retries absorb them all.

    Not for a lost reply on every write of a batch job: a lease write whose reply is lost is written again
    (a lease is re-taken, not recognised), so a store losing *every* first reply never lets it settle — a
    pathology, unlike one lost reply, which the per-call cases cover. Nor of a search: every message sent twice,
    each duplicate of the fold that completed a round sends the next round (or the refit) again, so the
    smallest halving search takes ~95 deliveries (converging: duplicates find their scores) where one lost
    reply, covered per call, shows the same."""
    return [
        Case(name, Fault(kind, None, "transient"), None)
        for name in [*API_OPS, *BATCH_JOBS, *TRAININGS, *DATASET_OPS]
        for kind in KINDS
        if kind in NOT_APPLIED or name not in (*BATCH_JOBS, *SEARCHES)
    ]


@functools.cache
def _batch_calls() -> dict[str, list[Call]]:
    """The calls of each batch job worth breaking: one per call site (the same place in the service's code,
    reached again for another part, fails the same way). The last occurrence in a job is kept — the last part's
    worker is the one whose retry has to assemble — and a site already broken in an earlier job is not broken
    again (the fan-out coordinator starts with the single-file run's calls)."""
    covered: set[tuple[str, ...]] = set()
    chosen: dict[str, list[Call]] = {}
    for name in BATCH_JOBS:
        calls = profiles()[name].calls
        seen = set(covered)
        kept = []
        for call in reversed(calls):
            if call.site not in seen:
                seen.add(call.site)
                kept.append(call)
        chosen[name] = kept[::-1]
        covered |= {c.site for c in calls}
    return chosen


def _batch_cases() -> list[Case]:
    """Each call site failing until botocore gives up; and each conditional write or SQS send once more with
    its reply lost and botocore's retry meeting the first attempt's effect (transient) — resending a plain put
    or delete is the same request twice, nothing to see.

    The single-file job gets every kind at every call. The fan-out job (ten times the cost per case) gets every
    kind at the first call of each S3/SQS operation — what a kind changes is how botocore and storage.py
    classify the failure, which depends on the operation, not the call site — and at the other calls the two
    outcomes the service can tell apart: not applied (reset) and, for writes, applied with the reply lost
    (for a read the two are the same)."""
    cases = []
    operations: set[str] = set()
    for name, calls in _batch_calls().items():
        for call in calls:
            if name == "batch" or call.operation not in operations:
                kinds: tuple[str, ...] = KINDS
            else:
                kinds = ("reset", "reply_lost") if call.is_write else ("reset",)
            operations.add(call.operation)
            cases += [Case(name, Fault(kind, call.index, "persistent"), call) for kind in kinds]
            if call.repeat_differs:
                cases.append(Case(name, Fault("reply_lost", call.index, "transient"), call))
    return cases


def _kill_cases() -> list[Case]:
    """Killed before each call site, and once after the last call landed (the result was never reported)."""
    cases = []
    for name, calls in _batch_calls().items():
        cases += [Case(name, Fault("reset", call.index, "kill"), call) for call in calls]
        last = profiles()[name].calls[-1]
        cases.append(Case(name, Fault("reply_lost", last.index, "kill"), last))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for argument, cases in [
        ("api_case", _api_cases),
        ("every_call_case", _every_call_cases),
        ("batch_case", _batch_cases),
        ("kill_case", _kill_cases),
        ("training_case", _training_cases),
        ("training_kill_case", _training_kill_cases),
        ("dataset_case", _dataset_cases),
    ]:
        if argument in metafunc.fixturenames:
            metafunc.parametrize(argument, cases(), ids=str)


@pytest.fixture(scope="module")
def world(runtime: Any) -> Iterator[World]:
    with World.opened(runtime) as opened:
        yield opened


# ---------------------------------------------------------------- API: checks


def _error_code(response: Any, op: ApiOp) -> str | None:
    if response.status < 400 or not response.body:
        return None
    body = response.json()
    if op.v2:  # the protocol's flat {"error": "<message>"}
        return "storage_unavailable" if "unavailable" in body.get("error", "") else body.get("error")
    return body.get("error", {}).get("code")


def _check_first_answer(op: ApiOp, response: Any, fault: Fault) -> None:
    """The faulted request answers normally (its failure absorbed) or 503 storage_unavailable with Retry-After;
    a transient fault is always absorbed; nothing is ever a 500."""
    described = f"{response.status} {response.body[:300]!r}"
    assert response.status != 500, f"500 for {op.name}: {described}"
    if fault.mode == "transient":
        assert response.status == op.success, described
        return
    assert response.status in (op.success, 503), described
    if response.status == 503:
        assert _error_code(response, op) == "storage_unavailable", described
        assert int(response.headers.get("Retry-After", "0")) > 0, response.headers


def _retry_until_answered(world: World, op: ApiOp) -> Any:
    """The client's retry of the same request (same Idempotency-Key), the store healthy again. A 409
    idempotency_key_in_progress means the first attempt's record is still marked running: the client retries
    after Retry-After, which succeeds once that invocation's deadline has passed (`lapse_in_progress_records`)."""
    for _ in range(3):
        response = world.request(op)
        if response.status == 409 and _error_code(response, op) == "idempotency_key_in_progress":
            assert int(response.headers.get("Retry-After", "0")) > 0
            assert world.store.lapse_in_progress_records() == 1
            continue
        return response
    pytest.fail(f"the retry of {op.name} was still refused as in progress after the first invocation ended")


def _check_same_answer(op: ApiOp, response: Any, expected: Profile, first: Any) -> None:
    if op.name == "erase":
        if first.status == op.success:  # it erased everything: nothing is left to find
            assert response.status == 404 and _error_code(response, op) == "model_not_found", response.body
        elif response.status == 202:  # the retry finishes what the failed attempt began
            assert response.json()["status"] == "erased", response.body
        else:  # the failed attempt had in fact finished (its last reply was lost): nothing is left
            assert response.status == 404 and _error_code(response, op) == "model_not_found", response.body
        return
    assert response.status == op.success, f"{response.status} {response.body[:300]!r}"
    if op.name == "train":  # retrained models may differ in their bytes; the version must not
        body = response.json()
        assert (body["name"], body["version"], body["algorithm"]) == (MODEL, expected.body["version"], "naive_bayes")
    else:
        assert _body(response) == expected.body


def _check_state(world: World, expected: Profile) -> None:
    """The registry as one fault-free run leaves it (versions, states, stages, stacks, histories), exactly the
    version objects it leaves, and the invariants."""
    assert registry_problems(world.store.objects()) == []
    assert shape_of(world.registry()) == expected.shape
    assert world.model_keys() == expected.model_keys
    if expected.shape is None:  # erased: nothing of the model anywhere
        prefixes = tuple(keys.erasure_prefixes(MODEL).values())
        assert [k for k in world.store.objects() if k.startswith(prefixes)] == []


def _faulted_request(world: World, op: Any, case: Case, expected: Profile) -> tuple[Any, list]:
    """The request with the case's fault armed: its answer and the calls the fault hit (checked to be the
    case's call, or at least every call of the profile when the case fails them all)."""
    world.faults.arm(case.fault)
    first = world.request(op)
    fired = list(world.faults.fired)
    world.faults.recover()
    if case.call is None:
        assert len(fired) >= len(expected.calls), [c.label for c in fired]
    else:
        assert fired and fired[0].label == case.call.label, f"the fault hit {fired}, not {case.call}"
    return first, fired


def _run_api_case(world: World, case: Case) -> None:
    op, expected = API_OPS[case.operation], profiles()[case.operation]
    world.reset(train_queue=op.train_queue)
    first, _ = _faulted_request(world, op, case, expected)
    _check_first_answer(op, first, case.fault)
    assert registry_problems(world.store.objects()) == [], "after the faulted request"
    record = world.idempotency_record()
    if first.status == op.success and case.fault.mode != "outage" and op.keyed:
        # One failed call — not an outage that leaves nothing writable — must not leave a finished request
        # marked running: its retries would be refused 409 idempotency_key_in_progress until the invocation's
        # timeout (29 s, 60 s for training) although nothing runs any more.
        assert record is None or record["status"] != "INPROGRESS", (
            "the request succeeded but its Idempotency-Key record still says INPROGRESS"
        )

    again = _retry_until_answered(world, op)
    _check_same_answer(op, again, expected, first)
    if first.status == op.success and op.name != "erase":
        assert _body(again) == _body(first), "the retry of a request that succeeded answers what it answered"
        if record is not None and record["status"] == "COMPLETED":
            assert again.headers.get("Idempotent-Replayed") == "true"
    _check_state(world, expected)
    if op.train_queue:
        _check_queued_training(world)


def test_a_failed_s3_call_never_breaks_the_registry_and_a_retry_completes_the_request(
    world: World, api_case: Case
) -> None:
    _run_api_case(world, api_case)


def test_every_call_failing_once_is_absorbed_by_retries(world: World, every_call_case: Case) -> None:
    """botocore's standard retries cover throttling, 500s, timeouts, resets and a lost reply on every call of
    every operation: the caller gets the normal answer and the state one fault-free run leaves."""
    if every_call_case.operation in API_OPS:
        _run_api_case(world, every_call_case)
    elif every_call_case.operation in DATASET_OPS:
        _run_dataset_case(world, every_call_case)
    elif every_call_case.operation in TRAININGS:
        _run_training_case(world, every_call_case)
    else:
        _run_batch_case(world, every_call_case)


# ---------------------------------------------------------------- batch


def _read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _check_outputs_sound(world: World, job: BatchJob, expected: Profile | None) -> None:
    """At any moment: the output is absent or complete (it is written whole), and a manifest, once written, is
    the successful one — a storage failure never records the file as failed."""
    if expected is None:
        return
    output = world.store.get(job.spec.output_key)
    assert output is None or output == expected.output, "a partial or different output is visible"
    manifest = world.store.json(job.spec.manifest_key)
    assert manifest is None or _manifest_essentials(manifest) == expected.manifest, manifest


def _drive(world: World, job: BatchJob, event: dict, expected: Profile | None) -> JobTrace:
    """Deliver the S3 event and the SQS messages as Lambda and the event source mapping would, until the job
    has no event left to retry and no message left in the queue.

    A handler that raises is retried (Lambda's async retries, after the workers have drained what was queued);
    a worker whose item failed has its message redelivered (its visibility timeout passing). A LeaseHeld is
    retried once the lease lapsed: Lambda's retry comes a minute later, a lease lasts BATCH_LEASE_SECONDS."""
    trace = JobTrace()
    event_pending = True
    for _ in range(8):
        if event_pending:
            event_pending = not _deliver_once(world, job, event, trace)
            _check_outputs_sound(world, job, expected)
        for message in _receive_all(world):
            done = _work_once(world, job, message, trace)
            _check_outputs_sound(world, job, expected)
            if done:
                world.sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                world.sqs.change_message_visibility(
                    QueueUrl=world.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            assert trace.invocations < 40, f"the job does not converge: {trace}"
        if not event_pending:
            return trace
    pytest.fail(f"the S3 event was never handled: {trace}")


def _live_lease(world: World, name: str) -> bool:
    return any(world.store.live_lease(k) for k in world.store.objects("batch/state/") if k.endswith("/" + name))


def _deliver_once(world: World, job: BatchJob, event: dict, trace: JobTrace) -> bool:
    """One delivery of the S3 event; True when the handler returned (the event is done with)."""
    from mlservice.batch.job import LeaseHeld

    lease_was_live = world.any_live_lease()
    try:
        world.deliver(event, trace)
        return True
    except Killed:
        trace.kills += 1
        world.restart()
        return _duplicate_event_after_a_kill(world, job, event, trace)
    except LeaseHeld:
        assert lease_was_live, "LeaseHeld although no live lease existed"
        trace.lease_held += 1
        world.store.lapse_leases()
        return False
    except Exception as error:  # the invocation failed: Lambda retries the event
        trace.failures.append(f"{type(error).__name__}: {error}")
        return False


def _duplicate_event_after_a_kill(world: World, job: BatchJob, event: dict, trace: JobTrace) -> bool:
    """The dead run's event, delivered again at once (S3 delivers at least once): while the dead run's lease is
    live and the job unfinished it must raise LeaseHeld — never report a success that predicted nothing, never
    run beside the other run; a finished job is a duplicate. Then the lease lapses. True when handled."""
    from mlservice.batch.job import LeaseHeld

    done = world.store.get(job.spec.manifest_key) is not None
    held = _live_lease(world, "lease.json")
    if done or held:
        try:
            outcome = world.deliver(event, trace)["status"]
        except LeaseHeld:
            outcome = "lease_held"
            trace.lease_held += 1
        expected = "duplicate" if done else "lease_held"
        assert outcome == expected, f"a duplicate delivery right after a kill: {outcome}, expected {expected}"
        if outcome == "duplicate":
            return True
    world.store.lapse_leases()
    return False


def _work_once(world: World, job: BatchJob, message: dict, trace: JobTrace) -> bool:
    """One delivery of an SQS message to a worker; True when its item succeeded (the message is deleted)."""
    from mlservice.batch.job import LeaseHeld

    lease_was_live = world.any_live_lease()
    try:
        failures = world.work(message, trace)
    except Killed:
        trace.kills += 1
        world.restart()
        _duplicate_message_after_a_kill(world, job, message, trace)
        return False  # the killed delivery's message comes back after its visibility timeout
    for error in failures:
        if isinstance(error, LeaseHeld):
            assert lease_was_live, "LeaseHeld although no live lease existed"
            trace.lease_held += 1
            world.store.lapse_leases()
        else:
            trace.failures.append(f"{type(error).__name__}: {error}")
    return not failures


def _duplicate_message_after_a_kill(world: World, job: BatchJob, message: dict, trace: JobTrace) -> None:
    """The dead worker's message, delivered again at once: parts may be predicted twice (harmlessly), but while
    the dead run's assembly lease is live and the job unfinished the duplicate must fail with LeaseHeld."""
    from mlservice.batch.job import LeaseHeld

    if _live_lease(world, "assembly.json") and world.store.get(job.spec.manifest_key) is None:
        errors = world.work(message, trace)
        assert errors and all(isinstance(e, LeaseHeld) for e in errors), (
            f"a duplicate assembled beside a live run: {errors}"
        )
        trace.lease_held += 1
    world.store.lapse_leases()


def _check_job_result(world: World, job: BatchJob, expected: Profile) -> None:
    """Every input row exactly once, in order, with the predictions of a fault-free run; the manifest says
    succeeded; the rejected row is reported once."""
    manifest = world.store.json(job.spec.manifest_key)
    assert manifest is not None, "no manifest: the job never finished"
    assert _manifest_essentials(manifest) == expected.manifest
    output = world.store.get(job.spec.output_key)
    assert [row["id"] for row in _read_csv(output)] == job.predicted_ids, "a row lost or doubled"
    assert output == expected.output
    assert world.store.get(job.spec.errors_key) == expected.errors
    assert registry_problems(world.store.objects()) == []


def _run_batch_case(world: World, case: Case) -> JobTrace:
    job, expected = BATCH_JOBS[case.operation], profiles()[case.operation]
    world.reset(job.environment, queue=True)
    event = world.upload(job)
    world.faults.arm(case.fault)
    trace = _drive(world, job, event, expected)
    if case.call is None:
        assert len(world.faults.fired) >= len(expected.calls)
    else:
        assert world.faults.fired and world.faults.fired[0].label == case.call.label, world.faults.fired
    _check_job_result(world, job, expected)
    if case.fault.mode == "transient":
        assert (trace.failures, trace.kills, trace.lease_held) == ([], 0, 0), trace
    unexpected = [f for f in trace.failures if not f.startswith("StorageUnavailable")]
    assert unexpected == [], f"a storage failure surfaced as something else than StorageUnavailable: {unexpected}"
    return trace


def test_a_failed_call_in_a_batch_job_still_yields_every_row_exactly_once(world: World, batch_case: Case) -> None:
    trace = _run_batch_case(world, batch_case)
    if batch_case.fault.mode == "persistent":
        assert trace.kills == 0


def test_a_batch_run_killed_at_any_point_is_taken_over_and_yields_every_row_exactly_once(
    world: World, kill_case: Case
) -> None:
    trace = _run_batch_case(world, kill_case)
    assert trace.kills == 1, trace


# ---------------------------------------------------------------- asynchronous training: the train worker

# The trainings the worker cases drive, each queued through the API (with IDEMPOTENCY_KEY) before the case arms
# its fault: one "train" message; a search, one "train" message that fans out 2 × 2 "fold" messages, the last of
# which queues the "refit"; and a halving search, whose round-0 folds (3 × 2) end with one queueing round 1's (1 × 2).
TRAININGS = {"worker_train": ASYNC_BODY, "worker_search": SEARCH_BODY, "worker_halving": HALVING_BODY}
SEARCHES = ("worker_search", "worker_halving")


def _queue_training(world: World, body: dict) -> None:
    response = world.api.post(f"/models/{MODEL}/versions", body, headers={"Idempotency-Key": IDEMPOTENCY_KEY})
    assert response.status == 202 and response.json()["version"] == QUEUED_VERSION, response.body


def _drive_training(world: World, trace: JobTrace | None = None, limit: int = 60) -> JobTrace:
    """Deliver the train queue's messages (and those they queue) to the worker one at a time, as the event source
    mapping would, until the queue is empty. A delivery whose item failed, or whose worker was killed, is
    delivered again after the queue's visibility timeout (5400 s): by then the store answers again (an outage is
    over) and a refit claim the failed delivery left behind has lapsed."""
    trace = trace or JobTrace()
    while True:
        received = world.sqs.receive_message(
            QueueUrl=world.train_queue_url, MaxNumberOfMessages=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not received:
            return trace
        message = received[0]
        if _train_once(world, message, trace):
            world.sqs.delete_message(QueueUrl=world.train_queue_url, ReceiptHandle=message["ReceiptHandle"])
        else:
            world.restart()
            world.store.lapse_refit_claims()
            world.sqs.change_message_visibility(
                QueueUrl=world.train_queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        assert trace.invocations < limit, f"the training does not converge: {trace}"


def _train_once(world: World, message: dict, trace: JobTrace) -> bool:
    """One delivery of a train-queue message; True when its item succeeded (the message is deleted)."""
    try:
        failures = world.train_work(message, trace)
    except Killed:
        trace.kills += 1
        return False
    trace.failures += [f"{type(error).__name__}: {error}" for error in failures]
    return not failures


def _training_outcome(world: World) -> dict:
    """What a finished training leaves that must not depend on the faults on its way: the search's summary (every
    candidate's fold scores, mean, best), the stored scores (one object per candidate × fold) and the refitted
    hyperparameters."""
    token = world.registry()["versions"][str(QUEUED_VERSION)]["token"]
    metadata = world.store.json(keys.metadata_key(MODEL, QUEUED_VERSION)) or {}
    scores = {
        key.rsplit("/", 1)[1]: {k: v for k, v in json.loads(data).items() if k != "seconds"}
        for key, data in world.store.objects(keys.job_scores_prefix(MODEL, token)).items()
    }
    return {"search": metadata.get("search"), "scores": scores, "hyperparameters": metadata.get("hyperparameters")}


def _check_training(world: World, expected: Profile, trace: JobTrace) -> None:
    """The queue drained and the job's version ready — never failed for an S3 fault, never a second version —
    with an artifact whose digest is the one the registry recorded, and the outcome a fault-free run has. A
    failed delivery failed with StorageUnavailable (the worker raised: SQS delivered it again), nothing else. A
    duplicate of the first message, delivered once it is all done, changes nothing."""
    from mlservice import registry

    assert world.queued_messages() == 0
    document = world.registry()
    entry = document["versions"][str(QUEUED_VERSION)]
    assert entry["state"] == registry.READY, (
        f"the queue is empty and the job is {entry['state']} ({entry.get('job')}): it will never finish; {trace}"
    )
    assert registry_problems(world.store.objects()) == []
    assert shape_of(document) == expected.shape
    registry.load_verified_artifact(MODEL, QUEUED_VERSION, entry)  # IntegrityError unless the digest matches
    if "onnx_sha256" in entry:
        registry.load_verified_artifact(MODEL, QUEUED_VERSION, entry, onnx=True)
    assert _training_outcome(world) == expected.extra["outcome"]
    unexpected = [f for f in trace.failures if not f.startswith("StorageUnavailable")]
    assert unexpected == [], f"a storage failure surfaced as something else than StorageUnavailable: {unexpected}"

    before = world.store.objects(keys.MODELS)
    body = json.dumps(trace.deliveries[0][1])
    duplicate = {"MessageId": "duplicate", "ReceiptHandle": "duplicate", "Body": body, "MD5OfBody": "-"}
    assert world.train_work(duplicate, trace) == []
    assert world.store.objects(keys.MODELS) == before, "a duplicate of a finished job's message changed something"


def _check_queued_training(world: World) -> None:
    """After an asynchronous train request and its retry: one version queued for the request, at least one
    message on the queue naming its job, and the worker, handed every message (duplicates included), publishes
    that one version."""
    document = world.registry()
    queued = [n for n, e in document["versions"].items() if e["state"] == "queued"]
    assert queued == [str(QUEUED_VERSION)], document["versions"]
    token = document["versions"][queued[0]]["token"]
    assert world.queued_messages() >= 1, "the request answered 202 but nothing is on the train queue"
    trace = _drive_training(world)
    assert {json.dumps(body, sort_keys=True) for _, body in trace.deliveries} == {
        json.dumps({"kind": "train", "model": MODEL, "token": token}, sort_keys=True)
    }
    assert (trace.failures, trace.kills) == ([], 0), trace
    _check_training(world, profiles()["worker_train"], trace)


def _message_kind(expected: Profile, call: Call) -> str:
    """Which message's delivery made the call: train, fold or refit."""
    kind = "train"
    for start, body in expected.extra["deliveries"]:
        if start > call.index:
            break
        kind = body.get("kind", "train")
    return kind


@functools.cache
def _training_calls() -> dict[str, list[Call]]:
    """The calls of each training worth breaking: every call of the single training; for the searches, one per
    message kind and call site (the same place in the service's code reached again for another fold fails the
    same way), the last occurrence — the last fold is the one that queues the refit (or the next round) — and
    not a site the grid search already broke (the halving search adds the fold that queues the next round)."""
    chosen = {"worker_train": profiles()["worker_train"].calls}
    covered: set[tuple[str, tuple[str, ...]]] = set()
    for name in SEARCHES:
        expected = profiles()[name]
        seen = set(covered)
        kept = []
        for call in reversed(expected.calls):
            where = (_message_kind(expected, call), call.site)
            if where not in seen:
                seen.add(where)
                kept.append(call)
        chosen[name] = kept[::-1]
        covered |= {(_message_kind(expected, call), call.site) for call in expected.calls}
    return chosen


def _training_cases() -> list[Case]:
    """Kinds are sampled, as the fan-out batch job's are: what a kind changes is how botocore and storage.py
    classify the failure (throttle and server_error are the same retried ClientError, timeout and reset the same
    connection error), not what the worker does with it. The single training gets one of each class at every
    call, failing until botocore gives up — throttle, timeout, and reply_lost (applied) — and every call as the
    start of an outage; the search, at each (message kind, call site), reset (not applied) and, for writes,
    reply_lost. Both get a lost reply that botocore's retry meets (transient) at each conditional write and send."""
    cases = []
    for name, calls in _training_calls().items():
        for call in calls:
            if name == "worker_train":
                kinds: tuple[str, ...] = ("throttle", "timeout", "reply_lost")
            else:
                kinds = ("reset", "reply_lost") if call.is_write else ("reset",)
            cases += [Case(name, Fault(kind, call.index, "persistent"), call) for kind in kinds]
            if call.repeat_differs:
                cases.append(Case(name, Fault("reply_lost", call.index, "transient"), call))
            if name == "worker_train":
                cases.append(Case(name, Fault("reset", call.index, "outage"), call))
    return cases


def _training_kill_cases() -> list[Case]:
    """The worker killed (its Lambda timed out, ran out of memory) before its first call, before each write or
    send — killed before a read, it leaves the store as killed before the next write does, and the redelivery
    sees nothing else — and once after the last call landed (the result never reported: the message comes
    again)."""
    cases = []
    for name, calls in _training_calls().items():
        cases += [Case(name, Fault("reset", c.index, "kill"), c) for c in calls if c.is_write or c.index == 0]
        last = profiles()[name].calls[-1]
        cases.append(Case(name, Fault("reply_lost", last.index, "kill"), last))
    return cases


def _run_training_case(world: World, case: Case) -> JobTrace:
    expected = profiles()[case.operation]
    world.reset(train_queue=True)
    _queue_training(world, TRAININGS[case.operation])
    world.faults.arm(case.fault)
    trace = _drive_training(world)
    if case.call is None:
        assert len(world.faults.fired) >= len(expected.calls)
    else:
        assert world.faults.fired and world.faults.fired[0].label == case.call.label, world.faults.fired
    _check_training(world, expected, trace)
    if case.fault.mode == "transient":
        assert (trace.failures, trace.kills) == ([], 0), trace
    return trace


def test_a_failed_call_in_a_queued_training_is_redelivered_and_publishes_one_verified_version(
    world: World, training_case: Case
) -> None:
    trace = _run_training_case(world, training_case)
    if training_case.fault.mode == "persistent":
        assert trace.kills == 0 and len(trace.failures) <= 1, trace


def test_a_training_worker_killed_at_any_point_is_redelivered_and_publishes_one_verified_version(
    world: World, training_kill_case: Case
) -> None:
    trace = _run_training_case(world, training_kill_case)
    assert trace.kills == 1 and trace.failures == [], trace


# ---------------------------------------------------------------- datasets


def _dataset_body(op: ApiOp, response: Any) -> Any:
    """What must be the same in every run: not a new dataset's id (nor its URLs), not when a profile was made
    nor how long it took."""
    if op.name.startswith("dataset_create"):
        return None
    body = _body(response)
    if isinstance(body, dict):
        body.pop("profiled_at", None)
        body.pop("profile_seconds", None)
    return body


# Sent again after it was applied, these differ from sending them once although they are not conditional: a
# second upload is started, an upload already completed or aborted is no longer there, a version already deleted.
_RESENT_DIFFERS = ("CreateMultipartUpload", "CompleteMultipartUpload", "AbortMultipartUpload", "DeleteObjects")


def _dataset_cases() -> list[Case]:
    """One call per call site and operation (the last occurrence: delete's second listing, after the versions
    went; the listing's parallel record reads are one), failing until botocore gives up: every kind at the first
    call of each S3 operation, elsewhere not applied (reset) and, for writes, applied with the reply lost — what
    a kind changes is how botocore and storage.py classify the failure, which depends on the S3 operation, not the
    route (as for the fan-out batch job). A lost reply that botocore's retry meets, where resending differs. Each
    call as the start of an outage: not applied, and for a write applied."""
    cases = []
    operations: set[str] = set()
    for name in DATASET_OPS:
        calls = profiles()[name].calls
        last = {call.site: call for call in calls}
        for call in [c for c in calls if last[c.site] is c]:
            if call.operation not in operations:
                kinds: tuple[str, ...] = KINDS
            else:
                kinds = ("reset", "reply_lost") if call.is_write else ("reset",)
            operations.add(call.operation)
            cases += [Case(name, Fault(kind, call.index, "persistent"), call) for kind in kinds]
            if call.repeat_differs or call.operation in _RESENT_DIFFERS:
                cases.append(Case(name, Fault("reply_lost", call.index, "transient"), call))
            outages = ("reset", "reply_lost") if call.is_write else ("reset",)
            cases += [Case(name, Fault(kind, call.index, "outage"), call) for kind in outages]
    return cases


def _run_dataset_case(world: World, case: Case) -> None:
    op, expected = DATASET_OPS[case.operation], profiles()[case.operation]
    world.reset_datasets()
    untouched = {k for k in SEEDED_DATASETS if k not in op.path}
    before = [v for v in world.dataset_versions() if keys.dataset_id_from_key(v["Key"]) in untouched]
    first, fired = _faulted_request(world, op, case, expected)
    _check_first_answer(op, first, case.fault)
    again = world.request(op)  # the client's retry, the store healthy again
    if op.name.startswith("dataset_create"):
        _check_created(world, op, case, fired, first, again)
    elif op.name.startswith("dataset_delete"):
        _check_deleted(world, op, first, again)
    else:
        assert again.status == op.success, f"{again.status} {again.body[:300]!r}"
        assert _dataset_body(op, again) == expected.body
        if first.status == op.success:
            assert _dataset_body(op, first) == expected.body
    if op.name == "dataset_get":
        # The profile is kept, keyed to the file: a GET after one that answered does not profile again.
        profile = json.loads(
            world.s3.get_object(Bucket=DATASET_BUCKET, Key=keys.dataset_profile_key(DS_GET))["Body"].read()
        )
        assert profile["etag"] == hashlib.md5(HOUSES).hexdigest()
        assert again.json()["profiled_at"] == profile["profiled_at"]
        if first.status == op.success:
            assert first.json()["profiled_at"] == profile["profiled_at"], "a profile that was answered was not kept"
    if op.name == "dataset_complete":
        key = keys.dataset_object_key(DS_COMPLETE, "csv", False)
        assert world.s3.get_object(Bucket=DATASET_BUCKET, Key=key)["Body"].read() == HOUSES
        assert world.unfinished_uploads(keys.dataset_prefix(DS_COMPLETE)) == set()
    after = [v for v in world.dataset_versions() if keys.dataset_id_from_key(v["Key"]) in untouched]
    assert after == before, "another dataset's objects changed"


def _check_created(world: World, op: ApiOp, case: Case, fired: list[Call], first: Any, again: Any) -> None:
    """Creating takes no Idempotency-Key: the retry makes a dataset of its own (and a 503 may have left an empty
    one behind, which DELETE removes). Each dataset answered with is there, awaiting its file through the upload
    it was given; an unfinished upload belongs to a dataset, unless S3 started it and the reply saying so was
    lost (or the abort could not land in an outage): those the bucket's lifecycle rule removes after 7 days."""
    assert again.status == op.success, f"{again.status} {again.body[:300]!r}"
    multipart = op.body["bytes"] > 5 * 1024 * MiB
    for response in (first, again):
        if response.status != op.success:
            continue
        created = response.json()
        assert created["status"] == "awaiting_upload" and created["upload"]["method"] == (
            "multipart" if multipart else "PUT"
        )
        described = world.api.get(f"/datasets/{created['dataset_id']}")
        assert described.status == 200 and described.json()["status"] == "awaiting_upload", described.body
        if multipart:
            assert created["upload"]["upload_id"] in world.unfinished_uploads()
    referenced = set()
    for version in world.dataset_versions():
        if version["Key"].endswith("/dataset.json"):
            record = json.loads(world.s3.get_object(Bucket=DATASET_BUCKET, Key=version["Key"])["Body"].read())
            referenced.add(record["upload"].get("upload_id"))
    orphans = world.unfinished_uploads() - referenced
    lost_start = case.fault.applied and any(c.operation == "CreateMultipartUpload" for c in fired)
    if not (lost_start or case.fault.mode == "outage"):
        assert orphans == set(), "a multipart upload no dataset names was left behind"


def _check_deleted(world: World, op: ApiOp, first: Any, again: Any) -> None:
    """204, then 404 (nothing left); after a 503, the retry erases what is left (204) or finds that the failed
    attempt had erased it all (404). Either way not one object version, delete marker or unfinished upload is
    left under the dataset's prefix."""
    if first.status == op.success:
        assert again.status == 404, f"{again.status} {again.body[:300]!r}"
    assert again.status in (op.success, 404), f"{again.status} {again.body[:300]!r}"
    if again.status == 404:
        assert _error_code(again, op) == "dataset_not_found", again.body
    prefix = keys.dataset_prefix(op.path.rsplit("/", 1)[1])
    assert world.dataset_versions(prefix) == [], "an object version survived the erasure"
    assert world.unfinished_uploads(prefix) == set(), "the unfinished upload survived the erasure"


def test_a_failed_call_in_a_dataset_route_answers_503_and_a_retry_converges(world: World, dataset_case: Case) -> None:
    _run_dataset_case(world, dataset_case)


# ---------------------------------------------------------------- serving from a warm cache while S3 is down


# The routes that serve a model through the serving cache (its registry kept for STAGE_CACHE_TTL_SECONDS, served
# stale for STALE_IF_ERROR_SECONDS while S3 fails); the pages read S3 on every request.
SERVING = [API_OPS[name] for name in ("predict", "infer", "explain")]
PAGES = [API_OPS[name] for name in ("card", "card_json", "front_page")]


def _down(world: World) -> None:
    world.faults.arm(Fault("server_error", 0, "outage"))


def test_predict_keeps_serving_its_cached_registry_while_s3_is_down_and_says_how_stale(world: World) -> None:
    world.reset({"STAGE_CACHE_TTL_SECONDS": "0", "STALE_IF_ERROR_SECONDS": "60"})
    for op in SERVING:
        warm = world.request(op)
        assert warm.status == 200 and "X-Registry-Stale-Seconds" not in warm.headers
        _down(world)
        stale = world.request(op)
        assert world.faults.fired, "the registry was not re-read (STAGE_CACHE_TTL_SECONDS=0)"
        world.faults.recover()
        assert stale.status == 200, stale.body
        assert _body(stale) == _body(warm)
        assert 0 <= float(stale.headers["X-Registry-Stale-Seconds"]) <= 60


def test_predict_answers_503_once_its_cached_registry_is_older_than_stale_if_error(world: World) -> None:
    world.reset({"STAGE_CACHE_TTL_SECONDS": "0", "STALE_IF_ERROR_SECONDS": "0.2"})
    for op in SERVING:
        assert world.request(op).status == 200
        time.sleep(0.25)
        _down(world)
        expired = world.request(op)
        world.faults.recover()
        assert expired.status == 503, expired.body
        assert _error_code(expired, op) == "storage_unavailable"
        assert int(expired.headers["Retry-After"]) > 0
        assert world.request(op).status == 200  # S3 back: served fresh again
        cache.clear()


def test_a_cold_container_answers_503_while_s3_is_down_and_serves_once_it_is_back(world: World) -> None:
    world.reset()
    for op in [*SERVING, *PAGES]:
        cache.clear()
        _down(world)
        response = world.request(op)
        world.faults.recover()
        assert response.status == 503 and _error_code(response, op) == "storage_unavailable", response.body
        assert world.request(op).status == 200


# ---------------------------------------------------------------- leases in real time


def test_a_killed_runs_lease_really_lapses_and_its_retry_takes_the_job_over(world: World) -> None:
    """The kill cases lapse leases by rewriting their expiry; this one waits for the clock, with the renewal
    thread running, so the mechanism itself is exercised: the dead run's lease refuses the duplicate while it
    lasts, and once it has lapsed the retry takes the job over."""
    from mlservice.batch.job import LeaseHeld

    job, expected = BATCH_JOBS["batch"], profiles()["batch"]
    world.reset({"BATCH_LEASE_SECONDS": "1.0"}, queue=True)
    event = world.upload(job)
    killed_at = next(c.index for c in expected.calls if c.label == "PutObject:output")
    world.faults.arm(Fault("reset", killed_at, "kill"))
    trace = JobTrace()
    with pytest.raises(Killed):
        world.deliver(event, trace)
    world.restart()
    (lease_key,) = [k for k in world.store.objects("batch/state/") if k.endswith("/lease.json")]
    with pytest.raises(LeaseHeld):
        world.deliver(event, trace)
    assert world.store.get(job.spec.output_key) is None
    time.sleep(max(0.0, world.store.json(lease_key)["expires"] - time.time()) + 0.05)
    assert world.deliver(event, trace)["status"] == "succeeded"
    _check_job_result(world, job, expected)
