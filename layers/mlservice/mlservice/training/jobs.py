"""Asynchronous training: a training request queued over SQS, fitted by TrainWorkerFunction, published like
any other version.

API Gateway stops waiting after 29 s, so a training that cannot finish inside a request is queued instead —
when asked (`"async": true`) or when its estimated cost is over the request's budget. The steps, each safe to
repeat, in an order where any one can fail and a retry (the client's, or SQS's redelivery) finishes the job:

1. the request body is stored under the model's prefix, named by its token (the Idempotency-Key's, or one per
   request), before any version number exists;
2. one SQS message {model, token} goes to the train queue;
3. the version is reserved `queued` for that token (registry.reserve_job) — by the request, or by the worker
   if the message is faster: whichever comes first, both get the same number;
4. the worker marks it `training` (counting attempts: a job taken MAX_JOB_ATTEMPTS times without finishing —
   its worker ran out of time or memory — is `failed`), fits it with the training code the synchronous path
   uses under the worker's longer budget and deadline, reports progress, and publishes it through the same
   publish_version, whose token makes a redelivered message resume the same version and never publish twice;
   an error the request itself causes (bad data, too expensive even here, the deadline) marks it `failed` with
   that error. Anything else is raised, so SQS delivers the message again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlservice import keys, registry, storage
from mlservice.atomic import now_iso
from mlservice.audit import Actor
from mlservice.errors import ServiceError, WriteConflict
from mlservice.observability import logger

QUEUE_VARIABLE = "TRAIN_QUEUE_URL"
# A worker's whole run: the function's timeout (900 s) less what publishing and marking the result take.
WORKER_SECONDS = 840.0
PUBLISH_SECONDS = 30.0


def queue_url() -> str | None:
    """The train queue; None where there is none (asynchronous training is then unavailable)."""
    return os.environ.get(QUEUE_VARIABLE) or None


def async_budget_seconds() -> float:
    """The estimated training time a worker accepts (TRAINING_ASYNC_BUDGET_SECONDS, default 780 s)."""
    raw = os.environ.get("TRAINING_ASYNC_BUDGET_SECONDS") or "780"
    return float(raw)


def enqueue(model: str, body: dict[str, Any], token: str, actor: Actor) -> dict[str, Any]:
    """Queue a training; returns {name, version, status} (the status as it stands: a retried request may find
    its job already training, ready or failed)."""
    url = queue_url()
    if url is None:
        raise ServiceError("configuration_error", "asynchronous training needs TRAIN_QUEUE_URL (the train queue)")
    stored = {"model": model, "token": token, "request": body, "actor": actor.record(), "queued_at": now_iso()}
    storage.put_json(keys.job_request_key(model, token), stored)
    storage.send_messages(url, [json.dumps({"kind": "train", "model": model, "token": token})])
    version, state = registry.reserve_job(model, token, actor)
    return {"name": model, "version": version, "status": state}


def _actor(stored: dict) -> Actor:
    recorded = stored.get("actor") or {}
    return Actor(str(recorded.get("principal") or "internal"), recorded.get("request_id"))


def _start(entry: dict) -> str:
    job = entry.setdefault("job", {})
    job["attempts"] = int(job.get("attempts", 0)) + 1
    if job["attempts"] > registry.MAX_JOB_ATTEMPTS:
        entry["state"] = registry.FAILED
        job["finished_at"] = now_iso()
        job["error"] = {
            "code": "training_failed",
            "message": f"the training worker stopped {registry.MAX_JOB_ATTEMPTS} times without finishing "
            "(out of time or memory): use fewer rows, a cheaper algorithm or smaller hyperparameters",
        }
        return registry.FAILED
    entry["state"] = registry.TRAINING
    job["started_at"] = now_iso()
    job["progress"] = {"step": 0, "of": 1, "elapsed_seconds": 0.0}
    return registry.TRAINING


def progress_reporter(model: str, version: int, token: str) -> Callable[[int, int, float], None]:
    """A callback the fit calls with (step, of, elapsed seconds); recorded in the registry entry."""

    def report(step: int, of: int, elapsed: float) -> None:
        def apply(entry: dict) -> str:
            entry.setdefault("job", {})["progress"] = {"step": step, "of": of, "elapsed_seconds": round(elapsed, 1)}
            return entry["state"]

        try:
            registry.change_job(model, version, token, apply)
        except ServiceError:  # progress is informative: S3 trouble must not fail the training
            logger.warning("could not record training progress", extra={"model": model, "version": version})

    return report


def fail(model: str, version: int, token: str, error: ServiceError) -> None:
    def apply(entry: dict) -> str:
        entry["state"] = registry.FAILED
        job = entry.setdefault("job", {})
        job["finished_at"] = now_iso()
        job["error"] = {"code": error.code, "message": error.message}
        return registry.FAILED

    registry.change_job(model, version, token, apply)


# A warm worker keeps the last jobs' prepared data: a search's folds of one job then read, check, split and
# encode its training data once per container instead of once per fit (what a fit of a small model mostly costs).
_PREPARED: dict[str, Any] = {}
_PREPARED_JOBS = 2


def _prepared(token: str, make: Callable[[], Any]) -> Any:
    found = _PREPARED.pop(token, None)
    if found is None:
        found = make()
    _PREPARED[token] = found  # most recent last
    while len(_PREPARED) > _PREPARED_JOBS:
        _PREPARED.pop(next(iter(_PREPARED)))
    return found


def _send(messages: list[dict[str, Any]]) -> None:
    url = queue_url()
    if url is None:
        raise ServiceError("configuration_error", "the train worker needs TRAIN_QUEUE_URL to fan a search out")
    storage.send_messages(url, [json.dumps(m) for m in messages])


def work(message: dict[str, Any], seconds_left: float | None = None, receives: int = 1) -> dict[str, Any]:
    """Handle one train-queue message; returns what happened (for the log). Raises to have it delivered again.
    `receives` is SQS's ApproximateReceiveCount of the message (a search fold tried that often is given up)."""
    model, token = keys.validate_name(message.get("model"), "model"), str(message.get("token") or "")
    found = storage.get_json(keys.job_request_key(model, token)) if token else None
    if found is None:
        return {"status": "dropped", "reason": "no stored request (erased, or never stored)", "model": model}
    stored = found[0]
    actor = _actor(stored)
    try:
        version, state = registry.reserve_job(model, token, actor)
    except ServiceError as error:
        if error.code == "model_being_erased":
            return {"status": "dropped", "reason": "the model is being erased", "model": model}
        raise
    if state not in registry.IN_PROGRESS:
        return {"status": state, "model": model, "version": version}  # a duplicate message of a finished job
    job = Job(model, version, token, stored, actor, seconds_left, message.get("prepared"))
    kind = message.get("kind", "train")
    if kind == "fold":
        return job.fold(int(message["candidate"]), int(message["fold"]), receives, int(message.get("round", 0)))
    if kind == "refit":
        return job.refit()
    state = registry.change_job(model, version, token, _start)
    if state != registry.TRAINING:
        return {"status": state or "finished", "model": model, "version": version}
    if stored["request"].get("search"):
        return job.fan_out()
    return job.fit(stored["request"])


class Job:
    """One queued training's work, in the steps its messages ask for."""

    def __init__(
        self,
        model: str,
        version: int,
        token: str,
        stored: dict,
        actor: Actor,
        seconds_left: float | None,
        prepared_sha256: str | None = None,
    ) -> None:
        self.model, self.version, self.token = model, version, token
        # the digest of the search's encoded training data, which the planning step stored once for every fold
        self.prepared_sha256 = prepared_sha256
        self.stored, self.actor = stored, actor
        self.seconds = min(WORKER_SECONDS, (WORKER_SECONDS if seconds_left is None else seconds_left) - PUBLISH_SECONDS)
        self.began = time.monotonic()

    def _result(self, status: str, **extra: Any) -> dict[str, Any]:
        return {"status": status, "model": self.model, "version": self.version, **extra}

    def _request(self) -> Any:
        from mlservice import fields
        from mlservice.training.request import TrainRequest

        return fields.parse(TrainRequest, self.stored["request"])

    def fit(self, body: dict[str, Any], extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fit and publish (the same publish as the synchronous path: its token makes it happen once)."""
        from mlservice.training.trainer import train_model

        try:
            trained = train_model(
                body,
                time.monotonic() + max(1.0, self.seconds),
                budget_seconds=async_budget_seconds(),
                progress=None if extra_metadata else progress_reporter(self.model, self.version, self.token),
            )
        except ServiceError as error:
            if error.status >= 500 and error.code != "training_timeout":
                raise  # S3 trouble and the like: SQS delivers the message again
            fail(self.model, self.version, self.token, error)
            return self._result(registry.FAILED, code=error.code)
        metadata = {**trained.metadata, **(extra_metadata or {})}
        registry.publish_version(
            self.model, trained.artifact, metadata, token=self.token, actor=self.actor, onnx=trained.onnx
        )
        return self._result(registry.READY, seconds=round(time.monotonic() - self.began, 1))

    # ---------------------------------------------------------------- distributed search

    def _send_round(self, round_number: int, candidates: list[int], folds: int) -> None:
        base = {"model": self.model, "token": self.token, "kind": "fold", "round": round_number}
        if self.prepared_sha256:
            base["prepared"] = self.prepared_sha256
        _send([{**base, "candidate": i, "fold": j} for i in candidates for j in range(folds)])

    def _store_prepared(self, prepared: Any) -> str:
        """The training part, read and encoded once, for every fold of the search: without the raw table and the
        holdout (folds use neither). Its digest travels in the messages and is checked before it is loaded."""
        import dataclasses
        import io

        import joblib

        slim = dataclasses.replace(
            prepared, table=None, target=None, X_test=prepared.X_test[:0], y_test=prepared.y_test[:0]
        )
        buffer = io.BytesIO()
        joblib.dump(slim, buffer, compress=1)
        data = buffer.getvalue()
        storage.put_bytes(keys.job_prepared_key(self.model, self.token), data)
        return storage.sha256_hex(data)

    def _load_prepared(self, make: Callable[[], Any]) -> Any:
        """The search's stored training part when the message names one (digest-checked), else prepared here."""
        if not self.prepared_sha256:
            return make()
        import io

        import joblib

        data = storage.get_bytes(keys.job_prepared_key(self.model, self.token))
        if data is None or storage.sha256_hex(data) != self.prepared_sha256:
            return make()  # gone or not the one planned: read the data again rather than trust it
        return joblib.load(io.BytesIO(data))

    def fan_out(self) -> dict[str, Any]:
        """One message per candidate × fold of the first round (sent again on a redelivery: scores are created
        once)."""
        from mlservice.settings import get_settings
        from mlservice.training import search
        from mlservice.training.trainer import prepare

        req = self._request()
        planned = search.candidates(req)
        folds = search.folds_of(req)
        try:
            prepared = _prepared(self.token, lambda: prepare(req, get_settings()))
        except ServiceError as error:
            if error.status >= 500:
                raise
            fail(self.model, self.version, self.token, error)  # the data itself is wrong: no fold could do better
            return self._result(registry.FAILED, code=error.code)
        self.prepared_sha256 = self._store_prepared(prepared)
        self._send_round(0, list(range(len(planned))), folds)
        total = sum(search.round_sizes(req, len(planned))) * folds
        progress_reporter(self.model, self.version, self.token)(0, total, 0.0)
        return self._result("searching", fits=total)

    def _score_keys(self) -> dict[tuple[int, int, int], str]:
        """(round, candidate, fold) → the key of its stored score or error: one listing, no reads."""
        found = {}
        for item in storage.list_keys(keys.job_scores_prefix(self.model, self.token)):
            name = item["Key"].rsplit("/", 1)[1].removesuffix(".json")
            round_number, candidate, fold = (int(part) for part in name.split("-"))
            found[(round_number, candidate, fold)] = item["Key"]
        return found

    def _scores(self, listed: dict[tuple[int, int, int], str] | None = None) -> dict[tuple[int, int, int], dict]:
        """(round, candidate, fold) → the stored score or error."""
        found = {}
        for position, key in (self._score_keys() if listed is None else listed).items():
            stored = storage.get_json(key)
            if stored is not None:
                found[position] = stored[0]
        return found

    def fold(self, candidate: int, fold: int, receives: int, round_number: int = 0) -> dict[str, Any]:
        """Score one candidate on one fold (of one halving round), store it once; when it completed its round,
        queue the next round (halving) or the refit. A completed round may be followed up twice (two folds can
        finish it at once, or a message be redelivered): scores are created once and the refit is claimed."""
        from mlservice.training import metrics, search
        from mlservice.training.trainer import prepare

        req = self._request()
        planned, folds = search.candidates(req), search.folds_of(req)
        sizes = search.round_sizes(req, len(planned))
        key = keys.job_score_key(self.model, self.token, candidate, fold, round_number)
        if storage.get_json(key) is None:
            began = time.monotonic()
            if receives > registry.MAX_JOB_ATTEMPTS:
                record: dict[str, Any] = {"error": f"the worker stopped {registry.MAX_JOB_ATTEMPTS} times on this fit"}
            else:
                from mlservice.settings import get_settings

                try:
                    prepared = _prepared(self.token, lambda: self._load_prepared(lambda: prepare(req, get_settings())))
                    fraction = search.row_fraction(round_number, len(sizes))
                    record = {
                        "score": search.score_fold(prepared, planned[candidate], fold, folds, fraction),
                        "metric": metrics.scoring_for(prepared.task),
                    }
                except ServiceError as error:
                    if error.status >= 500:
                        raise
                    record = {"error": f"{error.code}: {error.message}"[:500]}
                except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError) as error:
                    record = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
            record["seconds"] = round(time.monotonic() - began, 3)
            with contextlib.suppress(WriteConflict):  # a redelivered message's twin stored it first: that counts
                storage.put_json(key, record, if_none_match=True)
        # Counting needs only a listing; the scores themselves are read when a round may be complete (round 0 has
        # every candidate, so that is when all of them are in), not by every fold: that made a search's S3 reads
        # grow with the square of its fits.
        listed = self._score_keys()
        total = sum(sizes) * folds
        progress_reporter(self.model, self.version, self.token)(len(listed), total, 0.0)
        in_round = len([k for k in listed if k[0] == round_number])
        if round_number == 0 and in_round < sizes[0] * folds:
            return self._result("scored", candidate=candidate, fold=fold, round=round_number, collected=len(listed))
        scores = self._scores(listed)
        rounds = search.members(sizes, folds, scores)
        done = in_round >= len(rounds[round_number]) * folds
        if done and round_number + 1 < len(sizes):
            following = rounds[round_number + 1] if len(rounds) > round_number + 1 else []
            if following:
                self._send_round(round_number + 1, following, folds)
            else:  # nobody scored on every fold: the refit reports the failure
                _send([{"model": self.model, "token": self.token, "kind": "refit"}])
        elif done:
            _send([{"model": self.model, "token": self.token, "kind": "refit"}])
        return self._result("scored", candidate=candidate, fold=fold, round=round_number, collected=len(listed))

    def _claim_refit(self) -> bool:
        """Only one refit runs: the last folds may each send one. The claim is a lease for a worker's whole
        run, so a refit whose worker died is taken over by its message's redelivery."""
        import uuid

        key = keys.job_refit_key(self.model, self.token)
        claim = {"owner": uuid.uuid4().hex, "expires": time.time() + WORKER_SECONDS + PUBLISH_SECONDS}
        found = storage.get_json(key)
        try:
            if found is None:
                storage.put_json(key, claim, if_none_match=True)
            elif found[0].get("expires", 0) < time.time():
                storage.put_json(key, claim, if_match=found[1])
            else:
                return False
        except WriteConflict:
            # Our own write may have landed with its reply lost (the retry then fails the condition): the claim
            # is ours if it holds our owner id.
            again = storage.get_json(key)
            return again is not None and again[0].get("owner") == claim["owner"]
        return True

    def refit(self) -> dict[str, Any]:
        """Fit the best candidate on the whole training part and publish it; fail the job when none scored."""
        from mlservice.training import metrics, search

        if not self._claim_refit():
            return self._result("refit_elsewhere")
        req = self._request()
        planned, folds = search.candidates(req), search.folds_of(req)
        scores = self._scores()
        metric = next((r["metric"] for r in scores.values() if "metric" in r), metrics.scoring_for(req.task or ""))
        summary = search.summarise(planned, folds, scores, metric, search.round_sizes(req, len(planned)))
        if summary["best"] is None:
            reasons = sorted({e for c in summary["candidates"] for e in c["errors"]})[:5]
            error = ServiceError(
                "training_failed",
                f"every one of the {len(planned)} candidates failed on at least one fold: " + "; ".join(reasons),
            )
            fail(self.model, self.version, self.token, error)
            return self._result(registry.FAILED, code=error.code)
        body = {k: v for k, v in self.stored["request"].items() if k not in search.SEARCH_FIELDS}
        body["hyperparameters"] = planned[summary["best"]]
        return self.fit(body, {"search": {"strategy": search.strategy_of(req), **summary}})
