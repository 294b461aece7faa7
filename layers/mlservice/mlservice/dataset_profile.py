"""The profile of an uploaded dataset: its digests, its size, and a schema inferred in one streaming pass.

The file is read once, as it is downloaded, in chunks of rows, and never held whole: memory is bounded by a
chunk plus, per column, a reservoir sample of its numbers and the counts of its distinct values, both capped.

- Kinds follow training's rule (`preprocessing.infer_kind`): a column is numeric when every value present is a
  number or a numeric string ("", null and CSV's spellings of missing such as "NA" are missing), else
  categorical. Text is a choice made when training (`text_features`), never inferred.
- Numeric columns publish p5 … p95 under the service's one rule for training data (`preprocessing.percentiles`:
  each null unless MIN_GROUP_SIZE values lie on either side). Past RESERVOIR values they are computed from a
  uniform reservoir sample of RESERVOIR values, and the profile says so (`percentiles_sample`); the rule is then
  applied to the sample, which is stricter than applying it to the whole column.
- Categorical columns publish the values seen in at least MIN_GROUP_SIZE rows, with their row counts, counted
  exactly. A column stops tracking values it has not seen before once it tracks MAX_TRACKED distinct ones (and
  values longer than MAX_TRACKED_CHARS are never tracked): the counts of tracked values stay exact, untracked
  values are simply absent (never published), and `categories_complete: false` says the list may lack some.
- Files that cannot be trained on — not UTF-8, not gzip although declared so, CSV without a usable header or
  with ragged rows, lines that are not JSON objects — give status `invalid` with the reason, as do files with
  more columns than MAX_TRAIN_COLUMNS. A profile that would not finish before `deadline` stops and says
  `profiling_too_large_for_a_request`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import math
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from mlservice.features import MISSING_STRINGS
from mlservice.text import json_has_lone_surrogate

UPLOADED, INVALID, TOO_LARGE = "uploaded", "invalid", "profiling_too_large_for_a_request"
NUMERIC, CATEGORICAL = "numeric", "categorical"
# Numbers kept per column for percentiles (a uniform sample beyond that), and in all columns together.
RESERVOIR = 100_000
TOTAL_RESERVOIR = 4_000_000
# Distinct values counted per column, and in all columns together; longer values are never tracked.
MAX_TRACKED = 10_000
TOTAL_TRACKED = 1_000_000
MAX_TRACKED_CHARS = 200
# Categories published per column (the most frequent), and characters of them in the whole profile, which
# keeps a profile of thousands of columns inside a response.
MAX_PUBLISHED = 999
TOTAL_PUBLISHED_CHARS = 2_000_000
# Cells parsed before a chunk is summarised (fewer rows per chunk for wide files).
CHUNK_CELLS = 500_000
MAX_LINE_CHARS = 64 * 1024 * 1024
MAX_COLUMN_NAME = 256
READ_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class Invalid(Exception):
    """The file cannot be trained on; the message says why (shown to the client)."""


class OutOfTime(Exception):
    """The deadline passed before the file was read."""


class _Digesting(io.RawIOBase):
    """The downloaded bytes, hashed (SHA-256) and counted as they are read."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self.body = body
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.head = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        if not data:
            return 0
        if self.bytes < 2:
            self.head = (self.head + data)[:2]
        self.sha256.update(data)
        self.bytes += len(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end (a gzip stream may end before the object does), so the digest covers every byte."""
        while self.body.read(READ_BYTES):
            pass


class _Counting(io.RawIOBase):
    """The bytes after decompression, counted (what training will hold in memory is measured in these)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.bytes += len(data)
        buffer[: len(data)] = data
        return len(data)


class _Budget:
    """What all columns may hold together: tracked distinct values, and the reservoir size per column."""

    def __init__(self) -> None:
        self.tracked = 0
        self.width = 1

    @property
    def reservoir(self) -> int:
        return max(1, min(RESERVOIR, TOTAL_RESERVOIR // max(1, self.width)))

    @property
    def per_column(self) -> int:
        return max(1, min(MAX_TRACKED, TOTAL_TRACKED // max(1, self.width)))


def _classify(value: Any) -> float | bool | None:
    """A number (finite float), None for a missing value, False for a value that is not a number (training's
    `_numeric_string` and `infer_kind` rules)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return False
        return number if math.isfinite(number) else False
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in MISSING_STRINGS:
            return None
        try:
            number = float(stripped)
        except ValueError:
            return False
        return number if math.isfinite(number) else False
    return False


def _category(value: Any) -> str:
    """features.category, with nested JSON values (which training refuses as features) shown as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


class Column:
    """One column's running summary."""

    def __init__(self, name: str, budget: _Budget, rng: np.random.Generator) -> None:
        self.name = name
        self.budget = budget
        self.rng = rng
        self.numeric = True  # no value so far says otherwise
        self.numbers = 0  # numeric values seen (the reservoir's stream length)
        self.sample = np.empty(0, dtype=np.float64)
        self.present = 0  # non-blank values (categorical view)
        self.counts: dict[str, int] = {}
        self.skipped = False  # a value was not tracked: the category list may be incomplete
        self.undercounted = False  # numeric blocks went uncounted once tracking was full

    # -------------------------------------------------------------- numbers

    def _add_numbers(self, values: np.ndarray) -> None:
        """Algorithm R over a block of values: the sample stays a uniform sample of every number seen."""
        size = self.budget.reservoir
        if len(self.sample) > size:  # the file grew wider: a uniform sub-sample of a uniform sample
            self.sample = self.rng.choice(self.sample, size, replace=False)
        room = max(0, size - len(self.sample))
        if room:
            self.sample = np.concatenate([self.sample, values[:room]])
            self.numbers += min(room, len(values))
            values = values[room:]
        if len(values):
            seen = self.numbers + np.arange(1, len(values) + 1)
            slots = (self.rng.random(len(values)) * seen).astype(np.int64)
            keep = slots < size
            self.sample[slots[keep]] = values[keep]
            self.numbers += len(values)

    @staticmethod
    def _parsed(values: Any) -> np.ndarray | None:
        """The block as numbers when numpy parses every value (numbers, numeric strings, None as NaN; blanks and
        words fail), else None."""
        try:
            parsed = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return None
        return parsed if parsed.ndim == 1 and not np.isinf(parsed).any() else None

    def _numbers_slow(self, values: Any, csv_fields: bool) -> None:
        """Add a block's numbers value by value (each distinct value classified once), or find that the column
        is not numeric."""
        key = (lambda v: v) if csv_fields else _key
        table = {}
        for value in set(map(key, values)):
            number = _classify(value)
            if number is False:
                self.numeric = False
                self.sample = np.empty(0, dtype=np.float64)
                return
            table[value] = number
        numbers = [n for n in (table[key(v)] for v in values) if n is not None]
        self._add_numbers(np.asarray(numbers, dtype=np.float64))

    # -------------------------------------------------------------- values

    def _full(self) -> bool:
        return len(self.counts) >= self.budget.per_column or self.budget.tracked >= TOTAL_TRACKED

    def add(self, values: Any, csv_fields: bool) -> None:
        """A block of this column's values: CSV fields (strings) or JSON values (None where a record lacks the
        column)."""
        parsed = self._parsed(values) if self.numeric else None
        if parsed is not None and self._full():
            # Only numbers, and no value can be tracked any more: skip counting them (the column's tracked
            # counts become lower bounds, which matters only if a later value makes it categorical).
            self._add_numbers(parsed[~np.isnan(parsed)])
            self.present += len(values) - (0 if csv_fields else values.count(None))
            self.undercounted = True
            return
        categories = list(map(str.strip, values)) if csv_fields else [_category(v) for v in values]
        distinct = Counter(categories)
        self.present += len(values) - distinct.get("", 0)
        if parsed is not None:
            self._add_numbers(parsed[~np.isnan(parsed)])
        elif self.numeric:
            self._numbers_slow(values, csv_fields)
        self._count(distinct)

    def _count(self, distinct: Counter) -> None:
        counts, cap, budget = self.counts, self.budget.per_column, self.budget
        if len(counts) >= cap or budget.tracked >= TOTAL_TRACKED:  # full: only the tracked values still count
            if len(distinct) > len(counts):
                self.skipped = True
            else:
                self.skipped = self.skipped or not distinct.keys() <= counts.keys()
            for value in counts.keys() & distinct.keys():
                counts[value] += distinct[value]
            return
        for value, count in distinct.items():
            if value in counts:
                counts[value] += count
            elif len(value) > MAX_TRACKED_CHARS or len(counts) >= cap or budget.tracked >= TOTAL_TRACKED:
                self.skipped = True
            else:
                counts[value] = count
                budget.tracked += 1

    # -------------------------------------------------------------- the summary

    def summary(self, rows: int, min_group: int, percentiles: Any, chars_left: int) -> tuple[dict, int]:
        """What is published of the column, and the characters of categories left for the other columns."""
        entry: dict[str, Any] = {"name": self.name}
        if self.numeric and self.numbers:
            entry["kind"] = NUMERIC
            entry["missing"] = rows - self.numbers
            entry["percentiles"] = percentiles(self.sample, min_group)
            if self.numbers > len(self.sample):
                entry["percentiles_sample"] = len(self.sample)
            return entry, chars_left
        entry["kind"] = CATEGORICAL
        entry["missing"] = rows - self.present
        ranked = sorted(
            ((v, c) for v, c in self.counts.items() if c >= min_group and v != ""), key=lambda item: (-item[1], item[0])
        )
        complete = not self.skipped and not self.undercounted
        if len(ranked) > MAX_PUBLISHED:
            ranked, complete = ranked[:MAX_PUBLISHED], False
        published = []
        for value, count in ranked:
            if len(value) > chars_left:
                complete = False
                break
            chars_left -= len(value)
            published.append((value, count))
        entry["categories"] = [v for v, _ in published]
        entry["category_counts"] = [c for _, c in published]
        # Exact whatever was tracked: rows with a value, less those of the published categories.
        entry["rare_rows"] = self.present - sum(entry["category_counts"])
        entry["categories_complete"] = complete
        if self.undercounted:
            entry["category_counts_are_lower_bounds"] = True
        return entry, chars_left


def _key(value: Any) -> Any:
    """A hashable stand-in for a JSON value (nested ones by their JSON text)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


class _Table:
    """Columns in order, summarised chunk by chunk."""

    def __init__(self, max_columns: int) -> None:
        self.max_columns = max_columns
        self.budget = _Budget()
        self.rng = np.random.default_rng(0)
        self.columns: list[Column] = []
        self.position: dict[str, int] = {}
        self.rows = 0

    def add_column(self, name: Any, where: str) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_COLUMN_NAME:
            raise Invalid(
                f"{where} has an invalid column name {repr(name)[:80]}: use non-empty names of at most "
                f"{MAX_COLUMN_NAME} characters"
            )
        if name in self.position:
            raise Invalid(f"{where} names column {name[:80]!r} twice")
        if len(self.columns) >= self.max_columns:
            raise Invalid(
                f"the file has more than {self.max_columns} columns (MAX_TRAIN_COLUMNS); training would refuse it"
            )
        self.position[name] = len(self.columns)
        self.columns.append(Column(name, self.budget, self.rng))
        self.budget.width = len(self.columns)

    def chunk_rows(self) -> int:
        return max(1, CHUNK_CELLS // max(1, len(self.columns)))

    def summary(self, min_group: int) -> list[dict]:
        from mlservice.training.preprocessing import percentiles  # the service's one rule (imports scikit-learn)

        chars = TOTAL_PUBLISHED_CHARS
        out = []
        for column in self.columns:
            entry, chars = column.summary(self.rows, min_group, percentiles, chars)
            out.append(entry)
        return out


def _lines(text: io.TextIOBase) -> Iterator[str]:
    """The text's lines, in pieces of at most MAX_LINE_CHARS (a file without line breaks is never read into
    memory whole). A CSV line that long shows as rows of the wrong width; a JSON line is refused."""
    return iter(functools.partial(text.readline, MAX_LINE_CHARS), "")


def _check_time(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise OutOfTime


def _read_csv(text: io.TextIOBase, table: _Table, deadline: float) -> None:
    reader = csv.reader(_lines(text), strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise Invalid("the file is empty: a CSV file needs a header row")
        for name in header:
            table.add_column(name.strip(), "the header row")
        width = len(table.columns)
        chunk: list[list[str]] = []
        size = table.chunk_rows()
        for row in reader:
            if not row:
                continue  # a blank line, as training skips it
            if len(row) != width:
                raise Invalid(f"line {reader.line_num} has {len(row)} fields, the header has {width}")
            chunk.append(row)
            if len(chunk) >= size:
                _csv_chunk(chunk, table)
                chunk = []
                _check_time(deadline)
        _csv_chunk(chunk, table)
    except csv.Error as error:
        raise Invalid(f"not valid CSV (line {reader.line_num}: {error})") from None


def _csv_chunk(rows: list[list[str]], table: _Table) -> None:
    if not rows:
        return
    table.rows += len(rows)
    for column, values in zip(table.columns, zip(*rows, strict=True), strict=True):
        column.add(values, csv_fields=True)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (use null for a missing value)")


def _read_jsonl(text: io.TextIOBase, table: _Table, deadline: float) -> None:
    chunk: list[dict] = []
    for number, line in enumerate(_lines(text), start=1):
        if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):
            raise Invalid(f"line {number} is longer than {MAX_LINE_CHARS} characters")
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_refuse_constant)
        except json.JSONDecodeError as error:
            raise Invalid(f"line {number} is not JSON: {error.msg}") from None
        except ValueError as error:  # NaN/Infinity, a number of over 4,300 digits
            raise Invalid(f"line {number} is not usable JSON: {str(error)[:120]}") from None
        except RecursionError:
            raise Invalid(f"line {number} nests too deeply") from None
        if not isinstance(record, dict):
            raise Invalid(f"line {number} is not a JSON object (one object of column values per line)")
        if json_has_lone_surrogate(line, record):
            raise Invalid(f"line {number} holds a string with a lone UTF-16 surrogate escape, which is not text")
        if record.keys() - table.position.keys():  # new columns, in the order the record names them
            for name in record:
                if name not in table.position:
                    table.add_column(name, f"line {number}")
        chunk.append(record)
        if len(chunk) >= table.chunk_rows():
            _jsonl_chunk(chunk, table)
            chunk = []
            _check_time(deadline)
    _jsonl_chunk(chunk, table)


def _jsonl_chunk(records: list[dict], table: _Table) -> None:
    if not records:
        return
    table.rows += len(records)
    for column in table.columns:
        column.add([record.get(column.name) for record in records], csv_fields=False)


def profile(body: Any, data_format: str, gzipped: bool, *, min_group: int, max_columns: int, deadline: float) -> dict:
    """Profile a file from its streaming body (anything with `read(n)`). Returns the profile document:
    `status` (uploaded, invalid or profiling_too_large_for_a_request), the digest and sizes, and for an
    uploaded file `columns`, `rows` and `schema`."""
    started = time.monotonic()
    raw = _Digesting(body)
    stream: Any = io.BufferedReader(raw, READ_BYTES)
    if gzipped:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    counted = _Counting(stream)
    text = io.TextIOWrapper(
        io.BufferedReader(counted, READ_BYTES), encoding="utf-8-sig", newline="" if data_format == "csv" else None
    )
    table = _Table(max_columns)
    document: dict[str, Any]
    try:
        (_read_csv if data_format == "csv" else _read_jsonl)(text, table, deadline)
        if not table.rows:
            raise Invalid("the file has no rows" + (" under its header" if data_format == "csv" else ""))
        raw.drain()
        document = {
            "status": UPLOADED,
            "columns": [c.name for c in table.columns],
            "rows": table.rows,
            "schema": table.summary(min_group),
        }
    except Invalid as error:
        document = {"status": INVALID, "reason": str(error)}
    except UnicodeDecodeError as error:
        hint = (
            '; it looks gzipped: create the dataset with "gzip": true' if raw.head == GZIP_MAGIC and not gzipped else ""
        )
        document = {"status": INVALID, "reason": f"not UTF-8 text ({error.reason} after {counted.bytes} bytes){hint}"}
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
        if not gzipped:
            raise
        document = {"status": INVALID, "reason": f"not a valid gzip file ({str(error)[:120]})"}
    except OutOfTime:
        return {
            "status": TOO_LARGE,
            "note": f"profiling stopped after {time.monotonic() - started:.0f} s, having read {raw.bytes} bytes: "
            "the file is too large to profile within one request",
        }
    if document["status"] == UPLOADED:
        document["sha256"] = raw.sha256.hexdigest()
        document["uncompressed_bytes"] = counted.bytes
    document["profile_seconds"] = round(time.monotonic() - started, 3)
    return document
