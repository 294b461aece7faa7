"""Predicting a batch stream: validate each record, predict the good ones a chunk at a time, and render
output records (each input record joined with its prediction) and rejected records (line and reason)."""

from __future__ import annotations

import contextlib
import itertools
import json
from dataclasses import dataclass, field
from itertools import repeat
from typing import BinaryIO

import numpy as np

from mlservice import storage
from mlservice.batch.formats import CSV, Chunk, RecordReader, csv_field, parse_csv_header, parse_json_line, split_csv
from mlservice.batch.output import Counts, ErrorFile, OutputFile
from mlservice.errors import ServiceError, bad_request
from mlservice.features import NUMERIC, rows_to_matrix_lenient
from mlservice.serving.model_cache import LoadedModel
from mlservice.serving.predictor import json_values, run_model
from mlservice.settings import get_settings
from mlservice.text import encodable

PREDICTION = "prediction"
PROBABILITIES = "probabilities"


@dataclass
class Scored:
    text: str = ""
    predicted: int = 0
    rejected: list[dict] = field(default_factory=list)


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _row_reason(message: str) -> str:
    """Drop the chunk-relative "row N, " that the encoder puts first: the line number says where."""
    return message.split(", ", 1)[1] if message.startswith("row ") and ", " in message else message


class Scorer:
    """Scores chunks of one file against one loaded model."""

    def __init__(self, loaded: LoadedModel, fmt: str, header: list[str] | None = None) -> None:
        self.loaded = loaded
        self.fmt = fmt
        self.features = loaded.features
        self.names = [f["name"] for f in self.features]
        self.all_numeric = all(f["kind"] == NUMERIC for f in self.features)
        self.with_proba = loaded.has_probabilities
        self.classes = [str(c) for c in (loaded.classes or [])] if self.with_proba else []
        taken = set(header or [])
        self.prediction_name = _unique(PREDICTION, taken)
        if fmt == CSV:
            assert header is not None
            missing = [n for n in self.names if n not in header]
            if missing:
                raise bad_request(
                    f"the CSV header lacks feature column(s): {', '.join(missing[:20])}", code="missing_features"
                )
            self.width = len(header)
            self.index = [header.index(n) for n in self.names]
            self.proba_names = [_unique(f"probability_{c}", taken) for c in self.classes]
        else:
            self.proba_name = _unique(PROBABILITIES, taken)

    def csv_header(self, header_record: str) -> str:
        added = [self.prediction_name, *self.proba_names]
        return header_record + "," + ",".join(csv_field(n) for n in added) + "\n"

    # -- parsing ------------------------------------------------------------------------------------------

    def _fast_matrix(self, chunk: Chunk) -> np.ndarray | None:
        """np.loadtxt's C parser for clean all-numeric CSV chunks; None means 'take the careful path'."""
        records = chunk.records
        if not (self.fmt == CSV and self.all_numeric):
            return None
        if set(map(str.count, records, repeat(","))) != {self.width - 1} or any(
            map(str.__contains__, records, repeat('"'))
        ):
            return None
        try:
            matrix = np.loadtxt(records, delimiter=",", usecols=self.index, dtype=np.float64, ndmin=2, comments=None)
        except ValueError:
            return None
        return None if np.isinf(matrix).any() else matrix

    def _rows(self, chunk: Chunk) -> tuple[list[int], list[list], list[dict], list]:
        """(positions of parseable records, their feature values, rejected, parsed objects for JSONL)."""
        positions: list[int] = []
        rows: list[list] = []
        rejected: list[dict] = []
        objects: list = []
        if self.fmt == CSV:
            for position, fields in enumerate(split_csv(chunk.records)):
                if len(fields) != self.width:
                    rejected.append(self._reject(chunk, position, f"expected {self.width} fields, found {len(fields)}"))
                    continue
                positions.append(position)
                rows.append([fields[i] for i in self.index])
        else:
            for position, record in enumerate(chunk.records):
                parsed = parse_json_line(record, chunk.lines[position])
                if isinstance(parsed, str):
                    rejected.append(self._reject(chunk, position, parsed))
                    continue
                missing = [n for n in self.names if n not in parsed]
                if missing:
                    rejected.append(self._reject(chunk, position, f"missing feature(s): {', '.join(missing[:20])}"))
                    continue
                positions.append(position)
                rows.append([parsed[n] for n in self.names])
                objects.append(parsed)
        return positions, rows, rejected, objects

    @staticmethod
    def _reject(chunk: Chunk, position: int, reason: str) -> dict:
        return {"line": chunk.lines[position], "reason": reason, "record": chunk.records[position][:10_000]}

    # -- scoring ------------------------------------------------------------------------------------------

    def score(self, chunk: Chunk) -> Scored:
        matrix = self._fast_matrix(chunk)
        if matrix is not None:
            positions, objects, rejected = list(range(len(chunk.records))), [], []
        else:
            positions, rows, rejected, objects = self._rows(chunk)
            matrix, errors = rows_to_matrix_lenient(rows, self.features) if rows else (None, {})
            if errors:
                keep = [k for k in range(len(positions)) if k not in errors]
                for k in sorted(errors):
                    rejected.append(self._reject(chunk, positions[k], _row_reason(errors[k])))
                rejected.sort(key=lambda r: r["line"])
                matrix = matrix[keep]
                positions = [positions[k] for k in keep]
                objects = [objects[k] for k in keep] if objects else objects
        if not positions:
            return Scored("", 0, rejected)
        try:
            predictions, probabilities = run_model(self.loaded, matrix, self.with_proba)
        except ServiceError:
            # A row the model cannot use (a value that overflows its scaling) fails the whole chunk's call: find
            # such rows by halving the chunk — a few dozen calls for one bad row among 10,000 — reject them, and
            # predict the others together.
            usable: list[int] = []
            for k, error in self._unusable(matrix, list(range(len(positions)))):
                if error is None:
                    usable.append(k)
                else:
                    rejected.append(self._reject(chunk, positions[k], _row_reason(error.message)))
            rejected.sort(key=lambda r: r["line"])
            matrix, positions = matrix[usable], [positions[k] for k in usable]
            objects = [objects[k] for k in usable] if objects else objects
            if not positions:
                return Scored("", 0, rejected)
            predictions, probabilities = run_model(self.loaded, matrix, self.with_proba)
        if self.fmt == CSV:
            text = self._csv_lines([chunk.records[p] for p in positions], predictions, probabilities)
        else:
            text = self._json_lines(objects, json_values(predictions), probabilities)
        return Scored(text, len(positions), rejected)

    def _unusable(self, matrix: np.ndarray, rows: list[int]) -> list[tuple[int, ServiceError | None]]:
        """(row, the error the model gives it or None) for each of `rows`, by bisection."""
        try:
            run_model(self.loaded, matrix[rows], self.with_proba)
            return [(k, None) for k in rows]
        except ServiceError as error:
            if len(rows) == 1:
                return [(rows[0], error)]
        middle = len(rows) // 2
        return self._unusable(matrix, rows[:middle]) + self._unusable(matrix, rows[middle:])

    @staticmethod
    def _csv_lines(records: list[str], predictions: np.ndarray, probabilities: np.ndarray | None) -> str:
        """Each record followed by its prediction (and one column per class), built column by column: the
        distinct labels are quoted once, and each probability column is formatted in one pass."""
        if predictions.dtype.kind == "f":
            shown = ["" if v is None else repr(v) for v in json_values(predictions)]
        else:
            labels, index = np.unique(predictions, return_inverse=True)
            quoted = [csv_field(label) for label in labels.tolist()]
            shown = [quoted[i] for i in index.tolist()]
        columns = [records, shown]
        if probabilities is not None:
            columns += [list(map(repr, probabilities[:, j].tolist())) for j in range(probabilities.shape[1])]
        return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"

    def _json_lines(self, objects: list, predictions: list, probabilities: np.ndarray | None) -> str:
        rows = probabilities.tolist() if probabilities is not None else None
        out = []
        for k, obj in enumerate(objects):
            obj[self.prediction_name] = predictions[k]
            if rows is not None:
                obj[self.proba_name] = dict(zip(self.classes, rows[k], strict=True))
            out.append(json.dumps(obj, ensure_ascii=False, allow_nan=False))
        text = "\n".join(out) + "\n"
        if not encodable(text):
            # A record with a lone "\ud800" escape parses to a string UTF-8 cannot hold: write such lines with
            # the escapes kept (ensure_ascii), which is the record's own spelling and still valid JSON.
            lines = (
                line if encodable(line) else json.dumps(obj, allow_nan=False)
                for obj, line in zip(objects, out, strict=True)
            )
            text = "\n".join(lines) + "\n"
        return text


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
