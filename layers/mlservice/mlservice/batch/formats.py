"""Reading and writing batch files: CSV with a header row and JSON Lines, each optionally gzip-compressed.

Input is read as a stream of records in chunks of a fixed number of rows, so memory does not depend on the
file's size. A CSV record may span lines (a quoted field holding a newline): lines are joined until their
quotes balance. Each record keeps its line number for error reports, and its original text, which the CSV
output reuses verbatim so pass-through columns come back byte for byte.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from mlservice.errors import bad_request

READ_BYTES = 1024 * 1024
CSV, JSONL = "csv", "jsonl"


def file_format(key: str) -> tuple[str, bool]:
    """(csv|jsonl, gzip?) from the key's extension; 400 for anything else."""
    lower = key.lower()
    compressed = lower.endswith(".gz")
    base = lower[:-3] if compressed else lower
    if base.endswith(".csv"):
        return CSV, compressed
    if base.endswith((".jsonl", ".ndjson")):
        return JSONL, compressed
    raise bad_request("batch input must be .csv or .jsonl (optionally .gz)", code="unsupported_format")


@dataclass
class Chunk:
    """Consecutive records with the line number (1-based, in the input) where each one starts."""

    lines: list[int]
    records: list[str]


def _raw_lines(stream: BinaryIO) -> Iterator[bytes]:
    pending = b""
    while True:
        block = stream.read(READ_BYTES)
        if not block:
            break
        block = pending + block
        parts = block.split(b"\n")
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending


class RecordReader:
    """Records of a byte stream in chunks of `chunk_rows`; blank lines are skipped (but counted).

    `chunks()` raises 400 `not_utf8` naming the line when the bytes are not UTF-8, and 400 `unreadable_gzip`
    when a .gz file is not gzip. `last_line` is the number of the last line read, for callers that stitch
    parts of a file back together.
    """

    def __init__(self, stream: BinaryIO, fmt: str, compressed: bool, chunk_rows: int, first_line: int = 1) -> None:
        self.source: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
        self.fmt = fmt
        self.chunk_rows = max(1, chunk_rows)
        self.first_line = first_line
        self.last_line = first_line - 1

    def chunks(self) -> Iterator[Chunk]:
        lines: list[int] = []
        records: list[str] = []
        open_record: list[str] = []
        open_line = 0
        try:
            for raw in _raw_lines(self.source):
                self.last_line += 1
                number = self.last_line
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise bad_request(
                        f"line {number} is not valid UTF-8 (byte {error.start})", code="not_utf8"
                    ) from None
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]  # a byte-order mark from spreadsheet exports
                if text.endswith("\r"):
                    text = text[:-1]
                if open_record:
                    open_record.append(text)
                    if sum(part.count('"') for part in open_record) % 2:
                        continue
                    text, line = "\n".join(open_record), open_line
                    open_record = []
                else:
                    if not text.strip():
                        continue
                    line = number
                    if self.fmt == CSV and text.count('"') % 2:
                        open_record, open_line = [text], number
                        continue
                lines.append(line)
                records.append(text)
                if len(records) >= self.chunk_rows:
                    yield Chunk(lines, records)
                    lines, records = [], []
        except (OSError, EOFError, zlib.error) as error:
            raise bad_request(f"the file is not valid gzip ({error})", code="unreadable_gzip") from None
        if open_record:
            lines.append(open_line)
            records.append("\n".join(open_record))  # an unbalanced quote: the row will be rejected, not dropped
        if records:
            yield Chunk(lines, records)


def parse_csv_header(record: str) -> list[str]:
    names = next(csv.reader([record]))
    names = [n.strip() for n in names]
    if not names or all(not n for n in names):
        raise bad_request("the CSV file has no header row", code="missing_header")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_request(f"the CSV header repeats column(s): {', '.join(duplicates[:10])}", code="invalid_header")
    return names


def split_csv(records: list[str]) -> list[list[str]]:
    """Fields of each record; the plain split when no record is quoted (the common, fast case)."""
    if any('"' in r for r in records):
        return [next(csv.reader([r])) if r else [] for r in records]
    return [r.split(",") for r in records]


def csv_field(value: Any) -> str:
    """One output field, quoted only when it must be."""
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def parse_json_line(record: str, line: int) -> dict | str:
    """The object on a JSON Lines record, or the reason it is not one."""
    try:
        value = json.loads(record, parse_constant=_reject_constant)
    except ValueError as error:
        return f"line {line} is not valid JSON ({error})"
    if not isinstance(value, dict):
        return f"line {line} is not a JSON object"
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class Compressor:
    """gzip output produced incrementally, so compressed output streams in bounded memory too."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._gzip = gzip.GzipFile(fileobj=self._buffer, mode="wb", compresslevel=6, mtime=0)

    def feed(self, data: bytes) -> bytes:
        self._gzip.write(data)
        return self._drain()

    def finish(self) -> bytes:
        self._gzip.close()
        return self._drain()

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data
