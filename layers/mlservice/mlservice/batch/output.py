"""Where a batch run's results go: the predictions file (compressed like its input) and the rejected rows,
each streamed into S3 and visible only once complete."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from mlservice import storage
from mlservice.batch.formats import CSV, Compressor


@dataclass
class Counts:
    rows_in: int = 0
    predicted: int = 0
    rejected: int = 0
    lines: int = 0

    def add(self, other: Counts) -> None:
        self.rows_in += other.rows_in
        self.predicted += other.predicted
        self.rejected += other.rejected
        self.lines += other.lines


class OutputFile:
    """Text in, bytes (gzip when asked) out to one S3 object through a multipart upload."""

    def __init__(self, key: str, fmt: str, compressed: bool, part_bytes: int) -> None:
        self.key = key
        content = "text/csv" if fmt == CSV else "application/x-ndjson"
        self.writer = storage.MultipartWriter(key, "application/gzip" if compressed else content, part_bytes)
        self.compressor = Compressor() if compressed else None

    def write(self, text: str) -> None:
        if text:
            self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        self.writer.write(self.compressor.feed(data) if self.compressor else data)

    def close(self) -> None:
        if self.compressor:
            self.writer.write(self.compressor.finish())
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class ErrorFile:
    """Rejected rows as JSON Lines ({"line", "reason", "record"}); the object exists only if rows were rejected."""

    def __init__(self, key: str, part_bytes: int) -> None:
        self.key = key
        self.part_bytes = part_bytes
        self.writer: storage.MultipartWriter | None = None
        self.count = 0

    def add(self, rejected: list[dict], line_offset: int = 0) -> None:
        if not rejected:
            return
        if self.writer is None:
            self.writer = storage.MultipartWriter(self.key, "application/x-ndjson", self.part_bytes)
        for row in rejected:
            if line_offset:
                row = {**row, "line": row["line"] + line_offset}
            self.writer.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self.count += len(rejected)

    def close(self) -> str | None:
        """Complete the file; returns its key, or None (and removes a stale one) when nothing was rejected."""
        if self.writer is None:
            storage.delete(self.key)
            return None
        self.writer.close()
        return self.key

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class Results:
    """A run's predictions and rejected rows: written as the run goes, then completed together — or, when the
    run fails, discarded together, so that nothing partial is ever visible."""

    def __init__(self, output_key: str, errors_key: str, fmt: str, compressed: bool, part_bytes: int) -> None:
        self.output = OutputFile(output_key, fmt, compressed, part_bytes)
        self.errors = ErrorFile(errors_key, part_bytes)

    @contextlib.contextmanager
    def discarded_on_failure(self) -> Iterator[Results]:
        try:
            yield self
        except BaseException:
            self.output.abort()
            self.errors.abort()
            raise

    def complete(self) -> dict:
        """Complete both files; returns the manifest's `outputs` (the errors file is None when none was rejected)."""
        self.output.close()
        return {"predictions": self.output.key, "errors": self.errors.close()}
