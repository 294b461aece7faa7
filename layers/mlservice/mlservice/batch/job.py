"""One batch job — an uploaded input object predicted into its output — and the state that makes it run exactly
once in effect: its identity, lease, plan (when fanned out), progress and manifest.

S3 delivers events at least once and a run can die at any point, so:
- A job is one upload: the input's key, ETag and revision (version id, or timestamp where the bucket keeps no
  versions). A redelivered event finds the job's manifest and is a no-op; re-uploading the same bytes is a new
  job, which is how a user re-runs a file.
- A run holds the job's lease, an object naming its owner and an expiry, renewed in the background every
  third of BATCH_LEASE_SECONDS while it works. Another run meeting a live lease fails (LeaseHeld), so Lambda
  retries the event later with backoff instead of reporting a success that predicted nothing; a killed run's
  lease lapses within BATCH_LEASE_SECONDS and the retry takes it over.
- Outputs are written whole (multipart uploads completed at the end) and deterministically, so a run that
  is repeated after a crash replaces them with the same content: no row is lost or doubled.
- The input is read only as the upload the job is for (`IfMatch` on its ETag); a job whose input is uploaded
  again while it runs stops as superseded and writes nothing — the newer upload's job writes the outputs.
- The manifest is written last; it is what marks the job done.
All of this state is changed through mlservice.atomic, like the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from mlservice import atomic, keys, storage
from mlservice.atomic import Change
from mlservice.batch.output import Counts
from mlservice.errors import ObjectChanged, ServiceError
from mlservice.settings import get_settings


class LeaseHeld(RuntimeError):
    """Another run holds this job's live lease: this invocation fails so that Lambda (or SQS) retries it later."""


def job_id(model: str, key: str, etag: str, revision: str = "") -> str:
    digest = hashlib.sha256(f"{key}\n{etag.strip(chr(34))}\n{revision}".encode()).hexdigest()
    return keys.batch_job_id(model, digest)


def revision_of(head: dict) -> str:
    """Which upload of the key this is: its version id where the bucket keeps versions, else its timestamp.

    A redelivered event sees the same revision (a duplicate); uploading the same bytes again makes a new one,
    which is how a user re-runs a file after fixing what made it fail.
    """
    version = head.get("VersionId")
    if version and version != "null":
        return str(version)
    return head["LastModified"].isoformat()


# ---------------------------------------------------------------- leases


class Lease:
    """The right to work on a job (or to assemble one), held by one owner until released or lapsed."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.owner = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()

    def _take(self, renewing: bool) -> None:
        seconds = get_settings().batch_lease_seconds

        def change(current: dict | None) -> Change:
            now = time.time()
            mine = current is not None and current.get("owner") == self.owner
            if current is not None and not mine and current.get("expires", 0) > now:
                raise LeaseHeld(f"job lease {self.key} is held by another run for {current['expires'] - now:.0f} s")
            if renewing and not mine:
                raise LeaseHeld(f"job lease {self.key} was taken over")
            if mine and current["expires"] - now > seconds * 2 / 3:
                return Change(None)  # still fresh: this run's own write landed (its reply may have been lost)
            return Change({"owner": self.owner, "expires": now + seconds})

        atomic.update(self.key, change, what=f"lease {self.key}")

    def _renew_until_stopped(self) -> None:
        interval = max(0.05, get_settings().batch_lease_seconds / 3)
        while not self._stop.wait(interval):
            try:
                self._take(renewing=True)
            except LeaseHeld:
                self.lost = True  # checked before the run commits anything
                return
            except Exception:  # a storage hiccup: the next renewal tries again, well before expiry
                continue

    @contextlib.contextmanager
    def held(self) -> Iterator[Lease]:
        """Acquire (or take over a lapsed lease), renew in the background, release at the end.

        Raises LeaseHeld when another run's lease is live. On an exception the lease is released too: the
        retry need not wait for it to lapse. Only a killed process leaves it behind, for BATCH_LEASE_SECONDS.
        """
        self._take(renewing=False)
        renewer = threading.Thread(target=self._renew_until_stopped, name="lease-renewal", daemon=True)
        renewer.start()
        try:
            yield self
        finally:
            self._stop.set()
            renewer.join()
            self.release()

    def check(self) -> None:
        """Raise LeaseHeld when the lease was lost (another run took it over): do not commit anything then."""
        if self.lost:
            raise LeaseHeld(f"job lease {self.key} was taken over while this run worked")

    def release(self) -> None:
        with contextlib.suppress(Exception):  # a lease left behind lapses by itself
            current, _ = atomic.read(self.key)
            if current is not None and current.get("owner") == self.owner:
                storage.delete(self.key)


# ---------------------------------------------------------------- plans and progress (fan-out)


def create_plan(job: str, plan: dict) -> dict:
    """The job's plan, created once (a redelivered event gets the existing one back)."""

    def change(current: dict | None) -> Change:
        if current is not None:
            return Change(None, current)
        return Change({**plan, "queued": False}, {**plan, "queued": False})

    return atomic.update(keys.batch_plan_key(job), change, what=f"batch job {job}")


def mark_queued(job: str) -> None:
    """Record that every range's message was sent (until then a redelivered event sends them again)."""

    def change(current: dict | None) -> Change:
        if current is None or current.get("queued"):
            return Change(None)
        return Change({**current, "queued": True})

    atomic.update(keys.batch_plan_key(job), change, what=f"batch job {job}")


def read_plan(job: str) -> dict | None:
    return atomic.read(keys.batch_plan_key(job))[0]


def record_part(job: str, part: int, total: int) -> bool:
    """Add a finished part to the job's progress; True when every part is finished (for every caller that
    sees the set complete, so a crashed assembly is resumed by the next delivery of any part's message)."""

    def change(current: dict | None) -> Change:
        done = set((current or {}).get("done", []))
        if part in done:
            return Change(None, len(done) == total)
        done.add(part)
        return Change({"done": sorted(done)}, len(done) == total)

    return atomic.update(keys.batch_progress_key(job), change, what=f"batch job {job}")


def finish(job: str) -> None:
    """Remove a finished job's state: the plan first, so a late message finds the job finished, not broken."""
    storage.delete(keys.batch_plan_key(job))
    storage.delete_prefix(keys.batch_job_prefix(job))


# ---------------------------------------------------------------- manifests


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def manifest(
    spec: keys.BatchInput | None,
    key: str,
    etag: str,
    size: int,
    started: float,
    *,
    version: int | None = None,
    stage: str | None = None,
    counts: Counts | None = None,
    outputs: dict | None = None,
    error: ServiceError | None = None,
    parts: int = 1,
    revision: str = "",
) -> dict:
    finished = time.time()
    counts = counts or Counts()
    return {
        "status": "failed" if error else "succeeded",
        "error": {"code": error.code, "message": error.message} if error else None,
        "input": {"key": key, "etag": etag.strip('"'), "bytes": size, "revision": revision},
        "model": spec.model if spec else None,
        "version": version,
        "stage": stage,
        "rows": {"in": counts.rows_in, "predicted": counts.predicted, "rejected": counts.rejected},
        "started": iso(started),
        "finished": iso(finished),
        "seconds": round(finished - started, 3),
        "outputs": outputs or {},
        "parts": parts,
    }


def manifest_key_for(key: str, spec: keys.BatchInput | None) -> str:
    return spec.manifest_key if spec is not None else keys.invalid_batch_manifest_key(key)


def write_manifest(key: str, spec: keys.BatchInput | None, document: dict) -> dict:
    storage.put_json(manifest_key_for(key, spec), document)
    return document


def fail(
    spec: keys.BatchInput | None, key: str, etag: str, size: int, started: float, error: ServiceError, **kw: Any
) -> dict:
    """Record an unusable file: a manifest naming the error, and no output (an older one is removed)."""
    if spec is not None:
        storage.delete(spec.output_key)
        storage.delete(spec.errors_key)
    return write_manifest(key, spec, manifest(spec, key, etag, size, started, error=error, **kw))


def check_current(key: str, etag: str) -> None:
    """Raise ObjectChanged when the input was uploaded again since the job began: its outputs belong to the
    newer upload's job, so this one must not write them (checked just before they are completed)."""
    head = storage.head(key)
    if head is None or head["ETag"].strip('"') != etag.strip('"'):
        raise ObjectChanged(key)


def already_done(spec: keys.BatchInput, etag: str, revision: str) -> bool:
    found = storage.get_json(spec.manifest_key)
    recorded = found[0].get("input", {}) if found else {}
    return recorded.get("etag") == etag.strip('"') and recorded.get("revision") == revision
