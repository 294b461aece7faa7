"""Compare-and-swap on one JSON document in S3: the one way the service changes shared state.

Every piece of state that more than one writer can touch — a model's registry, a batch job's plan, progress
and leases, Idempotency-Key records — is a single JSON object changed by read → change → conditional write
(`IfMatch` on the ETag that was read, or `IfNoneMatch` for the first write), and retried from a fresh read when
another writer got there first. Nothing else writes those objects.

Retry safety. A write whose reply is lost may still have been applied: botocore then retries it and meets the
precondition failure its own first attempt caused, or the caller sees a connection error after botocore gave
up. Either way this module re-reads the document before trying again. A change made with a `token` is
recorded in the document it produced (`applied[token]`, with the result it returned and when), so when the
re-read shows the token the write is recognised as this request's own and its result is returned — it is not
applied twice. The document keeps the newest 100 tokens of the last IDEMPOTENCY_TTL_SECONDS. Changes made
without a token must be idempotent by content (a lease naming its owner, a set of finished parts).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlservice import storage
from mlservice.errors import ServiceError, StorageUnavailable, WriteConflict
from mlservice.settings import get_settings

MAX_ATTEMPTS = 60
# Reads that failed and writes whose outcome is unknown (the store failed after botocore's own retries) are
# retried this many times in all before the request gives up with 503 storage_unavailable.
MAX_UNKNOWN_OUTCOMES = 2
APPLIED = "applied"
# Tokens remembered per document (the newest, and none older than IDEMPOTENCY_TTL_SECONDS): far more than the
# writers that can race on one object while a request retries.
APPLIED_LIMIT = 100


@dataclass(frozen=True)
class Change:
    """What a change function decided: the new document (None: leave the object as it is) and the result to
    hand back to the caller (JSON-ready, since it is stored with the token)."""

    document: dict | None
    result: Any = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))


def cutoff() -> str:
    """Tokens older than this are forgotten: an Idempotency-Key's promise lasts IDEMPOTENCY_TTL_SECONDS, and a
    write retried within one request needs seconds."""
    horizon = datetime.now(UTC) - timedelta(seconds=get_settings().idempotency_ttl_seconds)
    return horizon.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _applied(document: dict | None, token: str | None) -> dict | None:
    """The record of `token`'s change in the document, if it landed and is not older than the cutoff."""
    if token is None or document is None:
        return None
    landed = document.get(APPLIED, {}).get(token)
    return landed if landed is not None and landed["at"] >= cutoff() else None


def _remember(applied: dict, token: str, result: Any) -> dict:
    """The newest APPLIED_LIMIT tokens, by time (the stored document's keys are sorted, not in time order)."""
    horizon = cutoff()
    kept = {t: v for t, v in applied.items() if t != token and v["at"] >= horizon}
    kept[token] = {"result": result, "at": now_iso()}
    newest = sorted(kept.items(), key=lambda item: item[1]["at"])[-APPLIED_LIMIT:]
    return dict(newest)


def read(key: str) -> tuple[dict | None, str | None]:
    """The document and its ETag, or (None, None) when it does not exist."""
    found = storage.get_json(key)
    return (found[0], found[1]) if found else (None, None)


def update(
    key: str,
    change: Callable[[dict | None], Change],
    *,
    token: str | None = None,
    check: Callable[[dict], None] | None = None,
    what: str,
) -> Any:
    """Apply `change` to the document at `key` atomically and return its result.

    `change` receives the current document (None when absent; it may modify it in place) and returns a Change,
    or raises a ServiceError to refuse. `check` runs on every document about to be written — the place where
    an invariant of the document is enforced whatever the change was. `what` names the object in a 503.
    """
    unknown = 0
    attempt = 0
    while attempt < MAX_ATTEMPTS:
        try:
            current, etag = read(key)
        except StorageUnavailable:
            # A read that failed after botocore's retries is retried here too, like a write whose outcome is
            # unknown: a step that must follow a change (recording its result) should not fail on one bad read.
            unknown += 1
            if unknown > MAX_UNKNOWN_OUTCOMES:
                raise
            _backoff(attempt + unknown)
            continue
        landed = _applied(current, token)
        if landed is not None:
            return landed["result"]  # this request's write already landed
        outcome = change(current)
        if outcome.document is None:
            return outcome.result
        document = outcome.document
        if token is not None:
            document[APPLIED] = _remember(document.get(APPLIED, {}), token, outcome.result)
        if check is not None:
            check(document)
        try:
            if etag is None:
                storage.put_json(key, document, if_none_match=True)
            else:
                storage.put_json(key, document, if_match=etag)
            return outcome.result
        except WriteConflict:
            attempt += 1
            _backoff(attempt)
        except StorageUnavailable:
            # The write may or may not have landed: the next round's read tells (by the token, or by the
            # content for idempotent changes). Give up with the 503 after a couple of unknown outcomes.
            unknown += 1
            if unknown > MAX_UNKNOWN_OUTCOMES:
                raise
            _backoff(attempt + unknown)
    raise ServiceError("write_contention", f"too many concurrent writers on {what}; retry the request", retry_after=1)
