"""Hypothesis fuzzing of every route in template.yaml, through the same in-process API Gateway events as the
other API tests (local/runtime.py).

Every response must be a success with the route's documented status and shape, or the documented error: the
REST shape `{"error": {"code", "message"}}` (the Open Inference Protocol's `{"error": "<message>"}` under /v2)
with a code from `errors.CODES` whose status is the response's and which the route can give; never a 500,
never a stack trace, always JSON (GET /docs and the pages aside: UTF-8 HTML without script that shows nothing it
was sent, or stored, as markup). A rejected request, and any request to a route that only reads, leaves the
bucket exactly as it was. Where the strategy knows which answer the README promises (tests/fuzz_strategies.py)
that answer is required too; an explanation must add up (base + contributions = output, within its tolerance).

Every example starts from the same seeded bucket (iris v1 and v2, production on 1, a few datasets): a successful
mutation is undone before the next example, so examples are independent and replayable. A route's budget is
split between facets (fuzz_strategies.facets) so that a fixed sample cannot miss a whole dimension, and inputs
the fuzzer once found failing (fuzz_strategies.REGRESSIONS) are replayed first.

Failures are collected rather than raised: a run goes through its whole budget and reports each distinct
failure (its check, route and logged exception) once, with its shortest example. Environment:
- (nothing): `make test`, a fixed derandomized sample of about 2,750 requests, about a minute on 2 cores;
- FUZZ_EXAMPLES=N: every budget scaled up to at least N requests in all, new random examples each run;
- FUZZ_SHRINK=1: a failure raises and Hypothesis shrinks it (slow when examples train models);
- FUZZ_STATS=1: print what each route answered, to see which outcomes the strategies reach.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import BUCKET, s3_snapshot
from fuzz_strategies import (
    DATASETS,
    DEPLOYED_STAGE,
    FEATURES,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_PREDICT_ROWS,
    MAX_TRAIN_COLUMNS,
    MODEL,
    MUTATING,
    REGRESSIONS,
    ROUTE_BODIES,
    SUCCESS,
    Case,
    Request,
    cases,
    facets,
    unrouted_requests,
)
from hypothesis import HealthCheck, Phase, example, given, settings

from local.template import Template
from mlservice.errors import CODES

TEMPLATE = Template()
ROUTES = sorted(f"{route.method} {route.resource}" for route in TEMPLATE.routes)
UNROUTED = "any method, any path"

# Requests per route in `make test`, weighted by how much each route does with its input. FUZZ_EXAMPLES=N
# scales them to at least N in all.
BASE_EXAMPLES = {
    "POST /models/{model}/versions": 360,
    "GET /models": 40,
    "GET /models/{model}": 80,
    "DELETE /models/{model}": 60,
    "GET /models/{model}/versions/{version}": 100,
    "DELETE /models/{model}/versions/{version}": 110,
    "PUT /models/{model}/stages/{stage}": 170,
    "POST /models/{model}/stages/{stage}/rollback": 110,
    "DELETE /models/{model}/stages/{stage}": 110,
    "POST /models/{model}/predict": 300,
    "POST /models/{model}/explain": 200,
    "GET /models/{model}/versions/{version}/card": 100,
    "GET /": 30,
    "GET /openapi.json": 25,
    "GET /docs": 15,
    "GET /v2/health/live": 30,
    "GET /v2/health/ready": 30,
    "GET /v2": 30,
    "GET /v2/models/{model}": 60,
    "GET /v2/models/{model}/versions/{version}": 80,
    "GET /v2/models/{model}/ready": 60,
    "GET /v2/models/{model}/versions/{version}/ready": 80,
    "POST /v2/models/{model}/infer": 220,
    "POST /v2/models/{model}/versions/{version}/infer": 140,
    "POST /datasets": 90,
    "GET /datasets": 15,
    "GET /datasets/{dataset_id}": 40,
    "POST /datasets/{dataset_id}/complete": 50,
    "DELETE /datasets/{dataset_id}": 30,
    UNROUTED: 100,
}
DEFAULT_TOTAL = sum(BASE_EXAMPLES.values())
FUZZ_TOTAL = int(os.environ.get("FUZZ_EXAMPLES") or 0)
# FUZZ_SHRINK=1: stop at a failure and let Hypothesis shrink it (the default collects every kind of failure).
SHRINK = bool(os.environ.get("FUZZ_SHRINK"))
MINIMUM_TOTAL = max(2_000, FUZZ_TOTAL)


# How a route's budget is shared between its facets (fuzz_strategies.facets); `mixed` takes the rest.
FACET_SHARES = {"keys": 0.25, "content": 0.15, "hyperparameters": 0.25, "known": 0.3}


def examples(name: str, facet: str | None = None) -> int:
    """Requests planned for a route (or one facet of it): at least FUZZ_EXAMPLES in all when that is set."""
    total = BASE_EXAMPLES[name] * max(1.0, FUZZ_TOTAL / DEFAULT_TOTAL)
    if facet is None:
        return math.ceil(total)
    shares = {f: FACET_SHARES[f] for f in facets(name) if f != "mixed"}
    share = shares.get(facet, 1.0 - sum(shares.values()))
    return math.ceil(total * share)


def fuzz_settings(max_examples: int) -> settings:
    """Derandomized (same examples every run, so `make test` cannot flake) unless FUZZ_EXAMPLES asks for a
    random exploration."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=not FUZZ_TOTAL,
        database=None,
        # Failures are collected with their shortest example instead of shrunk (shrinking takes minutes when the
        # examples train models); FUZZ_SHRINK=1 shrinks.
        phases=[Phase.explicit, Phase.generate, Phase.shrink] if SHRINK else [Phase.explicit, Phase.generate],
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# ---------------------------------------------------------------- what each route may answer

CONTENT = {"invalid_json", "invalid_encoding", "invalid_request", "payload_too_large"}
IDEMPOTENCY = {"invalid_idempotency_key", "idempotency_key_reused", "idempotency_key_in_progress"}
LOOKUPS = {"model_not_found", "version_not_found", "stage_not_found", "stage_not_deployed"}
ROWS = {"invalid_shape", "missing_features", "invalid_value", "payload_too_large"}
TRAINING = {
    "invalid_algorithm",
    "invalid_task",
    "invalid_hyperparameter",
    "invalid_data",
    "invalid_target",
    "invalid_features",
    "invalid_test_size",
    "invalid_random_state",
    "invalid_cv",
    "invalid_description",
    "invalid_value",
    "training_failed",
    "training_too_expensive",
    "class_too_rare",
    "dataset_not_found",
}
NAME, VERSION = {"invalid_name"}, {"invalid_name", "invalid_version"}
EXPLAINING = {"invalid_output", "explanation_too_expensive"}
# From the README's route table and error codes; 503 storage_unavailable/write_contention may come anywhere.
ALLOWED: dict[str, set[str]] = {
    "POST /models/{model}/versions": CONTENT | IDEMPOTENCY | NAME | TRAINING,
    "GET /models": set(),
    "GET /models/{model}": NAME | {"model_not_found"},
    # Erasure takes no body and no Idempotency-Key; in the seeded world production is deployed, so without
    # ?undeploy=true (which the fuzzer does not send: tests/test_erasure.py erases) it is refused, never applied.
    "DELETE /models/{model}": NAME | {"model_not_found", "model_in_use"},
    "GET /models/{model}/versions/{version}": VERSION | {"model_not_found", "version_not_found"},
    "DELETE /models/{model}/versions/{version}": VERSION
    | IDEMPOTENCY
    | CONTENT
    | {"model_not_found", "version_not_found", "version_in_use"},
    "PUT /models/{model}/stages/{stage}": VERSION | IDEMPOTENCY | CONTENT | {"model_not_found", "version_not_found"},
    "POST /models/{model}/stages/{stage}/rollback": NAME
    | IDEMPOTENCY
    | CONTENT
    | {"model_not_found", "stage_not_found", "stage_not_deployed", "no_previous_version"},
    "DELETE /models/{model}/stages/{stage}": NAME
    | IDEMPOTENCY
    | CONTENT
    | {"model_not_found", "stage_not_found", "stage_not_deployed"},
    "POST /models/{model}/predict": CONTENT | VERSION | LOOKUPS | ROWS,
    "POST /models/{model}/explain": CONTENT | VERSION | LOOKUPS | ROWS | EXPLAINING,
    # ?format= other than html or json is invalid_request
    "GET /models/{model}/versions/{version}/card": VERSION
    | {"model_not_found", "version_not_found", "invalid_request"},
    "GET /": set(),
    "GET /openapi.json": set(),
    "GET /docs": set(),
    "GET /v2/health/live": set(),
    "GET /v2/health/ready": set(),
    "GET /v2": set(),
    "GET /v2/models/{model}": NAME | LOOKUPS,
    "GET /v2/models/{model}/versions/{version}": VERSION | LOOKUPS,
    "GET /v2/models/{model}/ready": NAME | LOOKUPS,
    "GET /v2/models/{model}/versions/{version}/ready": VERSION | LOOKUPS,
    "POST /v2/models/{model}/infer": CONTENT | VERSION | LOOKUPS | ROWS,
    "POST /v2/models/{model}/versions/{version}/infer": CONTENT | VERSION | LOOKUPS | ROWS,
    # The seeded world has no dataset: every id is unknown (malformed ones too).
    "POST /datasets": CONTENT,
    "GET /datasets": set(),
    "GET /datasets/{dataset_id}": {"dataset_not_found"},
    "POST /datasets/{dataset_id}/complete": CONTENT | {"dataset_not_found"},
    "DELETE /datasets/{dataset_id}": {"dataset_not_found"},
}
RETRYABLE = {"storage_unavailable", "write_contention"}
# Routes outside MUTATING (no Idempotency-Key) whose successes write: creating a dataset.
WRITING = {"POST /datasets"}
SUCCESS_STATUS = {
    "DELETE /models/{model}": 202,
    "POST /models/{model}/versions": 201,
    "DELETE /models/{model}/versions/{version}": 204,
    "DELETE /models/{model}/stages/{stage}": 204,
    "POST /datasets": 201,
    "DELETE /datasets/{dataset_id}": 204,
}
HANG_SECONDS = 60  # a request still running after this is a hang: interrupted and reported
SLOW_SECONDS = 15  # the slowest request `make test` sends (a cheap training) takes about 1 s


# ---------------------------------------------------------------- the code under test, all of it


@pytest.fixture(scope="module", autouse=True)
def every_module_of_the_service(runtime: Any) -> None:
    """Import the whole service before generating anything. Hypothesis mixes constants it finds in the code
    under test — every local module imported so far — into the values it draws, so without this the requests
    `make test` sends would depend on which other tests ran first and imported what (they did: a fuzz failure
    showed up only after tests/test_batch.py had imported the batch modules)."""
    import importlib
    import pkgutil

    import local
    import mlservice
    from local.template import load_handler

    for package in (mlservice, local):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    for function in runtime.template.functions.values():
        load_handler(function, runtime.template)


# ---------------------------------------------------------------- the seeded world


@dataclass
class World:
    s3: Any
    objects: dict[str, bytes]
    snapshot: dict[str, str]


def bucket_state(s3: Any) -> dict[str, str]:
    """conftest's s3_snapshot (every key with its ETag) read from moto's in-memory bucket: the same answer
    (checked against s3_snapshot whenever a world is seeded and after each test) without an HTTP round trip,
    XML and a timestamp parse per key, which made listing the bucket a third of the whole run."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[BUCKET]
    return {key: item.etag for key, item in bucket.keys.items()}


# The seeded bucket's objects, built through the registry by the first test and copied into the fresh moto
# bucket of every later one (the same bytes, so the same state, in a tenth of the time).
_SEEDED: dict[str, bytes] = {}


# Markup a page must show as text: v2's description (a model card and the front page show descriptions).
HOSTILE_DESCRIPTION = '<script>alert("v2")</script><img src=x onerror=alert(2)>"\'&amp;'


@pytest.fixture
def world(api: Any, aws: Any, iris_model: tuple[bytes, dict]) -> World:
    """iris v1 (a logistic regression) and v2 (a decision tree, described in markup): explained by sampling or
    exactly (v1's decision function), and by TreeSHAP (v2). Production on 1 (deployed once), and the files
    under datasets/ the strategies name."""
    if not _SEEDED:
        from mlservice import registry
        from mlservice.training.trainer import train

        registry.publish_version(MODEL, *iris_model)
        tree, metadata = train({"algorithm": "decision_tree", "data": {"dataset": "iris"}})
        registry.publish_version(MODEL, tree, {**metadata, "description": HOSTILE_DESCRIPTION})
        registry.set_stage(MODEL, DEPLOYED_STAGE, 1)
        for key, data in DATASETS.items():
            aws.put_object(Bucket=BUCKET, Key=key, Body=data)
        keys = s3_snapshot(aws)
        _SEEDED.update({key: aws.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys})
    else:
        for key, data in _SEEDED.items():
            aws.put_object(Bucket=BUCKET, Key=key, Body=data)
    snapshot = s3_snapshot(aws)
    assert bucket_state(aws) == snapshot, "bucket_state no longer reads what s3_snapshot lists"
    return World(aws, dict(_SEEDED), snapshot)


class LogTail(logging.Handler):
    """The service's last log records (with their stack traces), shown when a request fails a check."""

    def __init__(self) -> None:
        super().__init__()
        self.records: deque[str] = deque(maxlen=5)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record)[-4000:])

    def text(self) -> str:
        return "\n".join(self.records)


class Hung(Exception):
    pass


@contextmanager
def watchdog(seconds: float, what: str) -> Iterator[None]:
    """Interrupt a request that never answers, so the report names it instead of CI timing out."""

    def alarm(_signum: int, _frame: Any) -> None:
        raise Hung(f"no answer after {seconds} s: {what}")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Failure:
    message: str
    example: str
    count: int


@dataclass
class Exchange:
    request: Request
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    route: str | None  # the template route the path matched ("METHOD /resource"), None for no route
    code: str | None = None  # the error code (None for successes and for /v2's code-less errors)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} in a response body is not JSON")


class Fuzzer:
    """Sends generated requests, checks every answer, and puts the bucket back after successful mutations."""

    def __init__(self, world: World, runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
        self.world = world
        self.runtime = runtime
        self.capsys = capsys
        self.current = dict(world.snapshot)
        self.sent = 0
        self.outcomes: Counter[str] = Counter()
        self.logs = LogTail()
        # Failures are collected and the run goes on, so one run reports every kind of failure once, with its
        # shortest example; with FUZZ_SHRINK they raise and Hypothesis shrinks them.
        self.collect = not SHRINK
        self.failures: dict[tuple[str, ...], Failure] = {}

    # ------------------------------------------------------------ sending

    def send(self, request: Request) -> Exchange:
        self.sent += 1
        self.logs.records.clear()
        started = time.monotonic()
        with watchdog(HANG_SECONDS, repr(request)):
            response = self.runtime.http(
                request.method, request.path, query=request.query, headers=request.headers, body=request.body
            )
        seconds = time.monotonic() - started
        self.capsys.readouterr()  # drop the metrics lines: thousands of them would bury a failure report
        found = TEMPLATE.find_route(request.method, request.path)
        route = f"{found[0].method} {found[0].resource}" if found else None
        return Exchange(request, response.status, response.headers, response.body, seconds, route)

    def report(self, exchange: Exchange, problem: str, expect: Any = None) -> str:
        body = exchange.body.decode("utf-8", "replace")
        return (
            f"{problem}\n  request:  {exchange.request!r}\n  route:    {exchange.route}\n"
            f"  response: {exchange.status} {body[:1500]!r}\n"
            + (f"  expected: {sorted(expect)}\n" if expect is not None else "")
            + (f"  service log:\n{self.logs.text()}\n" if self.logs.records else "")
        )

    def print_stats(self, title: str) -> None:
        """FUZZ_STATS=1: what the requests got back, to see which answers a strategy reaches."""
        if not os.environ.get("FUZZ_STATS"):
            return
        with self.capsys.disabled():
            print(f"\n{title}: {self.sent} requests")
            for outcome, count in sorted(self.outcomes.items(), key=lambda item: -item[1]):
                print(f"  {count:6d}  {outcome}")

    # ------------------------------------------------------------ one example

    def run(self, case: Case) -> None:
        try:
            first = self.exchange(case.request, case.expect, intended=case.route)
            if case.then is not None:
                self.retry(case, first)
        except (AssertionError, Hung) as error:
            if not self.collect:
                raise
            self.record(case.route, case, error)
        finally:
            self.reset()

    def record(self, route: str, example: object, error: BaseException) -> None:
        """One failure, under what makes it a distinct bug: its check, its route and (for a 500) the exception
        the service logged. The shortest example of each is kept."""
        message = str(error)
        raised = re.findall(r"^\s*([\w.]+(?:Error|Exception|Crashed))\b", self.logs.text(), re.MULTILINE)
        kind = (route, message.splitlines()[0][:200], raised[-1] if raised else "")
        found = self.failures.get(kind)
        shown = repr(example)
        if found is None or len(shown) < len(found.example):
            self.failures[kind] = Failure(message, shown, (found.count if found else 0) + 1)
        else:
            found.count += 1

    def raise_failures(self) -> None:
        if not self.failures:
            return
        reports = [
            f"--- {kind[0]}: {failure.message.splitlines()[0]} ({failure.count} example(s); the shortest:)\n"
            f"{failure.message}\n  example: {failure.example}"
            for kind, failure in self.failures.items()
        ]
        pytest.fail(f"{len(reports)} distinct failure(s)\n" + "\n".join(reports), pytrace=False)

    def exchange(self, request: Request, expect: frozenset[str] | None, intended: str | None) -> Exchange:
        """Send one request and check its answer, and the bucket against the state before it."""
        before = self.current
        exchange = self.send(request)
        after = self.current = bucket_state(self.world.s3)  # before any check can fail: reset() must see it
        changed = sorted(set(before.items()) ^ set(after.items())) if after != before else []
        self.check(exchange)
        self.outcomes[f"{exchange.route} {exchange.status} {exchange.code or ''}".strip()] += 1
        if 400 <= exchange.status < 500:
            assert not changed, self.report(exchange, f"a rejected request changed the bucket: {changed[:10]}")
        if exchange.route not in MUTATING and exchange.route not in WRITING:
            assert not changed, self.report(exchange, f"a request that only reads changed the bucket: {changed[:10]}")
        if expect is not None and exchange.route == intended:
            self.check_expected(exchange, expect)
        return exchange

    def retry(self, case: Case, first: Exchange) -> None:
        """The same Idempotency-Key again: a replay of a success, 422 for a different request after a success,
        and after a failure (never kept) the request simply runs again."""
        assert case.then is not None
        second = self.exchange(case.then, None, intended=case.route)
        if 200 <= first.status < 300 and case.then_same:
            replayed = second.status == first.status and (
                second.body == first.body or (first.body and json.loads(second.body) == json.loads(first.body))
            )
            assert replayed, self.report(
                second,
                f"a retry with the same Idempotency-Key was not replayed (first: {first.status} {first.body[:300]!r})",
            )
            assert second.headers.get("Idempotent-Replayed") == "true", self.report(second, "replay not marked")
        elif 200 <= first.status < 300:
            assert (second.status, second.code) == (422, "idempotency_key_reused"), self.report(
                second, "a different request with a used Idempotency-Key was not refused with 422"
            )
        else:
            assert (second.status, second.code) == (first.status, first.code), self.report(
                second, f"a failed request ({first.status} {first.code}) answered differently when retried"
            )

    def reset(self) -> None:
        """Back to the seeded bucket (and no cached registry) after an example that changed it."""
        if self.current == self.world.snapshot:
            return
        from mlservice.serving.model_cache import cache

        s3 = self.world.s3
        extra = [key for key in self.current if key not in self.world.snapshot]
        for start in range(0, len(extra), 1000):
            objects = [{"Key": key} for key in extra[start : start + 1000]]
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects})
        for key, etag in self.world.snapshot.items():
            if self.current.get(key) != etag:
                s3.put_object(Bucket=BUCKET, Key=key, Body=self.world.objects[key])
        cache.clear()
        self.current = bucket_state(s3)
        assert self.current == self.world.snapshot, "the seeded bucket could not be restored"

    # ------------------------------------------------------------ checks

    def check(self, exchange: Exchange) -> None:
        """The rules every response follows, whatever was sent."""
        status, route, text = exchange.status, exchange.route, exchange.body.decode("utf-8", "replace")
        assert "Traceback" not in text, self.report(exchange, "a stack trace in the response")
        assert 'File "' not in text, self.report(exchange, "a stack frame in the response")
        assert exchange.seconds < SLOW_SECONDS, self.report(exchange, f"took {exchange.seconds:.1f} s")
        if 200 <= status < 300:
            self.check_success(exchange)
            return
        body = self.json(exchange)
        assert exchange.headers.get("Content-Type", "").startswith("application/json"), self.report(
            exchange, f"error with Content-Type {exchange.headers.get('Content-Type')!r}"
        )
        v2 = route is not None and exchange.request.path.startswith("/v2")
        if v2:
            assert isinstance(body, dict) and set(body) == {"error"}, self.report(exchange, "not the /v2 error shape")
            assert isinstance(body["error"], str) and body["error"].strip(), self.report(exchange, "empty message")
        else:
            error = body.get("error") if isinstance(body, dict) else None
            assert isinstance(body, dict) and set(body) == {"error"} and isinstance(error, dict), self.report(
                exchange, "not the documented error shape"
            )
            assert set(error) == {"code", "message"}, self.report(exchange, "error keys are not code and message")
            assert isinstance(error["message"], str) and error["message"].strip(), self.report(exchange, "no message")
            exchange.code = error["code"]
            assert exchange.code in CODES, self.report(exchange, f"undocumented error code {exchange.code!r}")
            assert CODES[exchange.code].status == status, self.report(
                exchange, f"{exchange.code} is documented as {CODES[exchange.code].status}, answered {status}"
            )
        if route is None:
            assert (status, exchange.code) == (404, "route_not_found"), self.report(exchange, "no route, yet not 404")
            return
        allowed = ALLOWED[route] | RETRYABLE
        if exchange.code is not None:
            assert exchange.code in allowed, self.report(exchange, f"{exchange.code} is not an answer of {route}")
        else:
            statuses = {CODES[code].status for code in allowed}
            assert status in statuses, self.report(exchange, f"status {status} is not an answer of {route}")
        assert status < 500 or exchange.code in RETRYABLE, self.report(exchange, "a server error")
        if status == 503 or exchange.code == "idempotency_key_in_progress":
            assert exchange.headers.get("Retry-After", "").isdigit(), self.report(exchange, "no Retry-After")

    def json(self, exchange: Exchange) -> Any:
        try:
            return json.loads(exchange.body, parse_constant=_refuse_constant)
        except ValueError as error:
            pytest.fail(self.report(exchange, f"the response body is not JSON ({error})"))

    def check_success(self, exchange: Exchange) -> None:
        route, path = exchange.route, exchange.request.path
        assert route is not None, self.report(exchange, "a success for a path that matches no route")
        status = SUCCESS_STATUS.get(route, 200)
        assert exchange.status == status, self.report(exchange, f"{route} succeeds with {status}")
        if status == 204:
            assert exchange.body == b"", self.report(exchange, "a 204 with a body")
            return
        if route == "GET /docs":
            assert b"<html" in exchange.body[:2000].lower(), self.report(exchange, "GET /docs is not HTML")
            return
        content_type = exchange.headers.get("Content-Type", "")
        formats = exchange.request.query.get("format", [])
        if route in PAGES and content_type.startswith("text/html"):
            assert formats != ["json"], self.report(exchange, "?format=json answered with HTML")
            self.check_page(exchange)
            return
        assert route not in PAGES or route == CARD, self.report(exchange, f"{route} is not HTML")
        if route == CARD:
            assert "json" in ",".join(formats), self.report(exchange, "a card in JSON although no JSON was asked for")
        body = self.json(exchange)
        assert exchange.headers.get("Content-Type", "").startswith("application/json"), self.report(
            exchange, "a JSON success without a JSON Content-Type"
        )
        segments = path.split("/")
        problem = success_shape_problem(route, segments, body)
        assert problem is None, self.report(exchange, f"success body: {problem}")

    def check_page(self, exchange: Exchange) -> None:
        """A page for people: UTF-8 HTML that runs no script and shows what it was sent (and what the registry
        holds) as text, never as markup."""
        content_type = exchange.headers.get("Content-Type", "").lower().replace(" ", "")
        assert content_type == "text/html;charset=utf-8", self.report(exchange, f"Content-Type {content_type!r}")
        try:
            html = exchange.body.decode("utf-8")
        except UnicodeDecodeError:
            pytest.fail(self.report(exchange, "a page that is not UTF-8"))
        lowered = html.lower()
        assert "<html" in lowered[:2000], self.report(exchange, "not an HTML document")
        assert "<script" not in lowered, self.report(exchange, "a page with a <script")
        assert HOSTILE_DESCRIPTION not in html, self.report(exchange, "v2's description shown as markup")
        reflected = [text for text in request_texts(exchange.request) if len(text) >= 5 and text in html]
        assert not reflected, self.report(exchange, f"input shown as markup: {reflected[:3]}")

    def check_expected(self, exchange: Exchange, expect: frozenset[str]) -> None:
        """The answer the README promises for this request, where the strategy knows it."""
        if 200 <= exchange.status < 300:
            assert SUCCESS in expect, self.report(exchange, "succeeded where the docs promise an error", expect)
            return
        if exchange.code is not None:
            assert exchange.code in expect, self.report(exchange, "not the documented answer", expect)
        else:  # /v2: the status is all there is to compare
            statuses = {CODES[code].status for code in expect if code != SUCCESS}
            assert exchange.status in statuses, self.report(exchange, "not the documented status", expect)


PAGES = {"GET /", "GET /models/{model}/versions/{version}/card"}
CARD = "GET /models/{model}/versions/{version}/card"


def request_texts(request: Request) -> list[str]:
    """What a request carries that would be markup if a page showed it unescaped: the path's segments, the query's
    names and values and the headers' values holding <, > or a double quote."""
    from urllib.parse import unquote

    texts = [unquote(segment) for segment in request.path.split("/")]
    texts += [text for name, values in request.query.items() for text in (name, *values)]
    texts += [value for values in request.headers.values() for value in values]
    return [text for text in texts if any(c in text for c in '<>"')]


def _additivity_problem(row: Any, tolerance: float, width: int) -> str | None:
    """base + Σ contributions = output for every output of an explained row, within the returned tolerance."""
    if not isinstance(row, dict):
        return "a row is not an object"
    base, output, contributions = row.get("base_value"), row.get("output_value"), row.get("contributions")
    if not isinstance(contributions, dict) or set(contributions) != set(FEATURES):
        return f"contributions are not one per feature: {sorted(contributions or [])}"
    vectors = [base, output, *contributions.values()]
    if not all(isinstance(v, list) and len(v) == width for v in vectors):
        return f"base, output and contributions are not {width} numbers each"
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in vectors for x in v):
        return "a base, output or contribution that is not a number"
    for k, value in enumerate(output):
        total = base[k] + sum(c[k] for c in contributions.values())
        if not abs(total - value) <= tolerance * (1 + abs(value)):
            return f"output {k}: base + contributions = {total!r}, output {value!r} (tolerance {tolerance!r})"
    return None


def success_shape_problem(route: str, segments: list[str], body: Any) -> str | None:
    """What is wrong with a success body, by route (None when it has the documented shape)."""
    if not isinstance(body, dict):
        return "not a JSON object"
    at = segments.index("models") + 1 if "models" in segments[:3] else len(segments)
    name = segments[at] if at < len(segments) else None
    if route == "POST /models/{model}/versions":
        first = 3 if name == MODEL else 1  # iris has versions 1 and 2
        if body.get("name") != name or not isinstance(body.get("version"), int) or body["version"] < first:
            return f"not the new version's metadata (name, version ≥ {first})"
        if not isinstance(body.get("metrics"), dict) or not isinstance(body.get("artifact"), dict):
            return "no metrics or artifact"
    elif route == "GET /models":
        models = body.get("models")
        if not isinstance(models, list) or not all(isinstance(m, dict) and "name" in m for m in models):
            return "models is not a list of models"
    elif route == "GET /models/{model}":
        if body.get("name") != name or not isinstance(body.get("versions"), list):
            return "not the model's description"
    elif route == "GET /models/{model}/versions/{version}":
        if body.get("name") != name or body.get("version") not in (1, 2):
            return "not the version's metadata"
    elif route in ("PUT /models/{model}/stages/{stage}", "POST /models/{model}/stages/{stage}/rollback"):
        if set(body) != {"stage", "version", "previous_version"} or body["stage"] != segments[4]:
            return "not a stage change"
    elif route == "POST /models/{model}/predict":
        predictions = body.get("predictions")
        if not isinstance(predictions, list) or not predictions or body.get("model", {}).get("name") != name:
            return "no predictions or not this model's"
        if "probabilities" in body and len(body["probabilities"]) != len(predictions):
            return "probabilities do not match the predictions"
    elif route == "POST /models/{model}/explain":
        rows, outputs, tolerance = body.get("rows"), body.get("outputs"), body.get("tolerance")
        if not isinstance(rows, list) or not rows or body.get("model", {}).get("name") != name:
            return "no rows or not this model's"
        if body.get("output") not in ("probability", "value", "decision") or not isinstance(outputs, list):
            return "no output or outputs"
        error = body.get("max_additivity_error")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in (tolerance, error)):
            return f"tolerance {tolerance!r} or max_additivity_error {error!r} is not a number"
        if error > tolerance:
            return f"max_additivity_error {error!r} exceeds the tolerance {tolerance!r}"
        for i, row in enumerate(rows):
            problem = _additivity_problem(row, tolerance, len(outputs))
            if problem is not None:
                return f"row {i}: {problem}"
    elif route == CARD:
        version = segments[4]
        if body.get("model") != name or body.get("version") not in (1, 2):
            return "not the card of this model and a version of it"
        if version.isascii() and version.isdigit() and body["version"] != int(version):
            return f"the card of version {body['version']}, not {version}"
        if "evaluation" not in body or not isinstance(body.get("digests"), dict):
            return "no evaluation or digests"
        if not isinstance(body.get("stage_history"), list):
            return "no stage history"
    elif route == "GET /openapi.json":
        missing = TEMPLATE.paths() - set(body.get("paths", {}))
        if not str(body.get("openapi", "")).startswith("3.") or missing:
            return f"not an OpenAPI 3 document of every route (missing {sorted(missing)})"
    elif route == "GET /v2/health/live":
        return None if body == {"live": True} else "not {live: true}"
    elif route == "GET /v2/health/ready":
        return None if body == {"ready": True} else "not {ready: true}"
    elif route == "GET /v2":
        if not {"name", "version", "extensions"} <= set(body):
            return "not the server metadata"
    elif route in ("GET /v2/models/{model}", "GET /v2/models/{model}/versions/{version}"):
        if body.get("name") != name or not all(
            isinstance(body.get(k), list) for k in ("versions", "inputs", "outputs")
        ):
            return "not the model metadata"
    elif route.endswith("/ready"):
        if body != {"name": name, "ready": True}:
            return "not {name, ready: true}"
    elif route == "POST /datasets":
        if not re.fullmatch(r"[0-9a-f]{32}", str(body.get("dataset_id"))) or body.get("status") != "awaiting_upload":
            return "not a new dataset (32-hex id, awaiting_upload)"
        if body.get("upload", {}).get("method") not in ("PUT", "multipart"):
            return "no upload instructions"
    elif route == "GET /datasets":
        if body != {"datasets": []}:
            return "datasets listed in a world without any"
    elif route.endswith("/infer"):
        outputs = body.get("outputs")
        if body.get("model_name") != name or not isinstance(outputs, list) or not outputs:
            return "no outputs or not this model's"
        for output in outputs:
            if len(output.get("data", [])) != math.prod(output.get("shape", [-1])):
                return f"output {output.get('name')!r}: data does not fill its shape"
    return None


@pytest.fixture
def fuzzer(world: World, runtime: Any, capsys: pytest.CaptureFixture[str]) -> Iterator[Fuzzer]:
    fuzzer = Fuzzer(world, runtime, capsys)
    service_logger = logging.getLogger("mlservice")
    service_logger.addHandler(fuzzer.logs)
    yield fuzzer
    service_logger.removeHandler(fuzzer.logs)
    assert bucket_state(world.s3) == s3_snapshot(world.s3), "bucket_state and s3_snapshot disagree"


# ---------------------------------------------------------------- the tests


def test_every_template_route_is_fuzzed() -> None:
    """A route added to template.yaml without a strategy, an answer table and a budget fails here."""
    assert set(ROUTES) == set(ALLOWED), "ALLOWED must list exactly the template's routes"
    assert set(BASE_EXAMPLES) == {*ROUTES, UNROUTED}, "BASE_EXAMPLES must give every template route a budget"
    assert set(ROUTE_BODIES) <= set(ROUTES)
    assert {case.route for case in REGRESSIONS} <= set(ROUTES)


def test_the_budget_meets_the_minimum() -> None:
    total = examples(UNROUTED) + sum(examples(route, facet) for route in ROUTES for facet in facets(route))
    assert total >= MINIMUM_TOTAL, f"{total} requests planned, {MINIMUM_TOTAL} required"


def test_the_strategies_assume_the_limits_in_force(runtime: Any) -> None:
    """The strategies' oracles assume the default limits; a template change must be reflected there."""
    from mlservice.settings import get_settings

    for function in ("TrainFunction", "PredictFunction", "DeployFunction"):
        saved = dict(os.environ)
        os.environ.update(runtime.environment(function))
        try:
            limits = get_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert limits.max_body_bytes == MAX_BODY_BYTES
        assert limits.max_json_depth == MAX_JSON_DEPTH
        assert limits.max_predict_rows == MAX_PREDICT_ROWS
        assert limits.max_train_columns == MAX_TRAIN_COLUMNS


@pytest.mark.parametrize("route", ROUTES)
def test_route(route: str, fuzzer: Fuzzer) -> None:
    """Generated requests to one route get documented answers and leave the bucket alone when refused.

    Each facet of the route runs with its own budget; a failing facet does not stop the others, so one run
    reports every kind of failure the route has."""
    failures: list[Exception] = []
    planned = 0
    for facet in facets(route):
        budget = examples(route, facet)
        planned += budget

        @fuzz_settings(budget)
        @given(case=cases(route, facet))
        def one(case: Case) -> None:
            fuzzer.run(case)

        if facet == "mixed":
            for found in (c for c in REGRESSIONS if c.route == route):
                one = example(case=found)(one)

        try:
            one()
        except Exception as error:
            error.add_note(f"facet: {facet}")
            failures.append(error)
    fuzzer.print_stats(route)
    if failures:
        raise ExceptionGroup(f"{route}: {len(failures)} facet(s) failed", failures)
    fuzzer.raise_failures()
    assert fuzzer.sent >= planned, f"only {fuzzer.sent} requests sent to {route}, {planned} planned"


def test_unrouted_requests(fuzzer: Fuzzer) -> None:
    """Any method on any path: a route's documented answers, or 404 route_not_found."""
    budget = examples(UNROUTED)

    @fuzz_settings(budget)
    @given(request=unrouted_requests(sorted(TEMPLATE.paths())))
    def one(request: Request) -> None:
        try:
            fuzzer.exchange(request, None, intended=None)
        except (AssertionError, Hung) as error:
            if not fuzzer.collect:
                raise
            fuzzer.record(UNROUTED, request, error)
        finally:
            fuzzer.reset()

    one()
    fuzzer.print_stats(UNROUTED)
    fuzzer.raise_failures()
    assert fuzzer.sent >= budget, f"only {fuzzer.sent} requests sent, {budget} planned"
