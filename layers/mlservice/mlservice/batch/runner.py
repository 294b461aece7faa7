"""One batch job: an input object (key + ETag) predicted into its output, exactly once in effect.

S3 delivers events at least once, so a job is identified by the input's key and ETag: a finished job's
manifest records the ETag and a redelivered event for it is a no-op; a job in flight holds a lease object
(created with `IfNoneMatch`), so a concurrent duplicate backs off, and a crashed run's lease expires so a
retry can take over. Outputs are multipart uploads completed only at the end: readers see the whole output
or none of it. A file that cannot be used at all (unknown model, no header, not UTF-8, wrong columns) gets a
manifest naming the error and no output.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from typing import Any, BinaryIO

from mlservice import keys, storage
from mlservice.batch.formats import CSV, Chunk, RecordReader, file_format, parse_csv_header
from mlservice.batch.output import Counts, ErrorFile, OutputFile
from mlservice.batch.scoring import Scorer
from mlservice.errors import ServiceError, WriteConflict, bad_request
from mlservice.serving.model_cache import LoadedModel
from mlservice.serving.predictor import select_model
from mlservice.settings import get_settings

PART_BYTES = 8 * 1024 * 1024


def job_id(key: str, etag: str, revision: str = "") -> str:
    return hashlib.sha256(f"{key}\n{etag.strip(chr(34))}\n{revision}".encode()).hexdigest()[:32]


def revision_of(head: dict) -> str:
    """Which upload of the key this is: its version id where the bucket keeps versions, else its timestamp.

    A redelivered event sees the same revision (a duplicate); uploading the same bytes again makes a new one,
    which is how a user re-runs a file after fixing what made it fail.
    """
    version = head.get("VersionId")
    if version and version != "null":
        return str(version)
    return head["LastModified"].isoformat()


def lease_key(job: str) -> str:
    return keys.batch_job_prefix(job) + "lease.json"


def acquire_lease(key: str, seconds: float) -> bool:
    """Hold the lease object at `key` for `seconds`; False when another live run holds it."""
    for _ in range(3):
        now = time.time()
        try:
            storage.put_json(key, {"expires": now + seconds}, if_none_match=True)  # the common case: one request
            return True
        except WriteConflict:
            pass
        found = storage.get_json(key)
        if found is None:
            continue  # released in between: try again
        lease, etag = found
        if lease.get("expires", 0) > now:
            return False
        try:
            storage.put_json(key, {"expires": now + seconds}, if_match=etag)  # take over a dead run's lease
            return True
        except WriteConflict:
            return False
    return False


def release_lease(key: str) -> None:
    storage.delete(key)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def score_stream(
    stream: BinaryIO,
    fmt: str,
    compressed: bool,
    loaded: LoadedModel,
    output: OutputFile,
    errors: ErrorFile,
    *,
    header_record: str | None = None,
    write_header: bool = True,
) -> tuple[Counts, str | None]:
    """Predict every record of a stream into `output`, rejected ones into `errors`; returns the counts and the
    CSV header record (read from the stream when not given). Line numbers count from the stream's start."""
    with contextlib.closing(storage.Prefetcher(stream)) as prefetched:
        reader = RecordReader(prefetched, fmt, compressed, get_settings().batch_chunk_rows)
        chunks = reader.chunks()
        pending: Chunk | None = None
        if fmt == CSV:
            if header_record is None:
                first = next(chunks, None)
                if first is None:
                    raise bad_request("the file is empty: a CSV file needs a header row", code="missing_header")
                header_record = first.records[0]
                pending = Chunk(first.lines[1:], first.records[1:])
            scorer = Scorer(loaded, CSV, parse_csv_header(header_record))
            if write_header:
                output.write(scorer.csv_header(header_record))
        else:
            scorer = Scorer(loaded, fmt)
        counts = Counts()
        for chunk in itertools.chain([pending] if pending else [], chunks):
            if not chunk.records:
                continue
            scored = scorer.score(chunk)
            output.write(scored.text)
            errors.add(scored.rejected)
            counts.rows_in += len(chunk.records)
            counts.predicted += scored.predicted
            counts.rejected += len(scored.rejected)
        counts.lines = reader.last_line
    return counts, header_record


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
    if spec is not None:
        return spec.manifest_key
    return keys.BATCH_OUTPUT + "_invalid/" + key[len(keys.BATCH_INPUT) :] + ".manifest.json"


def fail(
    spec: keys.BatchInput | None, key: str, etag: str, size: int, started: float, error: ServiceError, **kw: Any
) -> dict:
    """Record an unusable file: a manifest naming the error, and no output (an older one is removed)."""
    if spec is not None:
        storage.delete(spec.output_key)
        storage.delete(spec.errors_key)
    document = manifest(spec, key, etag, size, started, error=error, **kw)
    storage.put_json(manifest_key_for(key, spec), document)
    return document


def already_done(spec: keys.BatchInput, etag: str, revision: str) -> bool:
    found = storage.get_json(spec.manifest_key)
    recorded = found[0].get("input", {}) if found else {}
    return recorded.get("etag") == etag.strip('"') and recorded.get("revision") == revision


def handle_object(key: str, etag: str, size: int, remaining_seconds: float) -> dict:
    """Run (or skip, or fan out) the job for one created object. Returns the manifest or a status record."""
    started = time.time()
    try:
        spec = keys.parse_batch_input(key)
    except ServiceError as error:
        return fail(None, key, etag, size, started, error)
    head = storage.head(key)
    if head is None or head["ETag"].strip('"') != etag.strip('"'):
        return {"status": "superseded", "key": key}  # a newer upload's own event will handle it
    revision = revision_of(head)
    if already_done(spec, etag, revision):
        return {"status": "duplicate", "manifest": spec.manifest_key}
    job = job_id(key, etag, revision)
    if not acquire_lease(lease_key(job), remaining_seconds + 60):
        return {"status": "in_progress", "job": job}
    output: OutputFile | None = None
    errors: ErrorFile | None = None
    try:
        try:
            fmt, compressed = file_format(key)
            loaded, stage = select_model(spec.model, spec.stage, spec.version)
        except ServiceError as error:
            return fail(spec, key, etag, size, started, error, revision=revision)
        settings = get_settings()
        if size > settings.batch_fanout_bytes and not compressed and settings.batch_queue_url:
            from mlservice.batch import fanout

            return fanout.start(spec, etag, size, fmt, loaded, stage, started, job, revision)
        output = OutputFile(spec.output_key, fmt, compressed, PART_BYTES)
        errors = ErrorFile(spec.errors_key, PART_BYTES)
        try:
            counts, _ = score_stream(storage.open_stream(key)["Body"], fmt, compressed, loaded, output, errors)
        except ServiceError as error:
            output.abort()
            errors.abort()
            return fail(spec, key, etag, size, started, error, version=loaded.version, stage=stage, revision=revision)
        output.close()
        outputs = {"predictions": spec.output_key, "errors": errors.close()}
        document = manifest(
            spec,
            key,
            etag,
            size,
            started,
            version=loaded.version,
            stage=stage,
            counts=counts,
            outputs=outputs,
            revision=revision,
        )
        storage.put_json(spec.manifest_key, document)
        return document
    except BaseException:
        for sink in (output, errors):
            if sink is not None:
                sink.abort()
        raise
    finally:
        release_lease(lease_key(job))
