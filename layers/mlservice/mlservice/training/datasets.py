"""Training data: the five ways a request can supply it, all turned into one table of raw values.

The five sources are pydantic models (`TrainingData`, part of the training request), so their structure is
checked with the rest of the request; what they contain is checked here, as it is read. Values stay raw (JSON
values, or strings from CSV) until `mlservice.features.rows_to_matrix` encodes them, so training sees exactly
what serving will see. Size limits are enforced while reading — columns as soon as the header (or a record)
names them, rows and cells row by row, an S3 object's size before it is downloaded — so an oversized upload
fails with 413 before it is parsed in full, and every check is linear in the data. A file in S3 whose data
would not fit the function's memory once parsed is refused before it is downloaded (413 `dataset_too_large`).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from mlservice import keys, storage
from mlservice.errors import ObjectChanged, ServiceError, bad_request, not_found, too_large
from mlservice.fields import Body
from mlservice.settings import Settings
from mlservice.text import json_has_lone_surrogate, shown

BUNDLED = ("iris", "wine", "breast_cancer", "diabetes", "digits")
BUNDLED_TARGET = "target"
MAX_COLUMN_NAME = 256
DATA_FORMS = '{"columns","rows"}, {"records"}, {"s3_key"}, {"dataset_id"} or {"dataset"}'


class ColumnsData(Body):
    """Inline table: column names and rows of values in that order."""

    columns: list[str]
    rows: list[list[Any]]


class RecordsData(Body):
    """Inline records: one object of column values per row (a missing key is null)."""

    records: list[dict[str, Any]]


class S3Data(Body):
    """A CSV or JSON Lines file (optionally gzip) uploaded under datasets/ in the service's bucket."""

    s3_key: str


class DatasetIdData(Body):
    """A dataset created with POST /datasets and uploaded (its id)."""

    dataset_id: str


class BundledData(Body):
    """One of scikit-learn's bundled datasets (its target column is `target`)."""

    dataset: Literal[BUNDLED]  # type: ignore[valid-type]


def _form(value: Any) -> str | None:
    """Which of the five sources a `data` object is (pydantic reports the errors of that one only)."""
    if not isinstance(value, dict):
        return None
    found = [form for form, fields in FORMS.items() if any(name in value for name in fields)]
    return found[0] if len(found) == 1 else None


FORMS = {
    "<columns>": ("columns", "rows"),
    "<records>": ("records",),
    "<s3_key>": ("s3_key",),
    "<dataset_id>": ("dataset_id",),
    "<dataset>": ("dataset",),
}
# Tags in angle brackets: they appear in error locations, where the error mapping leaves them out.
TrainingData = Annotated[
    Annotated[ColumnsData, Tag("<columns>")]
    | Annotated[RecordsData, Tag("<records>")]
    | Annotated[S3Data, Tag("<s3_key>")]
    | Annotated[DatasetIdData, Tag("<dataset_id>")]
    | Annotated[BundledData, Tag("<dataset>")],
    Discriminator(
        _form,
        custom_error_type="data_source",
        custom_error_message=f"data must be an object with exactly one source: {DATA_FORMS}",
    ),
]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    source: dict[str, Any]
    # Known for bundled datasets: the target column and its task when the client names none.
    default_target: str | None = None
    default_task: str | None = None

    def __post_init__(self) -> None:
        self._positions = {name: i for i, name in enumerate(self.columns)}

    def index(self, name: str) -> int:
        return self._positions[name]

    def has(self, name: str) -> bool:
        return name in self._positions


class _Limits:
    """Counts columns, rows and cells as they are read; raises 413 on the first one past a limit."""

    def __init__(self, settings: Settings, width: int) -> None:
        self.max_rows = settings.max_train_rows
        self.max_cells = settings.max_train_cells
        self.max_columns = settings.max_train_columns
        self.rows = 0
        self.width = 0
        self.widen(width)

    def widen(self, width: int) -> None:
        self.width = width
        if width > self.max_columns:
            raise too_large(
                f"training data has more than {self.max_columns} columns (MAX_TRAIN_COLUMNS); select fewer columns"
            )

    def add(self) -> None:
        self.rows += 1
        if self.rows > self.max_rows:
            raise too_large(f"training data has more than {self.max_rows} rows (MAX_TRAIN_ROWS)")
        if self.rows * self.width > self.max_cells:
            raise too_large(
                f"training data has more than {self.max_cells} cells (rows × columns, MAX_TRAIN_CELLS); "
                f"{self.width} columns allow at most {self.max_cells // max(1, self.width)} rows"
            )


def _check_columns(columns: Any, what: str, settings: Settings) -> list[str]:
    if not isinstance(columns, list) or not columns:
        raise bad_request(f"{what} must be a non-empty list of column names", code="invalid_data")
    _Limits(settings, len(columns))  # before looking at a million names one by one
    seen: set[str] = set()
    for name in columns:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_COLUMN_NAME:
            raise bad_request(
                f"{what} has an invalid column name {shown(name)}: use non-empty strings of at most "
                f"{MAX_COLUMN_NAME} characters",
                code="invalid_data",
            )
        if name in seen:
            raise bad_request(f"{what} names column {name!r} twice", code="invalid_data")
        seen.add(name)
    return list(columns)


def _from_columns(data: ColumnsData, settings: Settings) -> Table:
    columns = _check_columns(data.columns, "data.columns", settings)
    rows = data.rows
    limits = _Limits(settings, len(columns))
    for index, row in enumerate(rows):
        limits.add()
        if len(row) != len(columns):
            raise bad_request(
                f"data.rows[{index}] must be a list of {len(columns)} values (one per column)", code="invalid_data"
            )
    return Table(columns, rows, {"type": "inline", "format": "columns"})


def _records_table(records: Iterable[tuple[str, Any]], settings: Settings) -> tuple[list[str], list[list[Any]]]:
    """Rows and columns from (where, object) pairs: the columns are every key seen, in first-seen order, and
    a key a record lacks is null."""
    position: dict[str, int] = {}
    dicts: list[dict] = []
    limits = _Limits(settings, 0)
    for where, record in records:
        if not isinstance(record, dict):
            raise bad_request(f"{where} must be an object of column values, got {shown(record)}", code="invalid_data")
        for name in record:
            if name not in position:
                if not name.strip() or len(name) > MAX_COLUMN_NAME:
                    raise bad_request(f"{where} has an invalid column name {shown(name)}", code="invalid_data")
                position[name] = len(position)
                limits.widen(len(position))
        limits.add()
        dicts.append(record)
    columns = list(position)
    if not columns:
        raise bad_request("the training data has no columns (every record is empty)", code="invalid_data")
    rows = [[record.get(name) for name in columns] for record in dicts]
    return columns, rows


def _from_records(data: RecordsData, settings: Settings) -> Table:
    records = data.records
    columns, rows = _records_table(((f"data.records[{i}]", r) for i, r in enumerate(records)), settings)
    return Table(columns, rows, {"type": "inline", "format": "records"})


def _text_lines(stream: io.RawIOBase, key: str) -> Iterator[str]:
    """The file's lines, gunzipped by extension and decoded as UTF-8 incrementally, as they are downloaded."""
    if key.lower().endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    try:
        while chunk := stream.read(1 << 20):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            yield from (line + "\n" for line in lines)
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise bad_request(f"data.s3_key {key!r} is not UTF-8 text", code="invalid_data") from None
    except (OSError, EOFError, zlib.error):
        raise bad_request(f"data.s3_key {key!r} is not a valid gzip file", code="invalid_data") from None
    if pending:
        yield pending


def _read_csv(stream: io.RawIOBase, key: str, settings: Settings) -> tuple[list[str], list[list[Any]]]:
    reader = csv.reader(_text_lines(stream, key), strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise bad_request(f"CSV file {key!r} is empty: it needs a header row", code="invalid_data")
        columns = _check_columns([name.strip() for name in header], f"the header row of {key!r}", settings)
        limits = _Limits(settings, len(columns))
        rows: list[list[Any]] = []
        for row in reader:
            if not row:
                continue  # blank line
            limits.add()
            if len(row) != len(columns):
                raise bad_request(
                    f"line {reader.line_num} of {key!r} has {len(row)} fields, the header has {len(columns)}",
                    code="invalid_data",
                )
            rows.append(row)
    except csv.Error as error:
        raise bad_request(f"{key!r} is not valid CSV (line {reader.line_num}: {error})", code="invalid_data") from None
    return columns, rows


def _read_jsonl(stream: io.RawIOBase, key: str, settings: Settings) -> tuple[list[str], list[list[Any]]]:
    def records() -> Iterator[tuple[str, Any]]:
        for number, line in enumerate(_text_lines(stream, key), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise bad_request(f"line {number} of {key!r} is not JSON: {error.msg}", code="invalid_data") from None
            except (ValueError, RecursionError):  # a number of over 4,300 digits, nesting beyond the stack
                raise bad_request(f"line {number} of {key!r} is not usable JSON", code="invalid_data") from None
            if json_has_lone_surrogate(line, record):
                raise bad_request(
                    f"line {number} of {key!r} holds a string with a lone UTF-16 surrogate escape, which is not text",
                    code="invalid_encoding",
                )
            yield f"line {number} of {key!r}", record

    return _records_table(records(), settings)


# Peak memory of a training per byte of its file, uncompressed: what benchmarks/dataset_memory.py measured (the
# slope of peak memory over file size, ridge and a random forest, 15-95 MB files: CSV 36-38, JSON Lines 18.5-19;
# a CSV of one-digit cells, 37). The parsed table's Python strings and lists, the encoded matrix and the fit's
# copies of it: the file's own bytes are the small part.
MEMORY_PER_BYTE = {"csv": 40.0, "jsonl": 20.0}
# The training function's memory before it reads data (Python, numpy, scikit-learn; measured 150-250 MiB).
RUNTIME_BYTES = 256 * 1024 * 1024
# How much a .gz file is assumed to expand when no profile of it measured that (the benchmark's tables: CSV
# 2.7, JSON Lines 5.7; GET /datasets/{id} measures a dataset's own).
GZIP_EXPANSION = {"csv": 4.0, "jsonl": 6.0}
DEFAULT_MEMORY_MB = 3008  # TrainFunction's MemorySize


def function_memory_mb() -> int:
    """The function's memory (Lambda sets AWS_LAMBDA_FUNCTION_MEMORY_SIZE), TrainFunction's elsewhere."""
    try:
        return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or DEFAULT_MEMORY_MB)
    except ValueError:
        return DEFAULT_MEMORY_MB


def memory_estimate(key: str, size: int, uncompressed: int | None = None) -> tuple[float, str, str]:
    """(bytes of memory training on the file needs, its format, how its uncompressed size was known)."""
    gzipped = key.lower().endswith(".gz")
    data_format = "jsonl" if key.lower().removesuffix(".gz").endswith(".jsonl") else "csv"
    if uncompressed is not None:
        data_bytes, basis = float(uncompressed), f"{uncompressed} bytes uncompressed"
    elif gzipped:
        data_bytes = size * GZIP_EXPANSION[data_format]
        basis = f"assumed {GZIP_EXPANSION[data_format]:g}× that uncompressed; GET /datasets/{{id}} measures it"
    else:
        data_bytes, basis = float(size), "uncompressed"
    return RUNTIME_BYTES + MEMORY_PER_BYTE[data_format] * data_bytes, data_format, basis


def check_memory(key: str, size: int, uncompressed: int | None = None) -> None:
    """413 `dataset_too_large` when training on the file would need more memory than the function has, by
    the measured factor per byte of its (uncompressed) data; checked before the file is downloaded."""
    estimate, data_format, basis = memory_estimate(key, size, uncompressed)
    memory_mb = function_memory_mb()
    if estimate > memory_mb * 1024 * 1024:
        raise ServiceError(
            "dataset_too_large",
            f"dataset {key!r} has {size} bytes ({basis}): training on it needs about {estimate / 2**20:,.0f} MB "
            f"of memory ({MEMORY_PER_BYTE[data_format]:g}× its data once parsed, plus {RUNTIME_BYTES // 2**20} MB for the runtime), "
            f"more than the function's {memory_mb} MB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE); train on a sample of it",
        )


def _from_s3(data: S3Data, settings: Settings, *, uncompressed: int | None = None, etag: str | None = None) -> Table:
    key = keys.dataset_key(data.s3_key)
    try:
        stream = storage.ChunkReader(key, if_match=etag)
    except KeyError:
        raise not_found("dataset_not_found", f"no dataset at s3 key {key!r}; upload it under datasets/ first") from None
    with contextlib.closing(stream):
        if stream.size > settings.max_dataset_bytes:  # known from the GET's headers, before a byte is read
            limit = settings.max_dataset_bytes
            raise too_large(f"dataset {key!r} has {stream.size} bytes, more than {limit} (MAX_DATASET_BYTES)")
        check_memory(key, stream.size, uncompressed)  # `uncompressed` was measured on this very object (etag)
        name = key.lower().removesuffix(".gz")
        read = _read_csv if name.endswith(".csv") else _read_jsonl
        columns, rows = read(stream, key, settings)  # type: ignore[arg-type]
    return Table(columns, rows, {"type": "s3_key", "s3_key": key, "bytes": stream.size})


def _from_dataset(data: DatasetIdData, settings: Settings) -> Table:
    from mlservice import dataset_store

    found = dataset_store.training_source(data.dataset_id)  # 404 unknown, 409 not uploaded yet
    try:
        table = _from_s3(
            S3Data(s3_key=found["s3_key"]), settings, uncompressed=found["uncompressed_bytes"], etag=found["etag"]
        )
    except ObjectChanged:  # uploaded again since: the new file, without the old one's measured size
        table = _from_s3(S3Data(s3_key=found["s3_key"]), settings)
    table.source = {
        "type": "dataset_id",
        "dataset_id": data.dataset_id,
        **{k: table.source[k] for k in ("s3_key", "bytes")},
    }
    return table


def snake_case(name: str) -> str:
    """'sepal length (cm)' → 'sepal_length_cm', 'od280/od315_of_diluted_wines' → 'od280_od315_of_diluted_wines'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _bundled(name: str, settings: Settings) -> Table:
    from sklearn import datasets as sk

    loader = {
        "iris": sk.load_iris,
        "wine": sk.load_wine,
        "breast_cancer": sk.load_breast_cancer,
        "diabetes": sk.load_diabetes,
        "digits": sk.load_digits,
    }[name]
    bunch = loader()
    columns = [snake_case(str(f)) for f in bunch.feature_names] + [BUNDLED_TARGET]
    limits = _Limits(settings, len(columns))
    for _ in range(len(bunch.target)):
        limits.add()
    if name == "diabetes":
        labels: list[Any] = [float(v) for v in bunch.target]
        task = "regression"
    elif name == "digits":
        labels = [int(v) for v in bunch.target]
        task = "classification"
    else:
        names = [str(v) for v in bunch.target_names]
        labels = [names[int(v)] for v in bunch.target]
        task = "classification"
    rows = [[*features, label] for features, label in zip(bunch.data.tolist(), labels, strict=True)]
    return Table(columns, rows, {"type": "dataset", "dataset": name}, default_target=BUNDLED_TARGET, default_task=task)


def load_table(data: ColumnsData | RecordsData | S3Data | DatasetIdData | BundledData, settings: Settings) -> Table:
    """The request's data source read into a table; 400 for bad contents, 404 for a missing S3 key, 413 when
    too big."""
    if isinstance(data, ColumnsData):
        table = _from_columns(data, settings)
    elif isinstance(data, RecordsData):
        table = _from_records(data, settings)
    elif isinstance(data, S3Data):
        table = _from_s3(data, settings)
    elif isinstance(data, DatasetIdData):
        table = _from_dataset(data, settings)
    else:
        table = _bundled(data.dataset, settings)
    if not table.rows:
        raise bad_request("the training data has no rows", code="invalid_data")
    return table
