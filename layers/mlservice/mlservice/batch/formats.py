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


class RecordReader:
    """Records of a byte stream in chunks of `chunk_rows`; empty lines are skipped (but counted).

    `chunks()` raises 400 `not_utf8` naming the line when the bytes are not UTF-8, and 400 `unreadable_gzip`
    when a .gz file is not gzip. `last_line` is the number of the last line read, for callers that stitch
    parts of a file back together.
    """

    def __init__(self, stream: BinaryIO, fmt: str, compressed: bool, chunk_rows: int) -> None:
        self.source: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
        self.fmt = fmt
        self.chunk_rows = max(1, chunk_rows)
        self.last_line = 0

    def _blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines (only the stream's last block may lack a final newline)."""
        pending = b""
        while block := self.source.read(READ_BYTES):
            block = pending + block
            cut = block.rfind(b"\n") + 1
            pending = block[cut:]
            if cut:
                yield block[:cut]
        if pending:
            yield pending

    def chunks(self) -> Iterator[Chunk]:
        """Decoded and split a block at a time; the per-line path runs only for blocks that need it (quotes,
        carriage returns, blank lines), so clean files cost a few C-level calls per megabyte."""
        lines: list[int] = []
        records: list[str] = []
        open_record: list[str] = []
        open_line = 0
        try:
            for block in self._blocks():
                start = self.last_line + 1
                try:
                    text = block.decode("utf-8")
                except UnicodeDecodeError as error:
                    number = start + block.count(b"\n", 0, error.start)
                    raise bad_request(f"line {number} is not valid UTF-8", code="not_utf8") from None
                parts = text.split("\n")
                if parts[-1] == "":
                    parts.pop()
                self.last_line += len(parts)
                if start == 1 and parts and parts[0].startswith("\ufeff"):
                    parts[0] = parts[0][1:]  # a byte-order mark from spreadsheet exports
                if not open_record and '"' not in text and "\r" not in text and "" not in parts:
                    records.extend(parts)
                    lines.extend(range(start, start + len(parts)))
                else:
                    for number, line_text in enumerate(parts, start):
                        if line_text.endswith("\r"):
                            line_text = line_text[:-1]
                        if open_record:
                            open_record.append(line_text)
                            if sum(part.count('"') for part in open_record) % 2:
                                continue
                            line_text, number = "\n".join(open_record), open_line
                            open_record = []
                        elif not line_text:
                            continue  # blank lines are not rows
                        elif self.fmt == CSV and line_text.count('"') % 2:
                            open_record, open_line = [line_text], number
                            continue
                        lines.append(number)
                        records.append(line_text)
                while len(records) >= self.chunk_rows:
                    yield Chunk(lines[: self.chunk_rows], records[: self.chunk_rows])
                    del lines[: self.chunk_rows], records[: self.chunk_rows]
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
