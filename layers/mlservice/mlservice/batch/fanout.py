"""Large batch files, split across workers: SQS carries one message per line-aligned byte range.

The coordinator (the S3-triggered function) reads only the header and a few bytes around each boundary,
writes the job's plan with a create-only-if-absent write (a redelivered event finds it and stops) and queues
one message per range. Each worker predicts its range into a part object, then records the part in the
job's progress document with a compare-and-swap (`IfMatch`); the worker whose write completes the set is the
one that assembles the parts, in order, into the output and writes the manifest. A worker that fails leaves
its message to SQS, which redelivers it (and after the queue's maxReceiveCount, moves it to the dead-letter
queue); a redelivered message for a finished part changes nothing.

Compressed files are not split (a gzip stream cannot be entered mid-way) and are predicted by one function.
Files above the threshold must have one record per line (no quoted newlines), which is checked per part:
a record broken across a boundary is rejected with its line, never silently merged.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mlservice import keys, storage
from mlservice.batch.formats import CSV
from mlservice.batch.output import Counts, ErrorFile, OutputFile
from mlservice.batch.runner import PART_BYTES, acquire_lease, manifest, release_lease, score_stream
from mlservice.errors import WriteConflict
from mlservice.serving.model_cache import LoadedModel, cache
from mlservice.settings import get_settings

PROBE_BYTES = 64 * 1024
ASSEMBLY_LEASE_SECONDS = 900


def _plan_key(job: str) -> str:
    return keys.batch_job_prefix(job) + "plan.json"


def _progress_key(job: str) -> str:
    return keys.batch_job_prefix(job) + "progress.json"


def _part_key(job: str, part: int, kind: str) -> str:
    return f"{keys.batch_job_prefix(job)}parts/{part:05d}.{kind}"


def _next_newline(key: str, offset: int, size: int) -> int:
    """The offset just after the first newline at or after `offset` (or the end of the object)."""
    while offset < size:
        end = min(size - 1, offset + PROBE_BYTES - 1)
        block = storage.open_stream(key, (offset, end))["Body"].read()
        found = block.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset = end + 1
    return size


def line_ranges(key: str, size: int, part_bytes: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges of about `part_bytes`, each ending just after a newline."""
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < size:
        cut = _next_newline(key, start + part_bytes, size) if start + part_bytes < size else size
        ranges.append((start, cut - 1))
        start = cut
    return ranges


def _header(key: str, size: int) -> str | None:
    """The CSV header record (the first line), which every part after the first needs."""
    end = _next_newline(key, 0, size)
    if end == 0:
        return None
    text = storage.open_stream(key, (0, end - 1))["Body"].read().decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").rstrip("\r\n")


def start(
    spec: keys.BatchInput,
    etag: str,
    size: int,
    fmt: str,
    loaded: LoadedModel,
    stage: str | None,
    started: float,
    job: str,
    revision: str,
) -> dict:
    """Plan the ranges and queue one message per range; a no-op when the plan already exists."""
    settings = get_settings()
    ranges = line_ranges(spec.key, size, settings.batch_part_bytes)
    plan = {
        "job": job,
        "input": {"key": spec.key, "etag": etag.strip('"'), "bytes": size, "revision": revision},
        "model": spec.model,
        "version": loaded.version,
        "stage": stage,
        "format": fmt,
        "ranges": ranges,
        "started": started,
        "header": _header(spec.key, size) if fmt == CSV else None,
    }
    try:
        storage.put_json(_plan_key(job), plan, if_none_match=True)
    except WriteConflict:
        return {"status": "in_progress", "job": job}
    storage.send_messages(settings.batch_queue_url, [json.dumps({"job": job, "part": i}) for i in range(len(ranges))])
    return {"status": "fanned_out", "job": job, "parts": len(ranges)}


def _record_part(job: str, part: int, total: int) -> bool:
    """Add a finished part to the progress set; True for the one caller whose write completed the set."""
    for _ in range(200):
        found = storage.get_json(_progress_key(job))
        done, etag = (found[0]["done"], found[1]) if found else ([], None)
        if part in done:
            return len(done) == total  # a redelivery: completion may still need doing if assembly crashed
        updated = {"done": sorted([*done, part])}
        try:
            if etag is None:
                storage.put_json(_progress_key(job), updated, if_none_match=True)
            else:
                storage.put_json(_progress_key(job), updated, if_match=etag)
            return len(updated["done"]) == total
        except WriteConflict:
            time.sleep(0.01)
    raise RuntimeError(f"could not record part {part} of job {job}: too much contention")


def process_part(message: dict[str, Any]) -> dict:
    """Predict one range (an SQS message's work) and, if it was the last, assemble the job."""
    job, part = str(message["job"]), int(message["part"])
    found = storage.get_json(_plan_key(job))
    if found is None:
        return {"status": "finished", "job": job}  # the job completed and its state was cleaned up
    plan = found[0]
    total = len(plan["ranges"])
    if not storage.exists(_part_key(job, part, "json")):
        loaded = cache.get(plan["model"], plan["version"])
        start_byte, end_byte = plan["ranges"][part]
        body = storage.open_stream(plan["input"]["key"], (start_byte, end_byte))["Body"]
        output = OutputFile(_part_key(job, part, "out"), plan["format"], False, PART_BYTES)
        errors = ErrorFile(_part_key(job, part, "errors"), PART_BYTES)
        header = None if part == 0 else plan.get("header")
        try:
            counts, header_record = score_stream(
                body, plan["format"], False, loaded, output, errors, header_record=header, write_header=part == 0
            )
        except BaseException:
            output.abort()
            errors.abort()
            raise
        output.close()
        errors.close()
        storage.put_json(_part_key(job, part, "json"), {**counts.__dict__, "header": header_record})
    if _record_part(job, part, total):
        return assemble(job, plan)
    return {"status": "part_done", "job": job, "part": part}


def _stream_copy(key: str, sink: OutputFile) -> None:
    body = storage.open_stream(key)["Body"]
    while block := body.read(PART_BYTES):
        sink.write_bytes(block)


def assemble(job: str, plan: dict) -> dict:
    """Concatenate the parts in order into the output (and the rejected rows, with absolute line numbers),
    write the manifest, and remove the job's state. One assembler at a time, under a lease."""
    assembly_lease = keys.batch_job_prefix(job) + "assembly.json"
    if not acquire_lease(assembly_lease, ASSEMBLY_LEASE_SECONDS):
        return {"status": "assembling", "job": job}
    spec = keys.parse_batch_input(plan["input"]["key"])
    output = OutputFile(spec.output_key, plan["format"], False, PART_BYTES)
    errors = ErrorFile(spec.errors_key, PART_BYTES)
    totals = Counts()
    offset = 0
    try:
        for part in range(len(plan["ranges"])):
            counts = storage.get_json(_part_key(job, part, "json"))[0]
            _stream_copy(_part_key(job, part, "out"), output)
            if storage.exists(_part_key(job, part, "errors")):
                body = storage.open_stream(_part_key(job, part, "errors"))["Body"]
                errors.add([json.loads(line) for line in body.iter_lines() if line], offset if part else 0)
            offset += counts["lines"]
            totals.add(Counts(counts["rows_in"], counts["predicted"], counts["rejected"], counts["lines"]))
        output.close()
        outputs = {"predictions": spec.output_key, "errors": errors.close()}
    except BaseException:
        output.abort()
        errors.abort()
        release_lease(assembly_lease)
        raise
    input_ = plan["input"]
    document = manifest(
        spec,
        input_["key"],
        input_["etag"],
        input_["bytes"],
        plan["started"],
        version=plan["version"],
        stage=plan["stage"],
        counts=totals,
        outputs=outputs,
        parts=len(plan["ranges"]),
        revision=input_["revision"],
    )
    storage.put_json(spec.manifest_key, document)
    storage.delete_prefix(keys.batch_job_prefix(job))
    return document
