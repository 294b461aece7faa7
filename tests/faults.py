"""Fault injection for the service's S3 and SQS calls, in process, under moto — and the checks that matter after.

The service's promise is that every write is safe to retry: any S3/SQS call can fail, time out, or succeed with
its reply lost, and any event can arrive twice or never finish. To test that, faults have to reach the service
exactly where real ones would: below botocore's retry loop (so botocore's standard-mode retries see them as
they would see a throttle or a dropped connection) and above moto's request handling (so "applied but reply
lost" really applies the request). That place is moto's `BotocoreStubber`, botocore's `before-send` hook: the
Injector wraps it, keeps moto's request handling serialised (in-process moto's conditional writes are not
atomic otherwise), counts the service's *logical* calls (botocore's own retries of a call carry
`amz-sdk-request: attempt=N` and are not new calls) and fails the chosen one.

Fault kinds (KINDS): `throttle` (S3 503 SlowDown, SQS ThrottlingException), `server_error` (500 InternalError),
`timeout` (ReadTimeoutError), `reset` (ConnectionClosedError) — none of them applied — and `reply_lost` (moto
applies the request, then the connection drops before the reply).

Modes (MODES):
- `transient`: only the first attempt fails; botocore's retry succeeds, so the service must give its normal
  answer (a `reply_lost` retry meets the first attempt's own write: a 412 on a conditional put).
- `persistent`: every attempt of the call fails (the first as its kind, the retries unapplied), so the failure
  reaches the service after botocore gives up; nothing else fails.
- `outage`: from the chosen call on, every call of every thread fails until `recover()`; cleanup code runs
  but cannot land anything.
- `kill`: the process dies at the chosen call (`Killed`, a BaseException no `except Exception` swallows) and
  every later call fails until `recover()`, like a SIGKILL or a Lambda timeout. With kind `reply_lost` the
  call is applied and the process dies before the reply; otherwise before the request is sent.

Calls made by the lease-renewal thread are never counted (their timing is the scheduler's), but they do fail
while the store is down or the process dead. Requests made outside `live()` (the tests' own reads, setup and
SQS receives) are neither counted nor faulted.

Also here: `instant_retries` (botocore's backoff and retry quota out of the way), `cached_moto_routes` (moto
a fifth faster), `Store` (the bucket read and written directly, and the passage of time — leases, refit claims
and Idempotency-Key records lapsing — without waiting for it), and the invariant checks `registry_problems` and
`registry_shape`.

    with Injector() as faults, instant_retries():
        faults.arm(Fault("reply_lost", at=3, mode="persistent"))
        with faults.live():
            response = api.put("/models/iris/stages/production", {"version": 2})
        assert [c.label for c in faults.fired] == ["PutObject:registry"]
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

KINDS = ("throttle", "server_error", "timeout", "reset", "reply_lost")
NOT_APPLIED = ("throttle", "server_error", "timeout", "reset")
MODES = ("transient", "persistent", "outage", "kill")
BACKGROUND_THREADS = ("lease-renewal",)
WRITES = frozenset(
    {
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "SendMessageBatch",
        "SendMessage",
        "DeleteMessage",
    }
)
_SERVICE_CODE = (f"{os.sep}mlservice{os.sep}", f"{os.sep}functions{os.sep}")


class Killed(BaseException):
    """The process died here (SIGKILL, Lambda timeout, out of memory).

    A BaseException, so that no `except Exception` in the service (nor in botocore's retry loop) can catch it:
    after a real kill no cleanup code runs, and after this one none can land anything either."""


@dataclass(frozen=True)
class Fault:
    """What to break: `kind` (KINDS) at logical call `at` (None: at every call; transient mode only), in `mode`."""

    kind: str
    at: int | None
    mode: str

    def __post_init__(self) -> None:
        assert self.kind in KINDS and self.mode in MODES, self
        assert self.at is not None or self.mode == "transient", "every-call faults are transient"

    @property
    def applied(self) -> bool:
        return self.kind == "reply_lost"


@dataclass(frozen=True)
class Call:
    """One logical S3/SQS call the service made (botocore's retries of it are not separate calls)."""

    index: int
    service: str
    operation: str
    key: str
    thread: str
    # Where in the service's code the call was made (file:line of every service frame, innermost first): two
    # calls from the same site fail the same way.
    site: tuple[str, ...] = field(default=(), compare=False, repr=False)
    conditional: bool = field(default=False, compare=False, repr=False)  # If-Match / If-None-Match

    @property
    def is_write(self) -> bool:
        return self.operation in WRITES

    @property
    def repeat_differs(self) -> bool:
        """Whether botocore resending this request after it was applied can differ from sending it once: a
        conditional write meets its own change (412), a message is sent twice. A plain put or delete cannot."""
        return self.conditional or self.operation.startswith("Send")

    @property
    def label(self) -> str:
        """A short, stable name for test ids: `PutObject:registry`, `GetObject:parts.json`, `SendMessageBatch`."""
        return f"{self.operation}:{key_kind(self.key)}" if self.key else self.operation


def key_kind(key: str) -> str:
    """The role of an object key, without the names and numbers that vary (job ids, versions, file names)."""
    for pattern, name in _KEY_KINDS:
        if re.search(pattern, key):
            return name
    return "other"


_KEY_KINDS = [
    (r"/registry\.json$", "registry"),
    (r"/model\.joblib$", "artifact"),
    (r"/model\.onnx$", "onnx"),
    # asynchronous trainings (mlservice.training.jobs): the stored request, a search's scores and refit claim
    (r"^models/[^/]+/jobs/[0-9a-f]+\.json$", "job_request"),
    (r"^models/[^/]+/jobs/[0-9a-f]+/scores/(\d+-)?\d+-\d+\.json$", "score"),  # [round-]candidate-fold
    (r"^models/[^/]+/jobs/[0-9a-f]+/scores/$", "scores"),
    (r"^models/[^/]+/jobs/[0-9a-f]+/refit\.json$", "refit"),
    # datasets (mlservice.dataset_store): the record, the file, its profile; the prefixes listed
    (r"^datasets/[0-9a-f]{32}/dataset\.json$", "dataset_record"),
    (r"^datasets/[0-9a-f]{32}/profile\.json$", "profile"),
    (r"^datasets/[0-9a-f]{32}/data\.", "dataset_file"),
    (r"^datasets/[0-9a-f]{32}/$", "dataset"),
    (r"^datasets/$", "datasets"),
    (r"/versions/\d+/metadata\.json$", "metadata"),
    (r"^idempotency/", "idempotency"),
    (r"^batch/state/[^/]+/[^/]+/lease\.json$", "lease"),
    (r"^batch/state/[^/]+/[^/]+/assembly\.json$", "assembly_lease"),
    (r"^batch/state/[^/]+/[^/]+/plan\.json$", "plan"),
    (r"^batch/state/[^/]+/[^/]+/progress\.json$", "progress"),
    (r"^batch/state/[^/]+/[^/]+/parts/\d+\.json$", "part.json"),
    (r"^batch/state/[^/]+/[^/]+/parts/\d+\.out$", "part.out"),
    (r"^batch/state/[^/]+/[^/]+/parts/\d+\.errors$", "part.errors"),
    (r"^batch/state/[^/]+/[^/]+/?$", "state"),
    (r"^batch/input/", "input"),
    (r"\.manifest\.json$", "manifest"),
    (r"^batch/output/", "output"),
    (r"^batch/errors/", "errors"),
]


def _object_key(url: str) -> str:
    """The object key of an S3 request URL (virtual-hosted or path style); "" for bucket-level requests."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    if parts.netloc.startswith(("s3.", "s3-", "localhost", "127.")):
        path = path.partition("/")[2]  # path style: the first segment is the bucket
    if not path:
        query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
        return unquote(query.get("prefix", ""))  # ListObjectsV2: its prefix names what it is about
    return path


def _site() -> tuple[str, ...]:
    """Where the service made the current call: `file:line` of each of its frames (layer and functions)."""
    frame = sys._getframe(1)
    found = []
    while frame is not None:
        name = frame.f_code.co_filename
        if any(part in name for part in _SERVICE_CODE):
            found.append(f"{os.path.basename(name)}:{frame.f_lineno}")
        frame = frame.f_back
    return tuple(found)


def _attempt(request: Any) -> int:
    """botocore's attempt number for this request (1 for a new call, 2+ for its retries)."""
    found = re.search(r"attempt=(\d+)", str(request.headers.get("amz-sdk-request", "")))
    return int(found.group(1)) if found else 1


def error_response(request: Any, service: str, kind: str) -> Any:
    """The HTTP error a throttled or failing S3/SQS endpoint answers with, for botocore to parse."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    if service == "s3":
        code, status = {"throttle": ("SlowDown", 503), "server_error": ("InternalError", 500)}[kind]
        body = (
            ""
            if request.method == "HEAD"  # S3 answers HEAD errors without a body: botocore uses the status
            else f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>injected {kind}</Message><RequestId>FAULT</RequestId></Error>"
        )
        headers = {"Content-Type": "application/xml", "x-amz-request-id": "FAULT"}
    else:  # SQS speaks the JSON protocol
        code, status = {"throttle": ("ThrottlingException", 400), "server_error": ("InternalFailure", 500)}[kind]
        body = json.dumps({"__type": f"com.amazonaws.{service}#{code}", "message": f"injected {kind}"})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "FAULT"}
    return AWSResponse(request.url, status, headers, MockRawResponse(body))


def _connection_error(kind: str, request: Any) -> Exception:
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    if kind == "timeout":
        return ReadTimeoutError(endpoint_url=request.url)
    return ConnectionClosedError(endpoint_url=request.url)


class Injector:
    """Counts the service's S3/SQS calls and breaks the one a Fault names (see the module docstring).

    Use as a context manager (it patches moto's stubber while open); `arm()` a Fault, wrap the service's
    invocations in `live()`, read `calls` and `fired` afterwards, and `recover()` after an outage or a kill.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fired: list[Call] = []
        self.fault: Fault | None = None
        self.down = False  # outage: every call fails
        self.dead = False  # kill: every call fails, the killed thread's with Killed
        self._active = False
        self._killed_thread: str | None = None
        self._moto_lock = threading.Lock()
        self._state = threading.Lock()
        self._local = threading.local()
        self._original: Any = None

    # ------------------------------------------------------------ control

    def __enter__(self) -> Injector:
        from moto.core.botocore_stubber import BotocoreStubber

        self._original = BotocoreStubber.__call__
        injector = self

        def intercepted(stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            return injector._intercept(stub, event_name, request, **kwargs)

        BotocoreStubber.__call__ = intercepted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        BotocoreStubber.__call__ = self._original  # type: ignore[method-assign]

    def arm(self, fault: Fault | None) -> None:
        """Start a new run: forget the counted calls and break the call `fault` names (None: break nothing)."""
        with self._state:
            self.calls, self.fired, self.fault = [], [], fault
            self.down = self.dead = False
            self._killed_thread = None

    def recover(self) -> None:
        """The store is back (outage) or the process was restarted (kill); the fault is spent."""
        with self._state:
            self.down = self.dead = False
            self._killed_thread = None
            self.fault = None

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Count (and fault) the calls made inside: the service's invocations, not the test's own requests."""
        self._active = True
        try:
            yield
        finally:
            self._active = False

    # ------------------------------------------------------------ the hook

    def _intercept(self, stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if not getattr(stub, "enabled", False):
            return self._original(stub, event_name, request, **kwargs)
        _, service, operation = event_name.split(".", 2)
        action, kind = self._decide(service, operation, request)
        if action == "pass":
            with self._moto_lock:
                return self._original(stub, event_name, request, **kwargs)
        if action == "kill":
            raise Killed(f"killed at {operation}")
        if kind == "reply_lost":
            with self._moto_lock:
                self._original(stub, event_name, request, **kwargs)  # applied; the reply never arrives
            if action == "kill_after":
                raise Killed(f"killed after {operation} was applied")
            raise _connection_error("reset", request)
        if kind in ("timeout", "reset"):
            raise _connection_error(kind, request)
        return error_response(request, service, kind)

    def _decide(self, service: str, operation: str, request: Any) -> tuple[str, str]:
        """('pass' | 'fail' | 'kill' | 'kill_after', kind) for one attempt of one request."""
        thread = threading.current_thread().name
        counted = self._active and not thread.startswith(BACKGROUND_THREADS)
        attempt = _attempt(request)
        with self._state:
            if counted and attempt == 1:
                key = _object_key(request.url) if service == "s3" else ""
                self._local.index = len(self.calls)
                conditional = any(h.lower() in ("if-match", "if-none-match") for h in request.headers)
                self.calls.append(Call(len(self.calls), service, operation, key, thread, _site(), conditional))
            if self.dead:
                return ("kill", "reset") if thread == self._killed_thread else ("fail", "reset")
            fault = self.fault
            if self.down:
                return "fail", _unapplied(fault.kind if fault else "reset")
            if fault is None or not counted:
                return "pass", ""
            index = getattr(self._local, "index", None)
            if fault.at is not None and index != fault.at:
                return "pass", ""
            if attempt == 1:
                self.fired.append(self.calls[index])
            if fault.mode == "transient":
                return ("fail", fault.kind) if attempt == 1 else ("pass", "")
            if fault.mode == "kill":
                self.dead, self._killed_thread = True, thread
                return ("kill_after", "reply_lost") if fault.applied else ("kill", "reset")
            if fault.mode == "outage":
                self.down = True
            return "fail", fault.kind if attempt == 1 else _unapplied(fault.kind)


def _unapplied(kind: str) -> str:
    return "reset" if kind == "reply_lost" else kind


@contextlib.contextmanager
def cached_moto_routes() -> Iterator[None]:
    """moto rebuilds a backend's whole URL table on every request (a fifth of each call's time); the table never
    changes, so build it once per backend class."""
    from moto.core.base_backend import BaseBackend

    original = BaseBackend.urls
    built: dict[type, Any] = {}

    def urls(backend: Any) -> Any:
        if type(backend) not in built:
            built[type(backend)] = original.fget(backend)  # type: ignore[attr-defined]
        return built[type(backend)]

    BaseBackend.urls = property(urls)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        BaseBackend.urls = original  # type: ignore[method-assign]


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """botocore's retries without their backoff, and a retry quota that never runs dry.

    Standard mode sleeps up to 20 s between attempts and stops retrying once a client's quota (500 tokens, 5-10
    per retry) is spent; hundreds of injected failures on one long-lived client would drain it and change what
    is being tested. Neither matters to what the service does with the outcome."""
    from botocore.retries.quota import RetryQuota
    from botocore.retries.standard import ExponentialBackoff

    saved = ExponentialBackoff.delay_amount, RetryQuota.acquire
    ExponentialBackoff.delay_amount = lambda self, context: 0  # type: ignore[method-assign]
    RetryQuota.acquire = lambda self, capacity_amount: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExponentialBackoff.delay_amount, RetryQuota.acquire = saved  # type: ignore[method-assign]


# ---------------------------------------------------------------- the bucket, seen from outside the service


class Store:
    """moto's copy of the bucket, read and written directly (no request through botocore, so nothing here is
    counted, faulted or racing with the service's requests for moto's lock)."""

    def __init__(self, bucket: str) -> None:
        self.name = bucket

    @property
    def _backend(self) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        bucket = self._backend.get_bucket(self.name)
        return {k: v.value for k, v in list(bucket.keys.items()) if k.startswith(prefix)}

    def get(self, key: str) -> bytes | None:
        bucket = self._backend.get_bucket(self.name)
        found = bucket.keys.get(key)
        return None if found is None else found.value

    def json(self, key: str) -> Any:
        data = self.get(key)
        return None if data is None else json.loads(data)

    def put(self, key: str, data: bytes) -> None:
        self._backend.put_object(self.name, key, data)

    def delete(self, key: str) -> None:
        self._backend.delete_object(self.name, key)

    def clear(self) -> None:
        """Every object and unfinished multipart upload gone: the bucket as created."""
        bucket = self._backend.get_bucket(self.name)
        for key in list(bucket.keys.keys()):
            self._backend.delete_object(self.name, key)
        bucket.multiparts.clear()

    def restore(self, snapshot: dict[str, bytes]) -> None:
        self.clear()
        for key, data in snapshot.items():
            self.put(key, data)

    # ------------------------------------------------------------ the passage of time

    def lapse_leases(self) -> int:
        """What BATCH_LEASE_SECONDS of waiting does to the leases a dead run left behind: they expire. Rewriting
        the expiry (owner kept) is that wait without the wall clock, so the tests stay fast and deterministic."""
        lapsed = 0
        for key, data in self.objects("batch/state/").items():
            if key.endswith(("/lease.json", "/assembly.json")):
                self.put(key, json.dumps({**json.loads(data), "expires": time.time() - 1}).encode())
                lapsed += 1
        return lapsed

    def live_lease(self, key: str) -> bool:
        lease = self.json(key)
        return lease is not None and lease.get("expires", 0) > time.time()

    def lapse_refit_claims(self) -> int:
        """What the train queue's visibility timeout (5400 s, template.yaml) does to the refit claim a failed or
        killed refit left behind (it lasts a worker's whole run, 870 s: jobs.WORKER_SECONDS + PUBLISH_SECONDS): by
        the time SQS delivers the message again, the claim has lapsed."""
        lapsed = 0
        for key, data in self.objects("models/").items():
            if key_kind(key) == "refit":
                self.put(key, json.dumps({**json.loads(data), "expires": time.time() - 1}).encode())
                lapsed += 1
        return lapsed

    def lapse_in_progress_records(self) -> int:
        """What the end of a failed invocation's Lambda timeout does to its Idempotency-Key record: the record is
        abandoned, and a retry with the key runs again (finding the registry change by its token)."""
        lapsed = 0
        for key, data in self.objects("idempotency/").items():
            record = json.loads(data)
            if record.get("status") == "INPROGRESS":
                record["in_progress_expiry_ms"] = int(time.time() * 1000) - 1
                self.put(key, json.dumps(record).encode())
                lapsed += 1
        return lapsed


# ---------------------------------------------------------------- invariants


def registry_problems(objects: dict[str, bytes]) -> list[str]:
    """Everything wrong with the model registries among `objects` (key → bytes); [] when they are sound.

    - the document passes `registry.check` (every stage serves nothing or a ready version; numbers below
      next_version);
    - every ready version's artifact and metadata.json exist, the artifact's SHA-256 and size are the ones the
      registry recorded, and the metadata describes that version and digest;
    - every stage's history is chained (each change starts where the previous ended) and ends at the version
      the stage serves;
    - no token (a training's Idempotency-Key or request) owns two live versions: nothing was published twice.
    """
    from mlservice import keys, registry

    problems: list[str] = []
    for name, data in sorted(objects.items()):
        if not (name.startswith(keys.MODELS) and name.endswith("/registry.json")):
            continue
        document = json.loads(data)
        model = document["model"]
        try:
            registry.check(document)
        except RuntimeError as error:
            problems.append(f"{model}: {error}")
        for number, entry in document["versions"].items():
            if entry["state"] != registry.READY:
                continue
            artifact = objects.get(keys.artifact_key(model, int(number)))
            metadata = objects.get(keys.metadata_key(model, int(number)))
            if artifact is None:
                problems.append(f"{model} v{number} is ready but its artifact is missing")
            elif hashlib.sha256(artifact).hexdigest() != entry["sha256"] or len(artifact) != entry["bytes"]:
                problems.append(f"{model} v{number}: the artifact does not match the recorded SHA-256/size")
            if metadata is None:
                problems.append(f"{model} v{number} is ready but its metadata.json is missing")
            else:
                meta = json.loads(metadata)
                if meta.get("version") != int(number) or meta.get("artifact", {}).get("sha256") != entry["sha256"]:
                    problems.append(f"{model} v{number}: metadata.json describes another version or artifact")
        for stage, entry in document["stages"].items():
            history = entry.get("history", [])
            for before, after in itertools.pairwise(history):
                if after["from"] != before["to"]:
                    problems.append(f"{model}/{stage}: history not chained at {before} -> {after}")
            if history and history[-1]["to"] != entry.get("version"):
                problems.append(f"{model}/{stage}: serves {entry.get('version')} but history ends at {history[-1]}")
        owners = Counter(
            e["token"] for e in document["versions"].values() if e.get("token") and e["state"] != registry.DELETED
        )
        problems += [f"{model}: token {t} owns {n} versions (published twice)" for t, n in owners.items() if n > 1]
    return problems


def registry_shape(document: dict | None) -> dict | None:
    """A registry document without what legitimately differs between two runs of the same requests (times,
    tokens, digests of retrained artifacts): versions and their states, stages with their stacks and history.
    None for no document (an erased model)."""
    if document is None:
        return None
    return {
        "next_version": document["next_version"],
        "versions": {n: e["state"] for n, e in sorted(document["versions"].items(), key=lambda i: int(i[0]))},
        "stages": {
            name: {
                "version": e.get("version"),
                "stack": e.get("stack"),
                "history": [(h["from"], h["to"], h["action"]) for h in e.get("history", [])],
            }
            for name, e in sorted(document["stages"].items())
        },
    }
