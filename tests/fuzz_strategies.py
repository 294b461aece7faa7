"""Requests for every route of the API, for tests/test_fuzz.py, each with the answer the documentation promises
whenever the strategy can tell what that answer is.

A request is built from parts (path parameters, query, headers, body) and each part knows whether it is valid,
which documented codes it must be refused with, or that it cannot tell (a lenient spelling such as version
"01"). The service checks the parts in a fixed order: the content rules on the body (mlservice.api.content),
then the path, the query and the body's fields (pydantic, first error wins), the Idempotency-Key (a route
middleware), then what needs the registry and last what needs the rows or the training data. So the first
wrong part decides the answer, which is what `expected` computes. Where a strategy cannot tell, the general
checks of test_fuzz.py still apply (documented shape and code, no 500, the bucket unchanged after a 4xx).

Everything here describes the world test_fuzz.py seeds before every example (model iris, versions 1 and 2 — a
logistic regression and a decision tree —, production serving 1 and deployed once, a few files under
datasets/), so "iris version 2" is known to exist.
Generated trainings stay cheap by construction: the only requests meant to train have 12-18 inline rows, a
bundled dataset of under 450 rows, or a seeded file of 16 rows, and take their hyperparameters from small,
fast values; every other training request is wrong somewhere and refused before a fit.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from mlservice.training.algorithms import ALGORITHMS, CLASSIFICATION, REGRESSION

# ---------------------------------------------------------------- the seeded world and the documented limits

MODEL = "iris"
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
READY_VERSIONS = ("1", "2")
IN_USE_VERSION = "1"  # production serves it
DEPLOYED_STAGE = "production"  # deployed once: nothing to roll back to
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
MAX_VERSION = 10**10 - 1
# Defaults of mlservice.settings under the template's parameters; test_fuzz checks they are still in force.
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_PREDICT_ROWS = 10_000
MAX_TRAIN_COLUMNS = 10_000

MUTATING = frozenset(
    {
        "POST /models/{model}/versions",
        "DELETE /models/{model}/versions/{version}",
        "PUT /models/{model}/stages/{stage}",
        "POST /models/{model}/stages/{stage}/rollback",
        "DELETE /models/{model}/stages/{stage}",
    }
)

# ---------------------------------------------------------------- outcomes

# The order in which the service checks a request; the first wrong part decides the answer.
CONTENT, PATH, QUERY, FIELDS, KEY, LATE_CONTENT, LOOKUP, DATA = range(8)
VALID: frozenset[str] = frozenset()
SUCCESS = "2xx"


@dataclass(frozen=True)
class Part:
    """One part's verdict at the step (`rank`) that checks it: VALID, the codes one of which must be answered,
    or None when the strategy cannot tell."""

    rank: int
    codes: frozenset[str] | None


def part(rank: int, *codes: str) -> Part:
    return Part(rank, frozenset(codes))


def unknown(rank: int) -> Part:
    return Part(rank, None)


def expected(parts: Iterable[Part]) -> frozenset[str] | None:
    """The codes one of which the response must carry ({"2xx"} when every part is valid), or None.

    Within one step the order is not documented (pydantic reports the first field in its own order, the
    trainer checks hyperparameters before or after reading data depending on the task), so the codes of the
    wrong parts at the first wrong step are all accepted."""
    by_rank: dict[int, list[frozenset[str] | None]] = {}
    for p in parts:
        by_rank.setdefault(p.rank, []).append(p.codes)
    for rank in sorted(by_rank):
        verdicts = by_rank[rank]
        wrong = frozenset().union(*(v for v in verdicts if v))
        if wrong:
            # an unknown part at the same step might fail first with a code of its own
            return None if any(v is None for v in verdicts) else wrong
        if any(v is None for v in verdicts):
            return None
    return frozenset({SUCCESS})


# ---------------------------------------------------------------- requests


def _short(value: object, limit: int = 3000) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str | bytes | None = None

    def __repr__(self) -> str:  # bodies of 6 MiB must not flood a failure report; shorter ones are shown whole
        return (
            f"Request(method={self.method!r}, path={_short(self.path)}, query={_short(self.query)}, "
            f"headers={_short(self.headers)}, body={_short(self.body)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis prints a failing example
        printer.text(repr(self))


@dataclass(frozen=True)
class Case:
    """One request (and, for idempotency, a second one with the same key) plus what the docs promise."""

    route: str  # "METHOD /resource" from template.yaml
    request: Request
    expect: frozenset[str] | None
    then: Request | None = None  # sent right after `request`, with the same Idempotency-Key
    then_same: bool = True  # whether `then` is the same request (a replay) or a different one (422)


# ---------------------------------------------------------------- JSON with tokens json.dumps cannot write


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: NaN, 1e999, a 5,000-digit integer, a string with a lone surrogate escape."""

    text: str


def to_json(value: Any, ascii_only: bool = True) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (
            (k.text if isinstance(k, Raw) else json.dumps(str(k), ensure_ascii=ascii_only))
            + ":"
            + to_json(v, ascii_only)
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=False)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


MISSING_BODY = object()


def parse_body(payload: str | bytes | None) -> tuple[frozenset[str], Any]:
    """The README's body rules as a model: (the content error codes or VALID, the parsed value).

    Over MAX_BODY_BYTES is 413 before anything else; not UTF-8 (or a lone surrogate) is invalid_encoding;
    not JSON, NaN/Infinity, over-long integers or nesting deeper than MAX_JSON_DEPTH is invalid_json; a
    string holding a lone surrogate escape is invalid_encoding. An empty body is no body."""
    if payload is None:
        return VALID, MISSING_BODY
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        return frozenset({"payload_too_large"}), None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return frozenset({"invalid_encoding"}), None
    if text == "":
        return VALID, MISSING_BODY
    try:
        value = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return frozenset({"invalid_json"}), None
    if _depth(value) > MAX_JSON_DEPTH:
        return frozenset({"invalid_json"}), None
    if _has_lone_surrogate(value):
        return frozenset({"invalid_encoding"}), None
    return VALID, value


def weighted(*choices: tuple[int, SearchStrategy]) -> SearchStrategy:
    """One of the strategies, drawn with the given weights (the first one is what Hypothesis shrinks to)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


# ---------------------------------------------------------------- hostile values

# Parsed fine, but troublesome further on: infinity, an integer no float holds, underflow, -0, 4,300 digits.
ODD_NUMBERS = [Raw("1e999"), Raw("-1e999"), Raw("1" + "0" * 400), Raw("1e-400"), Raw("-0"), Raw("4" * 4300)]
ODD_STRINGS = [Raw('"\\ud83d\\ude00"'), Raw('"\\\\ud800"'), Raw('"\\u0000"'), "", " ", "\u202e", "é" * 3, "😀"]
# Refused by the content rules wherever they appear.
BAD_TOKENS = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("9" * 5000),
    Raw("-" + "1" * 4301),
    Raw('"\\ud800"'),
    Raw('"x\\udfffy"'),
    Raw('"\\ude00\\ud83d"'),
    Raw('"\\uDBFF"'),
]
FIELD_NAMES = [
    "algorithm",
    "task",
    "hyperparameters",
    "data",
    "target",
    "features",
    "text_features",
    "test_size",
    "random_state",
    "cv",
    "description",
    "columns",
    "rows",
    "records",
    "s3_key",
    "dataset",
    "version",
    "instances",
    "dataframe_split",
    "dataframe_records",
    "index",
    "inputs",
    "outputs",
    "name",
    "shape",
    "datatype",
    "parameters",
    "id",
    "output",
    *FEATURES,
]

json_scalars: SearchStrategy = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(ODD_NUMBERS + ODD_STRINGS),
)
json_values: SearchStrategy = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELD_NAMES), children, max_size=4)
    ),
    max_leaves=15,
)
LONE_SURROGATE_TEXT = st.text(
    alphabet=st.characters(categories=["Cs"]) | st.sampled_from("az09-_ é"), min_size=1, max_size=6
).filter(lambda s: any(0xD800 <= ord(c) <= 0xDFFF for c in s))


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "null" + "}" * depth


def _over_limit() -> list[str | bytes]:
    """Bodies just over and exactly at MAX_BODY_BYTES (built once: they are 6 MiB each)."""
    return [
        "{" + " " * (MAX_BODY_BYTES - 1) + "}",  # one byte over: 413 before it is parsed
        b"\xff" * (MAX_BODY_BYTES + 3),  # binary, base64-encoded by API Gateway: 413, not invalid_encoding
        "{" + " " * (MAX_BODY_BYTES - 2) + "}",  # exactly at the limit: parsed
    ]


OVER_LIMIT = _over_limit()
MALFORMED = [
    " ",
    "\n\t",
    "{",
    "[1,",
    "}",
    "nan",
    "None",
    "True",
    "undefined",
    "{'version': 1}",
    "{version: 1}",
    '{"version": 1,}',
    "[1,]",
    "// comment\n{}",
    "{}{}",
    "{} x",
    "\ufeff{}",
    "\x00",
    "0x10",
    "1.",
    ".5",
    "01",
    "+1",
    "--1",
    "1e",
    '"\\x41"',
    '"\\u12"',
    '"\\uZZZZ"',
    '"tab\there"',
    '{"a": "\\ud800\\ud800"}',
    '{"\\ud800": 1}',
    '{"version": "\\udfff"}',
    '{"instances": [["\\ud800", 1, 2, 3]]}',
    '{"inputs": [{"name": "\\udbff", "shape": [1], "datatype": "FP64", "data": [1]}]}',
    '{"version": NaN}',
    '{"instances": [[Infinity, 1, 2, 3]]}',
    '{"test_size": -Infinity}',
    '{"version": ' + "9" * 5000 + "}",
    '{"instances": [[' + "1" * 4301 + ", 1, 2, 3]]}",
    "[" + "1," * 2000 + "1]",
    '"just a string"',
    "null",
    "true",
    "0",
    "[]",
    "{}",
    "",
]


@st.composite
def hostile_payloads(draw: st.DrawFn) -> str | bytes:
    """Bodies aimed at the content rules: raw bytes, surrogates, malformed or over-deep JSON, huge bodies."""
    kind = draw(
        st.sampled_from(["bytes", "text", "surrogates", "malformed", "token", "deep", "deep_field"] * 3 + ["huge"])
    )
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "text":
        return draw(st.text(min_size=1, max_size=100))
    if kind == "surrogates":
        return draw(st.sampled_from(['{"version": "', '{"instances": [["', ""])) + draw(LONE_SURROGATE_TEXT)
    if kind == "malformed":
        return draw(st.sampled_from(MALFORMED))
    if kind == "token":  # a field of some request holding a token the content rules refuse, or such a key
        token = draw(st.sampled_from(BAD_TOKENS))
        if token.text.startswith('"') and draw(st.booleans()):
            return "{" + token.text + ": 1}"
        return '{"' + draw(st.sampled_from(FIELD_NAMES)) + '": ' + token.text + "}"
    depth = draw(st.integers(10, 5000))
    nesting = draw(st.sampled_from(["array", "object"]))
    if kind == "deep":
        return _deep(depth, nesting)
    if kind == "deep_field":
        name = draw(st.sampled_from(["instances", "data", "hyperparameters", "inputs", "version"]))
        return '{"' + name + '": ' + _deep(depth, nesting) + "}"
    return draw(st.sampled_from(OVER_LIMIT))


@dataclass(frozen=True)
class Body:
    """A drawn body: the value (rendered to JSON unless it is already a payload), its parts' verdicts, and
    facts the lookup step needs (the version a deploy names)."""

    value: Any
    parts: tuple[Part, ...] = ()
    info: dict[str, str] = field(default_factory=dict)
    rendered: bool = False  # `value` is the payload itself (str or bytes), not a value to render


@st.composite
def render(draw: st.DrawFn, body: Body) -> str | bytes | None:
    """The payload: JSON in any spacing, ASCII-escaped or not, sent as text or UTF-8 bytes."""
    if body.rendered:
        return body.value
    if body.value is MISSING_BODY:
        return draw(st.sampled_from([None, ""]))
    text = to_json(body.value, ascii_only=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from([" ", "\n", "\r\n\t"])) + text + draw(st.sampled_from(["", "\n", "  "]))
    if draw(st.booleans()):
        return text.encode("utf-8", "surrogatepass")
    return text


def generic_bodies(model_shaped: Callable[[], SearchStrategy[Body]] | None) -> SearchStrategy[Body]:
    """Schema-shaped bodies (when the route has a model) mixed with arbitrary JSON and hostile payloads."""
    arbitrary = json_values.map(lambda v: Body(v, (unknown(FIELDS),) if isinstance(v, dict) else ()))
    hostile = hostile_payloads().map(lambda p: Body(p, (unknown(FIELDS),), rendered=True))
    if model_shaped is None:
        return weighted((1, hostile), (1, arbitrary))
    return weighted((6, model_shaped()), (1, arbitrary), (2, hostile))


# ---------------------------------------------------------------- path parameters


@dataclass(frozen=True)
class Param:
    """A path or query value and what it is in the seeded world: `known` (iris, production, a ready version),
    `other` (valid but not there), `invalid` (refused whatever else the request holds) or `unknown`."""

    text: str
    kind: str


HOSTILE_NAMES = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E%2F",
    "..%2f",
    "Iris",
    "IRIS",
    "iris ",
    " iris",
    "a b",
    "modèle",
    "ü",
    "😀",
    "\ud800",
    "a\udfffb",
    "x" * 65,
    "x" * 300,
    "-iris",
    "_iris",
    "iris.v1",
    "a\x00b",
    "a\nb",
    "ı",
    "ｉｒｉｓ",
    "iris\u200b",
    "${jndi:ldap://x}",
    "';--",
    "<script>",
    "a*",
    "%00",
    "a?b",
    "a#b",
    'a"b',
    "a\\b",
    "\t",
    "~",
    "a+b",
    "İ",
    "١",
]
valid_names = st.from_regex(NAME.pattern, fullmatch=True)
hostile_names: SearchStrategy[str] = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(min_size=1, max_size=70).filter(lambda s: "/" not in s and not NAME.fullmatch(s)),
    LONE_SURROGATE_TEXT,
)


def model_params() -> SearchStrategy[Param]:
    return weighted(
        (5, st.just(Param(MODEL, "known"))),
        (2, valid_names.filter(lambda s: s != MODEL).map(lambda s: Param(s, "other"))),
        (1, st.sampled_from(["x" * 64, "0", "a-", "a_b", "iris-"]).map(lambda s: Param(s, "other"))),
        (3, hostile_names.map(lambda s: Param(s, "invalid"))),
    )


def stage_params() -> SearchStrategy[Param]:
    return weighted(
        (4, st.just(Param(DEPLOYED_STAGE, "known"))),
        (1, st.just(Param("staging", "other"))),
        (2, valid_names.filter(lambda s: s != DEPLOYED_STAGE).map(lambda s: Param(s, "other"))),
        (3, hostile_names.map(lambda s: Param(s, "invalid"))),
    )


INVALID_VERSIONS = [
    "0",
    "-1",
    "-0",
    str(MAX_VERSION + 1),
    "9" * 20,
    "9" * 5000,
    "abc",
    "1.5",
    "one",
    "NaN",
    "inf",
    "true",
    "null",
    "\ud800",
    "%31",
    "0x10",
    "1 2",
    "--1",
    "v1",
    "1/",
]
# Spellings pydantic's lax integer parsing may accept: the docs do not say, so no answer is expected.
LENIENT_VERSIONS = ["01", "+1", " 1", "1 ", "1.0", "1_0", "١", "１", "²", "1e0", "1e3", "0001", "2.0", "\t2"]


def version_params() -> SearchStrategy[Param]:
    return weighted(
        *((2, st.just(Param(version, "known"))) for version in READY_VERSIONS),
        (1, st.sampled_from(["3", str(MAX_VERSION)]).map(lambda s: Param(s, "other"))),
        (1, st.integers(3, MAX_VERSION).map(lambda n: Param(str(n), "other"))),
        (2, st.sampled_from(INVALID_VERSIONS).filter(lambda s: "/" not in s).map(lambda s: Param(s, "invalid"))),
        (1, st.integers(-(10**20), 0).map(lambda n: Param(str(n), "invalid"))),
        (1, st.integers(MAX_VERSION + 1, 10**30).map(lambda n: Param(str(n), "invalid"))),
        (
            1,
            st.text(
                alphabet=st.characters(exclude_categories=["Nd", "No", "Cs"], exclude_characters="/"),
                min_size=1,
                max_size=8,
            ).map(lambda s: Param(s, "invalid")),
        ),
        (1, st.sampled_from(LENIENT_VERSIONS).map(lambda s: Param(s, "unknown"))),
    )


def dataset_id_params() -> SearchStrategy[Param]:
    """No dataset exists in the seeded world: a well-formed id names none, and so does anything else (a
    malformed id is 404 dataset_not_found too, from the route, so every id is `other`)."""
    return weighted(
        (3, st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda s: Param(s, "other"))),
        (1, st.sampled_from(["A" * 32, "0" * 31, "0" * 33, "x", "g" * 32]).map(lambda s: Param(s, "other"))),
        (2, hostile_names.map(lambda s: Param(s, "other"))),
    )


PARAM_STRATEGIES: dict[str, Callable[[], SearchStrategy[Param]]] = {
    "model": model_params,
    "stage": stage_params,
    "version": version_params,
    "dataset_id": dataset_id_params,
}
PARAM_CODES = {
    "model": "invalid_name",
    "stage": "invalid_name",
    "version": "invalid_version",
    "dataset_id": "dataset_not_found",
}


def path_part(params: dict[str, Param]) -> Part:
    """Path parameters are validated in the order the route declares them; the first wrong one answers."""
    for name, value in params.items():
        if value.kind == "invalid":
            return part(PATH, PARAM_CODES[name])
        if value.kind == "unknown":
            return unknown(PATH)
    return part(PATH)


# ---------------------------------------------------------------- query and headers


@dataclass(frozen=True)
class Query:
    values: dict[str, list[str]]
    parts: tuple[Part, ...]
    stage: Param | None = None
    version: Param | None = None


junk_queries = st.dictionaries(
    st.sampled_from(["x", "debug", "Stage", "VERSION", "stage ", "", "a[]", "😀"]) | st.text(max_size=6),
    st.lists(st.text(max_size=12), min_size=1, max_size=2),
    max_size=2,
)


@st.composite
def plain_queries(draw: st.DrawFn) -> Query:
    """Query parameters a route does not declare: ignored."""
    values = draw(junk_queries) if draw(st.integers(0, 4)) == 0 else {}
    values = {k: v for k, v in values.items() if k not in ("stage", "version")}
    return Query(values, ())


@st.composite
def model_queries(draw: st.DrawFn) -> Query:
    """predict's ?stage= and ?version= (either, both, neither, hostile, repeated) plus undeclared ones."""
    values: dict[str, list[str]] = {}
    if draw(st.integers(0, 5)) == 0:
        values.update(draw(junk_queries))
    values.pop("stage", None)
    values.pop("version", None)
    stage = draw(st.none() | stage_params()) if draw(st.booleans()) else None
    version = draw(st.none() | version_params()) if draw(st.integers(0, 2)) == 0 else None
    parts: list[Part] = []
    for name, value in (("stage", stage), ("version", version)):
        if value is None:
            continue
        if draw(st.integers(0, 9)) == 0:  # repeated: ?stage=a&stage=b
            values[name] = [value.text, draw(st.sampled_from([value.text, "production", "x", ""]))]
            parts.append(unknown(QUERY))
            continue
        values[name] = [value.text]
        if "," in value.text:  # Powertools splits single-value query strings on commas
            parts.append(unknown(QUERY))
        elif value.kind == "invalid":
            parts.append(part(QUERY, PARAM_CODES[name]))
        elif value.kind == "unknown":
            parts.append(unknown(QUERY))
    if stage is not None and version is not None:
        parts.append(part(LOOKUP, "invalid_request"))  # "give either stage or version, not both"
    return Query(values, tuple(parts), stage, version)


CARD_FORMATS = ["html", "json"]
# Refused: only the exact lower-case spellings are formats.
BAD_FORMATS = [
    "xml",
    "JSON",
    "Html",
    "htm",
    "text/html",
    "application/json",
    "json ",
    " html",
    "jsonp",
    "pdf",
    "0",
    "null",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "html\x00",
    "\ud800",
]


@st.composite
def format_queries(draw: st.DrawFn) -> Query:
    """The card's ?format= (html, json, absent, hostile, repeated) plus undeclared parameters."""
    values: dict[str, list[str]] = {}
    if draw(st.integers(0, 5)) == 0:
        values.update(draw(junk_queries))
    values.pop("format", None)
    kind = draw(st.sampled_from(["none"] * 3 + ["valid"] * 4 + ["bad", "bad", "text", "repeated"]))
    parts: list[Part] = []
    sent: str | None = None
    if kind == "valid":
        sent = draw(st.sampled_from(CARD_FORMATS))
    elif kind == "bad":
        sent = draw(st.sampled_from(BAD_FORMATS))
    elif kind == "text":
        sent = draw(st.text(max_size=10))
    elif kind == "repeated":  # ?format=json&format=html: which one counts is not documented
        values["format"] = draw(st.lists(st.sampled_from([*CARD_FORMATS, "xml", ""]), min_size=2, max_size=2))
        parts.append(unknown(QUERY))
    if sent is not None:
        values["format"] = [sent]
        if sent in CARD_FORMATS:
            pass
        elif "," in sent or sent == "":  # split on commas by Powertools; an empty value may count as absent
            parts.append(unknown(QUERY))
        else:
            parts.append(part(QUERY, "invalid_request"))
    return Query(values, tuple(parts))


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "",
    "APPLICATION/JSON",
    "application/xml",
    "*/*",
]
INVALID_KEYS = ["", " ", "a b", " abc", "abc ", "\t", "ключ", "é", "a\x7f", "a\x00", "x" * 256, "k" * 1000, "\ud800"]
valid_keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)
invalid_keys = st.sampled_from(INVALID_KEYS) | st.text(max_size=12).filter(lambda s: not IDEMPOTENCY_KEY.fullmatch(s))
OTHER_HEADERS = [
    ("Accept", "text/html"),
    ("Accept", "*/*"),
    ("Cookie", "a=1; b"),
    ("Cookie", "=;;=x; \x01=2"),
    ("Cookie", "session=" + "x" * 5000),
    ("X-Forwarded-For", "1.2.3.4, ::1"),
    ("User-Agent", "fuzz/1.0 😀"),
    ("Content-Encoding", "gzip"),
    ("Content-Length", "999999"),
    ("Transfer-Encoding", "chunked"),
    ("X-Amzn-Trace-Id", "Root=garbage"),
    ("x-api-key", ""),
    ("Referer", '"><script>alert(1)</script>'),  # pages must not reflect it
    ("Host", "<svg onload=alert(1)>.example"),
]


@dataclass(frozen=True)
class Headers:
    values: dict[str, list[str]]
    key: str | None  # the Idempotency-Key sent, if any
    key_valid: bool


@st.composite
def headers(draw: st.DrawFn, mutating: bool, force_key: bool = False) -> Headers:
    """Content-Types the service must ignore, other headers, and an Idempotency-Key (always, with `force_key`:
    seven in ten valid)."""
    values: dict[str, list[str]] = {}
    if draw(st.integers(0, 3)) > 0:
        name = draw(st.sampled_from(["Content-Type", "content-type"]))
        values[name] = [draw(st.sampled_from(CONTENT_TYPES))]
    for name, value in draw(st.lists(st.sampled_from(OTHER_HEADERS), max_size=2, unique=True)):
        values[name] = [value]
    key: str | None = None
    # Hypothesis favours the low end of a range (that is where it shrinks to), so the low end is the common case.
    send_key = force_key or draw(st.integers(0, 9) if mutating else st.integers(0, 30)) < 4
    if send_key:  # sent to every route; only the mutating ones read it
        key = draw(valid_keys) if draw(st.integers(0, 9)) < 7 else draw(invalid_keys)
        values[draw(st.sampled_from(["Idempotency-Key", "idempotency-key"]))] = [key]
    return Headers(values, key, key is not None and bool(IDEMPOTENCY_KEY.fullmatch(key)))


# ---------------------------------------------------------------- deploy: PUT /models/{model}/stages/{stage}

BAD_VERSIONS: list[Any] = [
    0,
    -1,
    MAX_VERSION + 1,
    10**30,
    2**63,
    Raw("1" + "0" * 400),
    Raw("-0"),
    Raw("1e-400"),
    Raw("1e999"),
    1.0,
    1.5,
    "1",
    "one",
    True,
    False,
    None,
    [],
    {},
    [1],
]


@st.composite
def deploy_bodies(draw: st.DrawFn) -> Body:
    version: Any
    kind = draw(st.sampled_from(["ready", "ready", "ready", "other", "bad", "missing"]))
    if kind == "ready":
        version, code = int(draw(st.sampled_from(READY_VERSIONS))), None
    elif kind == "other":
        version, code = draw(st.integers(3, MAX_VERSION)), None
    elif kind == "bad":
        version, code = draw(st.sampled_from(BAD_VERSIONS)), "invalid_version"
    else:
        version, code = MISSING_BODY, "invalid_version"
    value: dict[Any, Any] = {} if version is MISSING_BODY else {"version": version}
    codes = {code} if code else set()
    extra = draw(st.sampled_from([None, None, None, "x", "Version", "", "stage", Raw('"\\ud800"')]))
    if extra is not None:
        value[extra] = draw(json_scalars)
        codes.add("invalid_request")
    return Body(value, (part(FIELDS, *codes),), {"version": "ready" if kind == "ready" else "other"})


# ---------------------------------------------------------------- predict: POST /models/{model}/predict

# Values a numeric feature takes: numbers (any finite float), null, numeric strings, spellings of missing,
# true/false (1/0).
numeric_cells = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([None, "5.1", " 3.5 ", "1e5", "-0", "NA", "nan", "null", "", True, False, 10**300]),
    st.sampled_from([1.7976931348623157e308, -1e308, 1e300, 5e-324, "1e308"]),  # finite, but not after scaling
)
BAD_CELLS: list[Any] = [
    "abc",
    "1,5",
    "inf",
    "-Infinity",
    "1e999",
    Raw("1e999"),
    Raw("-1e999"),
    Raw("1" + "0" * 400),
    Raw("4" * 4300),
    [1],
    [],
    {"a": 1},
    {},
]


def _row(draw: st.DrawFn) -> list[Any]:
    return [draw(numeric_cells) for _ in FEATURES]


def _cells(value: Any) -> list[Any]:
    """Every scalar inside a request body."""
    if isinstance(value, dict):
        return [c for v in value.values() for c in _cells(v)]
    if isinstance(value, list):
        return [c for v in value for c in _cells(v)]
    return [value]


def _beyond_scaling(cell: Any) -> bool:
    """A finite number so large that the model's own arithmetic (scaling, squared distances, exponentials)
    overflows on it: the service then answers invalid_value instead of predictions it cannot compute."""
    try:
        return abs(float(cell)) >= 1e100
    except (TypeError, ValueError, OverflowError):
        return False


PREDICT_MUTATIONS = ["none"] * 6 + [
    "width",
    "bad_cell",
    "missing_feature",
    "empty",
    "two_formats",
    "no_format",
    "not_list",
    "extra_field",
    "too_many",
    "nested_row",
    "split_duplicate",
    "split_width",
    "non_string_column",
    "records_non_object",
]


@st.composite
def predict_bodies(draw: st.DrawFn, clean: bool = False) -> Body:
    """A valid request in one of the three formats, then (unless `clean`) up to two documented ways of getting it
    wrong."""
    rows = [_row(draw) for _ in range(draw(st.integers(1, 3)))]
    form = draw(st.sampled_from(["rows", "objects", "split", "records"]))
    data_codes: set[str] = set()
    field_codes: set[str] = set()
    mutation = "none" if clean else draw(st.sampled_from(PREDICT_MUTATIONS))
    if mutation == "bad_cell":
        row = draw(st.sampled_from(rows))
        row[draw(st.integers(0, 3))] = draw(st.sampled_from(BAD_CELLS))
        data_codes.add("invalid_value")
    if mutation == "width" and form == "rows":
        rows[draw(st.integers(0, len(rows) - 1))] = _row(draw)[: draw(st.sampled_from([0, 1, 3]))] + (
            [1.0, 2.0] if draw(st.booleans()) and form == "rows" else []
        )
        data_codes.add("invalid_shape")
    names = list(FEATURES)
    extra_names = draw(st.lists(st.sampled_from(["extra", "id", "", "SEPAL_LENGTH_CM"]), max_size=2, unique=True))
    if mutation == "missing_feature" and form != "rows":
        names.remove(draw(st.sampled_from(FEATURES)))
        data_codes.add("missing_features")
    value: dict[str, Any]
    if form == "rows":
        value = {"instances": rows}
    elif form in ("objects", "records"):
        records = [
            {**dict(zip(names, [row[FEATURES.index(n)] for n in names], strict=True)), **{e: 1 for e in extra_names}}
            for row in rows
        ]
        value = {"instances" if form == "objects" else "dataframe_records": records}
    else:
        columns = draw(st.permutations(names)) + extra_names
        data = [[row[FEATURES.index(c)] if c in FEATURES else "x" for c in columns] for row in rows]
        if mutation == "width":
            data[0] = data[0][:-1]
            data_codes.add("invalid_shape")
        split: dict[str, Any] = {"columns": columns, "data": data}
        if draw(st.booleans()):
            split["index"] = list(range(len(rows)))
        if mutation == "split_duplicate":
            split["columns"] = [*columns, columns[0]]
            split["data"] = [[*row, row[0]] for row in data]
            data_codes.add("invalid_shape")
        if mutation == "non_string_column":
            split["columns"] = [*columns[:-1], 7]
            field_codes.add("invalid_shape")
        value = {"dataframe_split": split}
    if mutation == "empty":
        value = {draw(st.sampled_from(["instances", "dataframe_records"])): []}
        data_codes = {"invalid_shape"}
        field_codes.clear()
    elif mutation == "two_formats":
        if "instances" in value:
            value["dataframe_records"] = [dict(zip(FEATURES, rows[0], strict=True))]
        else:
            value["instances"] = [list(rows[0])]
        data_codes.add("invalid_shape")
    elif mutation == "no_format":
        value = draw(st.sampled_from([{}, {"instances": None}, {"dataframe_split": None, "instances": None}]))
        data_codes, field_codes = {"invalid_shape"}, set()
    elif mutation == "not_list":
        value = {
            draw(st.sampled_from(["instances", "dataframe_records"])): draw(st.sampled_from(["rows", 3, {"a": 1}]))
        }
        data_codes, field_codes = set(), {"invalid_shape"}
    elif mutation == "extra_field":
        value[draw(st.sampled_from(["inputs", "rows", "Instances", "", "stage"]))] = 1
        field_codes.add("invalid_request")
    elif mutation == "too_many":
        value = {"instances": TOO_MANY_ROWS}
        data_codes, field_codes = {"payload_too_large"}, set()
    elif mutation == "nested_row" and form == "rows":
        value = {"instances": [[*rows[0][:1], [rows[0][1:]]]]}
        data_codes = {"invalid_shape", "invalid_value"}
    elif mutation == "records_non_object":
        value = {"dataframe_records": [draw(st.sampled_from([[1, 2, 3, 4], "row", 1]))]}
        data_codes, field_codes = set(), {"invalid_shape"}
    elif mutation == "split_width" and form == "split":
        value["dataframe_split"]["data"] = [[1.0, 2.0]]
        data_codes.add("invalid_shape")
    if any(_beyond_scaling(cell) for cell in _cells(value)):
        data_codes |= {"invalid_value"} if data_codes else {"invalid_value", SUCCESS}
    parts = (part(FIELDS, *field_codes), part(DATA, *data_codes))
    return Body(value, parts)


TOO_MANY_ROWS = Raw(to_json([[5.1, 3.5, 1.4, 0.2]] * (MAX_PREDICT_ROWS + 1)))


# ---------------------------------------------------------------- explain: POST /models/{model}/explain

# The outputs each seeded version has (v1 a logistic regression: probabilities by sampling, the decision
# function exactly; v2 a decision tree: probabilities by TreeSHAP), the three the field names, and values of the
# field that are no output at all.
VERSION_OUTPUTS = {"1": frozenset({"probability", "decision"}), "2": frozenset({"probability"})}
OUTPUTS = ["probability", "decision", "value"]
BAD_OUTPUTS: list[Any] = [
    "logits",
    "",
    "Probability",
    "DECISION",
    " value",
    "probabilities",
    "shap",
    1,
    0,
    True,
    [],
    ["probability"],
    {"output": "value"},
    "<script>",
]


@st.composite
def explain_bodies(draw: st.DrawFn, clean: bool = False) -> Body:
    """predict's bodies (the same formats, rows and mistakes) and an optional `output`: one of the three (which
    the version explained may not have: see `_explained_output`), null (the default) or a value that is no
    output. `clean`: rows in any format without mistakes, and an output the seeded versions mostly have (what
    the additivity check needs)."""
    body = draw(predict_bodies(clean))
    kinds = ["absent", "named", "named", "null"] if clean else ["absent"] * 3 + ["named"] * 3 + ["null", "bad"]
    kind = draw(st.sampled_from(kinds))
    if kind == "absent":
        return body
    value = dict(body.value)
    fields_part, data_part = body.parts
    assert fields_part.codes is not None
    info: dict[str, str] = {}
    if kind == "named":
        value["output"] = info["output"] = draw(st.sampled_from(OUTPUTS[:2] if clean else OUTPUTS))
    elif kind == "null":
        value["output"] = None
    else:
        value["output"] = draw(st.sampled_from(BAD_OUTPUTS))
        fields_part = part(FIELDS, *fields_part.codes, "invalid_output")
    return Body(value, (fields_part, data_part), info)


def _explained_output(parts: list[Part], query: Query, output: str) -> list[Part]:
    """The parts with the rows' verdict (DATA) amended for an output the version explained does not have: it is
    refused (invalid_output) once the rows are read, before the model evaluates them. The version is the one
    ?version= names, else the one production serves; when the request cannot reach the rows (a wrong stage, a
    version not there) an earlier part answers anyway."""
    version = IN_USE_VERSION
    if query.version is not None and query.stage is None:
        version = query.version.text if query.version.kind == "known" else ""
    if version not in VERSION_OUTPUTS:
        return [unknown(DATA) if p.rank == DATA else p for p in parts]
    if output in VERSION_OUTPUTS[version]:
        return parts
    return [
        part(DATA, *((p.codes - {SUCCESS}) | {"invalid_output"})) if p.rank == DATA and p.codes is not None else p
        for p in parts
    ]


# ---------------------------------------------------------------- infer: the Open Inference Protocol


INFER_MUTATIONS = ["none"] * 5 + [
    "count",
    "width",
    "datatype",
    "datatype_type",
    "int_fraction",
    "bool",
    "bytes",
    "bad_value",
    "no_inputs",
    "inputs_type",
    "tensor_field",
    "negative",
    "empty_shape",
    "duplicate",
    "missing",
    "unknown_tensor",
    "rows_mismatch",
    "output",
    "too_many",
    "empty_name",
    "feature_matrix",
    "range",
]


@st.composite
def infer_bodies(draw: st.DrawFn) -> Body:
    """A valid InferenceRequest (one [N, 4] tensor, or one tensor per feature), then at most one mistake."""
    n = draw(st.integers(1, 3))
    integers = draw(st.booleans())
    cell = st.integers(0, 255) if integers else st.floats(-1000, 1000, allow_nan=False)
    rows = [[draw(cell) for _ in FEATURES] for _ in range(n)]
    layout = draw(st.sampled_from(["matrix", "matrix", "features"]))
    datatypes = ["INT64", "INT32", "FP64", "FP32", "UINT8"] if integers else ["FP64", "FP32", "FP16"]
    tensors: list[dict[str, Any]]
    if layout == "matrix":
        flat = [v for row in rows for v in row]
        datatype = draw(st.sampled_from(datatypes))
        tensor = {
            "name": draw(st.sampled_from(["input-0", "input", "x", "features"])),
            "shape": [n, len(FEATURES)],
            "datatype": datatype,
            "data": flat if draw(st.booleans()) else [flat[i : i + 4] for i in range(0, len(flat), 4)],
        }
        tensors = [tensor]
    else:
        tensors = [
            {
                "name": name,
                "shape": draw(st.sampled_from([[n], [n, 1]])),
                "datatype": "FP64",
                "data": [row[j] for row in rows],
            }
            for j, name in enumerate(FEATURES)
        ]
        tensors = draw(st.permutations(tensors))
    value: dict[str, Any] = {"inputs": tensors}
    if draw(st.booleans()):
        value["id"] = draw(st.text(max_size=20))
    if draw(st.integers(0, 3)) == 0:
        value["parameters"] = draw(st.dictionaries(st.text(max_size=5), json_scalars, max_size=2))
    if draw(st.booleans()):
        value["outputs"] = [
            {"name": n}
            for n in draw(st.lists(st.sampled_from(["predict", "predict_proba"]), min_size=1, max_size=2, unique=True))
        ]
    mutation = draw(st.sampled_from(INFER_MUTATIONS))
    codes: set[str] = set()  # refused by the protocol code
    fields: set[str] = set()  # refused by the InferenceRequest model (pydantic), before the model is looked up
    first = tensors[0]
    if mutation == "count":
        first["shape"] = [first["shape"][0] + draw(st.integers(1, 10**12)), *first["shape"][1:]]
        codes.add("invalid_request")
    elif mutation == "width" and layout == "matrix":
        first["shape"] = [n, 3]
        first["data"] = [v for row in rows for v in row[:3]]
        codes.add("invalid_request")
    elif mutation == "datatype":
        first["datatype"] = draw(st.sampled_from(["FP128", "float", "", "fp64", "STRING", "INT"]))
        codes.add("invalid_request")
    elif mutation == "datatype_type":
        first["datatype"] = draw(st.sampled_from([1, None, [], {"a": 1}]))
        fields.add("invalid_request")
    elif mutation == "int_fraction":
        first["datatype"] = "INT64"
        first["data"] = [0.5] * len(_flat(first["data"]))
        codes.add("invalid_request")
    elif mutation == "bool":
        first["datatype"] = "BOOL"
        codes.add("invalid_request")
    elif mutation == "bytes":
        first["datatype"] = "BYTES"
        first["data"] = ["abc"] * len(_flat(first["data"]))
        codes.add("invalid_value")
    elif mutation == "bad_value":
        flat = _flat(first["data"])
        flat[draw(st.integers(0, len(flat) - 1))] = draw(
            st.sampled_from(["abc", None, True, [], {"a": 1}, Raw("1e999"), Raw("-1e999"), Raw("1" + "0" * 400)])
        )
        first["data"] = flat
        codes.update({"invalid_request", "invalid_value"})
    elif mutation == "no_inputs":
        value["inputs"] = []
        fields.add("invalid_request")
    elif mutation == "inputs_type":
        value["inputs"] = draw(st.sampled_from([None, "x", 1, {"name": "x"}, [1], [None]]))
        fields.add("invalid_request")
    elif mutation == "tensor_field":
        del first[draw(st.sampled_from(["name", "shape", "datatype", "data"]))]
        fields.add("invalid_request")
    elif mutation == "negative":
        first["shape"] = [-n, *first["shape"][1:]]
        codes.add("invalid_request")
    elif mutation == "empty_shape":
        first["shape"] = []
        codes.add("invalid_request")
    elif mutation == "duplicate" and layout == "features":
        value["inputs"] = [*tensors, dict(tensors[0])]
        codes.add("invalid_request")
    elif mutation == "missing" and layout == "features":
        value["inputs"] = tensors[1:]
        codes.add("invalid_request")
    elif mutation == "unknown_tensor" and layout == "features":
        value["inputs"] = [*tensors, {**tensors[0], "name": "not_a_feature"}]
        codes.add("invalid_request")
    elif mutation == "rows_mismatch" and layout == "features":
        first["shape"] = [n + 1]
        first["data"] = [*_flat(first["data"]), 1.0]
        codes.add("invalid_request")
    elif mutation == "output":
        value["outputs"] = [{"name": draw(st.sampled_from(["predictions", "", "PREDICT", "proba"]))}]
        codes.add("invalid_request")
    elif mutation == "too_many":
        value = {"inputs": [TOO_MANY_TENSOR]}
        codes = {"payload_too_large"}
    elif mutation == "empty_name":
        first["name"] = ""
        codes.add("invalid_request")
    elif mutation == "range":  # "a tensor whose values do not fit its datatype is refused"
        first["datatype"], bad = draw(st.sampled_from([("UINT8", 256), ("UINT8", -1), ("INT8", 128), ("FP16", 1e5)]))
        flat = _flat(first["data"])
        flat[0] = bad
        first["data"] = flat
        codes.add("invalid_request")
    elif mutation == "feature_matrix" and layout == "matrix":
        first["name"] = FEATURES[0]
        codes.add("invalid_request")
    return Body(value, (part(FIELDS, *fields), part(DATA, *codes)))


def _flat(data: list) -> list:
    return [v for item in data for v in (item if isinstance(item, list) else [item])]


TOO_MANY_TENSOR = Raw(
    to_json(
        {
            "name": "input-0",
            "shape": [MAX_PREDICT_ROWS + 1, 4],
            "datatype": "FP64",
            "data": [5.1, 3.5, 1.4, 0.2] * (MAX_PREDICT_ROWS + 1),
        }
    )
)


@st.composite
def binary_tensor_payloads(draw: st.DrawFn) -> Body:
    """tritonclient's binary tensor extension: a JSON header, then raw tensor bytes, and the header's length
    in Inference-Header-Content-Length. The service takes JSON only: 400, never a 500."""
    header = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]
    }
    payload = json.dumps(header).encode() + draw(st.binary(min_size=16, max_size=16))
    return Body(payload, (unknown(FIELDS),), {"binary_header": str(len(json.dumps(header)))}, rendered=True)


# ---------------------------------------------------------------- training: POST /models/{model}/versions

COLORS = ["red", "green", "blue"]
WORDS = ["cancel", "refund", "great", "slow", "invoice", "seats", "export", "crash"]


def _tiny_csv() -> bytes:
    lines = ["x1,x2,color,label"]
    lines += [f"{i},{(i * 7) % 5},{COLORS[i % 3]},{'yes' if i % 2 else 'no'}" for i in range(16)]
    return ("\n".join(lines) + "\n").encode()


def _tiny_jsonl() -> bytes:
    records = [{"x1": i, "x2": (i * 3) % 4, "label": "yes" if i % 2 else "no"} for i in range(16)]
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# Seeded under datasets/ before every example: the ones a training request reads, and what reading them gives.
DATASETS: dict[str, bytes] = {
    "datasets/tiny.csv": _tiny_csv(),
    "datasets/tiny.jsonl": _tiny_jsonl(),
    "datasets/tiny.csv.gz": gzip.compress(_tiny_csv(), mtime=0),
    "datasets/bom.csv": b"\xef\xbb\xbf" + _tiny_csv(),
    "datasets/latin1.csv": b"x1,label\n" + "é,yes\n".encode("latin-1") * 12,
    "datasets/notgzip.csv.gz": b"not gzip at all",
    "datasets/ragged.csv": b"x1,label\n1,yes\n2\n" + b"3,no\n" * 12,
    "datasets/quote.csv": b'x1,label\n"1,yes\n' + b"3,no\n" * 12,
    "datasets/empty.csv": b"",
    "datasets/header_only.csv": b"x1,label\n",
    "datasets/dupe_header.csv": b"x1,x1,label\n" + b"1,2,yes\n3,4,no\n" * 8,
    "datasets/badline.jsonl": b'{"x1": 1, "label": "yes"}\n{nope\n',
    "datasets/deep.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "datasets/bignum.jsonl": b'{"x1": ' + b"9" * 5000 + b', "label": "yes"}\n',
    "datasets/array.jsonl": b"[1, 2]\n" * 12,
    "datasets/nan.jsonl": b'{"x1": NaN, "label": "yes"}\n{"x1": 1, "label": "no"}\n' * 8,
}
GOOD_DATASETS = ["datasets/tiny.csv", "datasets/tiny.jsonl", "datasets/tiny.csv.gz", "datasets/bom.csv"]
# Training on the others is refused: NaN (which Python's JSON reader takes) as a non-finite value, the rest
# as unreadable data.
BAD_DATASETS = {
    key: "invalid_value" if "nan" in key else "invalid_data" for key in DATASETS if key not in GOOD_DATASETS
}
BAD_DATASET_KEYS = [
    "../secrets.csv",
    "datasets/../models/iris/registry.csv",
    "datasets/",
    "datasets//x.csv",
    "datasets/./x.csv",
    "datasets/x.txt",
    "datasets/x.csv.zip",
    "datasets/a\\b.csv",
    "DATASETS/tiny.csv",
    "/datasets/tiny.csv",
    "datasets/" + "x" * 1100 + ".csv",
    "",
    "models/iris/registry.json",
]
MISSING_DATASET_KEYS = ["datasets/missing.csv", "datasets/sub/dir/none.jsonl.gz", "datasets/tiny.CSV.gz"]

TASK_ALGORITHMS = {task: [n for n, a in ALGORITHMS.items() if task in a.tasks] for task in (CLASSIFICATION, REGRESSION)}
TOL = st.sampled_from([1e-4, 1e-2])
CRITERIA = {CLASSIFICATION: ["gini", "entropy", "log_loss"], REGRESSION: ["squared_error", "friedman_mse"]}
CLASS_ONLY = {"class_weight": st.sampled_from([None, "balanced"])}


def cheap_hyperparameters(algorithm: str, task: str) -> dict[str, SearchStrategy]:
    """Valid values that keep a fit on a tiny table well under a second."""
    tree = {
        "criterion": st.sampled_from(CRITERIA[task]),
        "max_depth": st.sampled_from([None, 2, 4]),
        "min_samples_split": st.sampled_from([2, 4]),
        "min_samples_leaf": st.sampled_from([1, 2]),
        "max_features": st.sampled_from([None, "sqrt", 1, 0.5]),
        "max_leaf_nodes": st.sampled_from([None, 4]),
        "ccp_alpha": st.sampled_from([0.0, 0.01]),
        **(CLASS_ONLY if task == CLASSIFICATION else {}),
    }
    pools: dict[str, dict[str, SearchStrategy]] = {
        "linear_regression": {"fit_intercept": st.booleans(), "positive": st.booleans()},
        "ridge": {
            "alpha": st.sampled_from([0.0, 0.5, 10.0]),
            "fit_intercept": st.booleans(),
            "solver": st.sampled_from(["auto", "cholesky", "lsqr", "sparse_cg"]),
            "max_iter": st.sampled_from([None, 50]),
            "tol": TOL,
            **(CLASS_ONLY if task == CLASSIFICATION else {}),
        },
        "lasso": {
            "alpha": st.sampled_from([0.01, 1.0]),
            "fit_intercept": st.booleans(),
            "max_iter": st.sampled_from([100, 1000]),
            "tol": TOL,
            "positive": st.booleans(),
            "selection": st.sampled_from(["cyclic", "random"]),
        },
        "logistic_regression": {
            "C": st.sampled_from([0.1, 1.0, 10.0]),
            "solver": st.sampled_from(["lbfgs", "newton-cg", "newton-cholesky"]),
            "max_iter": st.sampled_from([100, 300]),
            "tol": TOL,
            "fit_intercept": st.booleans(),
            **CLASS_ONLY,
        },
        "svm": {
            "C": st.sampled_from([0.5, 1.0, 10.0]),
            "kernel": st.sampled_from(["linear", "rbf", "poly", "sigmoid"]),
            "degree": st.sampled_from([1, 2, 3]),
            "gamma": st.sampled_from(["scale", "auto", 0.1]),
            "coef0": st.sampled_from([0.0, 1.0]),
            "tol": st.sampled_from([1e-3, 1e-2]),
            "shrinking": st.booleans(),
            "max_iter": st.sampled_from([-1, 1000]),
            **({"epsilon": st.sampled_from([0.0, 0.1])} if task == REGRESSION else CLASS_ONLY),
        },
        "knn": {
            "n_neighbors": st.sampled_from([1, 2, 3]),
            "weights": st.sampled_from(["uniform", "distance"]),
            "p": st.sampled_from([1, 2]),
            "metric": st.sampled_from(["minkowski", "euclidean", "manhattan", "chebyshev"]),
            "algorithm": st.sampled_from(["auto", "ball_tree", "kd_tree", "brute"]),
            "leaf_size": st.sampled_from([10, 30]),
        },
        "naive_bayes": {"var_smoothing": st.sampled_from([1e-9, 1e-3])},
        "decision_tree": {**tree, "splitter": st.sampled_from(["best", "random"])},
        "random_forest": {
            **tree,
            "n_estimators": st.sampled_from([1, 5, 10]),
            "max_samples": st.sampled_from([None, 0.8]),
        },
        "gradient_boosting": {
            "n_estimators": st.sampled_from([1, 5, 10]),
            "learning_rate": st.sampled_from([0.1, 0.5]),
            "max_depth": st.sampled_from([1, 2, 3]),
            "subsample": st.sampled_from([0.8, 1.0]),
            "loss": st.sampled_from(
                ["log_loss"] if task == CLASSIFICATION else ["squared_error", "absolute_error", "huber"]
            ),
        },
        "mlp": {
            "hidden_layer_sizes": st.sampled_from([[4], [8, 4]]),
            "activation": st.sampled_from(["relu", "tanh", "logistic"]),
            "solver": st.sampled_from(["adam", "lbfgs"]),
            "alpha": st.sampled_from([1e-4, 1e-2]),
            "max_iter": st.sampled_from([20, 50]),
            "learning_rate_init": st.sampled_from([1e-3, 1e-2]),
        },
    }
    return pools[algorithm]


@st.composite
def tiny_table(draw: st.DrawFn, task: str) -> tuple[list[str], list[list[Any]]]:
    """12-18 rows: a numeric column that always varies, optional numeric/categorical/text columns, a label
    with two balanced classes or distinct numbers."""
    n = draw(st.integers(12, 18))
    optional = draw(st.lists(st.sampled_from(["x2", "color", "note"]), unique=True, max_size=3))
    columns = ["x1", *optional, "label"]
    scale = draw(st.sampled_from([0.5, 1, 10]))
    gaps = set(draw(st.lists(st.integers(0, n - 1), max_size=2)))
    rows = []
    for i in range(n):
        cells: dict[str, Any] = {"x1": i * scale + draw(st.floats(-0.4, 0.4))}
        if "x2" in optional:
            cells["x2"] = None if i in gaps else draw(st.integers(-5, 5) | st.sampled_from(["3.5", 2.25]))
        if "color" in optional:
            cells["color"] = None if i in gaps else COLORS[(i + draw(st.integers(0, 2))) % 3]
        if "note" in optional:
            cells["note"] = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
        if task == CLASSIFICATION:
            cells["label"] = ("yes", "no")[i % 2] if draw(st.integers(0, 3)) else (1, 0)[i % 2]
        else:
            cells["label"] = i * 2.5 + 0.5 + draw(st.floats(0, 0.4))
        rows.append([cells[c] for c in columns])
    if task == CLASSIFICATION:
        labels = [row[-1] for row in rows]
        if len({type(v) for v in labels}) > 1:  # mixed "yes"/1 labels: make them one kind
            for row in rows:
                row[-1] = str(row[-1])
    return columns, rows


@dataclass
class TrainDraft:
    """A training request being built: its body and the verdicts of what has been broken so far."""

    body: dict[Any, Any]
    columns: list[str]  # the data's columns (bundled: its feature names and "target")
    # field → (the step that refuses it, its code); a later mutation of a field replaces the earlier verdict
    broken: dict[str, tuple[int, str] | None] = field(default_factory=dict)
    unsure: bool = False

    def broke(self, name: str, rank: int, code: str) -> None:
        self.broken[name] = (rank, code)

    def replaced(self, *names: str) -> None:
        """These fields were overwritten with valid values: their earlier mistakes are gone."""
        for name in names:
            self.broken[name] = None

    def codes(self, rank: int) -> set[str]:
        return {v[1] for v in self.broken.values() if v is not None and v[0] == rank}


@st.composite
def valid_training(draw: st.DrawFn) -> TrainDraft:
    """A request that trains in well under a second."""
    source = draw(st.sampled_from(["columns", "columns", "records", "records", "s3", "bundled"]))
    task = draw(st.sampled_from([CLASSIFICATION, REGRESSION]))
    body: dict[str, Any] = {}
    if source == "bundled":
        dataset = draw(st.sampled_from(["iris", "wine"] if task == CLASSIFICATION else ["diabetes"]))
        body["data"] = {"dataset": dataset}
        columns = ["f1", "target"]
        if draw(st.booleans()):
            body["target"] = "target"
    elif source == "s3":
        task = CLASSIFICATION
        body["data"] = {"s3_key": draw(st.sampled_from(GOOD_DATASETS))}
        body["target"] = "label"
        columns = ["x1", "x2", "label"]
    else:
        columns, rows = draw(tiny_table(task))
        if source == "columns":
            body["data"] = {"columns": columns, "rows": rows}
        else:
            body["data"] = {"records": [dict(zip(columns, row, strict=True)) for row in rows]}
        body["target"] = "label"
        features = [c for c in columns if c != "label"]
        if draw(st.integers(0, 2)) == 0:
            body["features"] = draw(st.permutations(features))
        if "note" in columns and draw(st.booleans()):
            body["text_features"] = ["note"]
    algorithm = draw(st.sampled_from(TASK_ALGORITHMS[task]))
    body["algorithm"] = algorithm
    if draw(st.booleans()):
        body["task"] = task
    pool = cheap_hyperparameters(algorithm, task)
    chosen = draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=3)) if pool else []
    if chosen or draw(st.booleans()):
        body["hyperparameters"] = {name: draw(pool[name]) for name in chosen}
    for name, values in (
        ("test_size", st.sampled_from([0.05, 0.2, 0.5, 0.25])),
        ("random_state", st.sampled_from([0, 1, 2**32 - 1])),
        ("cv", st.sampled_from([2, 3])),
        ("description", st.text(max_size=40)),
    ):
        if draw(st.integers(0, 3)) == 0:
            body[name] = draw(values)
    order = draw(st.permutations(list(body)))
    return TrainDraft({k: body[k] for k in order}, columns)


# Invalid for every hyperparameter of every algorithm; the ones most likely to break a range check come first
# (Hypothesis draws the start of a list most often).
UNIVERSALLY_BAD_HYPERPARAMETER = [
    Raw("1" + "0" * 400),
    Raw("-" + "9" * 400),
    Raw("1e999"),
    1e300,
    10**12,
    -(10**9),
    "__bogus__",
    {"x": 1},
    [[1]],
]


TRAIN_MUTATIONS = [
    "algorithm",
    "algorithm_missing",
    "task",
    "task_conflict",
    "hyperparameters_type",
    "reserved",
    "unknown_hyperparameter",
    "bad_hyperparameter",
    "data",
    "dataset",
    "s3_missing",
    "s3_bad_key",
    "s3_bad_file",
    "target",
    "target_unknown",
    "features",
    "features_unknown",
    "text_features",
    "test_size",
    "random_state",
    "cv",
    "cv_rows",
    "description",
    "unknown_field",
    "columns",
    "rows",
    "cells",
    "records",
    "too_few_rows",
    "one_class",
    "too_many_columns",
    # hyperparameter values meet the most code (range checks per type), so they get a larger share
    "bad_hyperparameter",
    "bad_hyperparameter",
]


def _hyperparameters(body: dict[Any, Any]) -> dict[Any, Any]:
    """A copy of the request's hyperparameters to add to (a non-object, itself a mutation, is replaced)."""
    current = body.get("hyperparameters")
    return dict(current) if isinstance(current, dict) else {}


def _mutate(draw: st.DrawFn, d: TrainDraft, what: str | None = None) -> None:
    """Break one thing in the request (`what`, else any), recording the code the docs give for it."""
    body = d.body
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    inline = isinstance(data, dict) and ("columns" in data or "records" in data)
    what = what or draw(st.sampled_from(TRAIN_MUTATIONS))
    if what == "algorithm":
        body["algorithm"] = draw(
            st.sampled_from(["magic", "", "RIDGE", " ridge", "xgboost", 1, None, [], {"a": 1}, True])
        )
        d.broke("algorithm", FIELDS, "invalid_algorithm")
    elif what == "algorithm_missing":
        body.pop("algorithm", None)
        d.broke("algorithm", FIELDS, "invalid_algorithm")
    elif what == "task":
        body["task"] = draw(st.sampled_from(["clustering", "", "Classification", 1, [], True]))
        d.broke("task", FIELDS, "invalid_task")
    elif what == "task_conflict":
        body["algorithm"] = draw(st.sampled_from(["linear_regression", "lasso"]))
        body["task"] = CLASSIFICATION
        body.pop("hyperparameters", None)
        d.replaced("algorithm", "hyperparameters")
        d.broke("task", DATA, "invalid_task")
    elif what == "hyperparameters_type":
        body["hyperparameters"] = draw(st.sampled_from([[], "n_estimators=5", 1, True, [["n_estimators", 5]]]))
        d.broke("hyperparameters", FIELDS, "invalid_hyperparameter")
    elif what == "reserved":
        hyper = body["hyperparameters"] = _hyperparameters(body)
        name = draw(st.sampled_from(["n_jobs", "random_state", "verbose", "warm_start", "probability"]))
        hyper[name] = draw(json_scalars)
        d.broke("hyperparameters", DATA, "invalid_hyperparameter")
    elif what == "unknown_hyperparameter":
        hyper = body["hyperparameters"] = _hyperparameters(body)
        name = draw(st.sampled_from(["foo", "", "N_ESTIMATORS", "n_estimators ", "__class__", "C" * 300]))
        hyper[name] = draw(json_scalars)
        d.broke("hyperparameters", DATA, "invalid_hyperparameter")
    elif what == "bad_hyperparameter" and isinstance(body.get("algorithm"), str) and body["algorithm"] in ALGORITHMS:
        names = sorted(ALGORITHMS[body["algorithm"]].params)
        hyper = body["hyperparameters"] = _hyperparameters(body)
        hyper[draw(st.sampled_from(names))] = draw(st.sampled_from(UNIVERSALLY_BAD_HYPERPARAMETER))
        d.broke("hyperparameters", DATA, "invalid_hyperparameter")
    elif what == "data":
        body["data"] = draw(
            st.sampled_from(
                [
                    None,
                    [],
                    "iris",
                    1,
                    {},
                    {"dataset": "iris", "records": []},
                    {"columns": ["a", "y"]},
                    {"rows": [[1, 2]]},
                    {"columns": "a,y", "rows": []},
                    {"columns": ["a", "y"], "rows": "1,2"},
                    {"columns": ["a", "y"], "rows": [[1, 2]], "format": "csv"},
                    {"records": [1, 2]},
                    {"records": {"a": 1}},
                    {"s3_key": 1},
                    {"s3_key": None},
                    {"dataset": None},
                    {"url": "http://x/y.csv"},
                ]
            )
        )
        d.broke("data", FIELDS, "invalid_data")
    elif what == "dataset":
        body["data"] = {"dataset": draw(st.sampled_from(["mnist", "IRIS", "", "iris ", 1, True, "../iris"]))}
        d.broke("data", FIELDS, "invalid_data")
    elif what == "s3_missing":
        body["data"] = {"s3_key": draw(st.sampled_from(MISSING_DATASET_KEYS))}
        body["target"] = "label"
        d.replaced("target")
        d.broke("data", DATA, "dataset_not_found")
    elif what == "s3_bad_key":
        body["data"] = {"s3_key": draw(st.sampled_from(BAD_DATASET_KEYS))}
        d.broke("data", DATA, "invalid_data")
    elif what == "s3_bad_file":
        key = draw(st.sampled_from(sorted(BAD_DATASETS)))
        body["data"] = {"s3_key": key}
        body["target"] = "label"
        d.replaced("target")
        d.broke("data", DATA, BAD_DATASETS[key])
    elif what == "target":
        body["target"] = draw(st.sampled_from(["", "y" * 257, 1, [], True, {"a": 1}]))
        d.broke("target", FIELDS, "invalid_target")
    elif what == "target_unknown":
        body["target"] = draw(st.sampled_from(["nope", "LABEL", "label ", "sepal_length"]))
        d.broke("target", DATA, "invalid_target")
    elif what == "features":
        body["features"] = draw(st.sampled_from(["x1", ["x1", "x1"], [1], [""], ["x" * 257], [None], {"x1": 1}]))
        d.broke("features", FIELDS, "invalid_features")
    elif what == "features_unknown":
        target = body.get("target", "target")
        body["features"] = draw(st.sampled_from([["nope"], [], [target], ["x1", target]]))
        body.pop("text_features", None)
        d.replaced("text_features")
        d.broke("features", DATA, "invalid_features")
    elif what == "text_features":
        choice = draw(st.sampled_from([["nope"], "note", ["note", "note"], [1]]))
        body["text_features"] = choice
        if choice == ["nope"]:
            d.broke("text_features", DATA, "invalid_features")
        else:
            d.broke("text_features", FIELDS, "invalid_features")
    elif what == "test_size":
        body["test_size"] = draw(st.sampled_from([0, 0.01, 0.51, 1, -0.1, 2, "0.2", True, [], Raw("1e999"), None]))
        if body["test_size"] is None:
            d.replaced("test_size")
        else:
            d.broke("test_size", FIELDS, "invalid_test_size")
    elif what == "random_state":
        body["random_state"] = draw(st.sampled_from([-1, 2**32, 10**30, 1.5, 1.0, "1", True, Raw("1" + "0" * 400)]))
        d.broke("random_state", FIELDS, "invalid_random_state")
    elif what == "cv":
        body["cv"] = draw(st.sampled_from([0, 1, 21, -3, 2.0, "3", True, []]))
        d.broke("cv", FIELDS, "invalid_cv")
    elif what == "cv_rows" and inline:
        body["cv"] = 20  # more folds than training rows
        d.broke("cv", DATA, "invalid_cv")
    elif what == "description":
        body["description"] = draw(st.sampled_from(["x" * 1001, 1, [], True, {"a": "b"}]))
        d.broke("description", FIELDS, "invalid_description")
    elif what == "unknown_field":
        name = draw(st.sampled_from(["algoritm", "Algorithm", "", "model", "name", "version"]))
        body[name] = draw(json_scalars)
        d.broke(f"extra {name}", FIELDS, "invalid_request")
    elif what == "columns" and "columns" in data:
        columns = list(data["columns"])
        columns[0] = draw(st.sampled_from(["", " ", "x" * 257, columns[-1]]))
        body["data"] = {**data, "columns": columns}
        d.broke("data", DATA, "invalid_data")
    elif what == "rows" and "columns" in data:
        rows = [list(r) for r in data["rows"]]
        rows[draw(st.integers(0, len(rows) - 1))] = rows[0][:-1]
        body["data"] = {**data, "rows": rows}
        d.broke("data", DATA, "invalid_data")
    elif what == "cells" and inline and body.get("features") is None and body.get("text_features") is None:
        cell = draw(st.sampled_from([Raw("1e999"), Raw("-1e999"), [1, 2], {"a": 1}]))
        if "columns" in data:
            rows = [list(r) for r in data["rows"]]
            rows[draw(st.integers(0, len(rows) - 1))][0] = cell
            body["data"] = {**data, "rows": rows}
        else:
            records = [dict(r) for r in data["records"]]
            records[draw(st.integers(0, len(records) - 1))]["x1"] = cell
            body["data"] = {"records": records}
        d.broke("data", DATA, "invalid_value")
        d.unsure = isinstance(cell, (list, dict))  # a nested value makes a categorical column... or a 400
    elif what == "records" and "records" in data:
        records = [dict(r) for r in data["records"]]
        records[0] = draw(st.sampled_from([{"": 1}, {" ": 1}, {"x" * 257: 1}]))
        body["data"] = {"records": records}
        d.broke("data", DATA, "invalid_data")
    elif what == "too_few_rows" and inline:
        key = "rows" if "columns" in data else "records"
        body["data"] = {**data, key: data[key][:9]}
        d.broke("data", DATA, "invalid_data")
    elif (
        what == "one_class"
        and inline
        and body.get("task") != REGRESSION
        and body.get("algorithm") in TASK_ALGORITHMS[CLASSIFICATION]
    ):
        if "columns" in data:
            body["data"] = {**data, "rows": [[*r[:-1], "yes"] for r in data["rows"]]}
        else:
            body["data"] = {"records": [{**r, "label": "yes"} for r in data["records"]]}
        d.broke("target", DATA, "invalid_target")
    elif what == "too_many_columns":
        body["data"] = {"columns": WIDE_COLUMNS, "rows": [[0] * (MAX_TRAIN_COLUMNS + 1)]}
        d.broke("data", DATA, "payload_too_large")


WIDE_COLUMNS = [f"c{i}" for i in range(MAX_TRAIN_COLUMNS + 1)]


HYPERPARAMETER_MUTATIONS = [
    "bad_hyperparameter",
    "bad_hyperparameter",
    "bad_hyperparameter",
    "unknown_hyperparameter",
    "reserved",
    "hyperparameters_type",
    "task_conflict",
]


def _too_small_to_publish(body: dict[Any, Any]) -> set[str]:
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    refusals = set()
    if "dataset" not in data and body.get("task") != REGRESSION:
        refusals.add("class_too_rare")  # 12-18 inline rows or a 16-row file, before the holdout
    if body.get("text_features"):
        refusals.add("invalid_features")
    return refusals


@st.composite
def train_bodies(draw: st.DrawFn, focus: str | None = None) -> Body:
    """A cheap valid request, then zero to three mutations, each with its documented code (with `focus`
    "hyperparameters", one or two mutations of the hyperparameters, where most of the validation is)."""
    d = draw(valid_training())
    if focus == "hyperparameters":
        for _ in range(draw(st.integers(1, 2))):
            _mutate(draw, d, draw(st.sampled_from(HYPERPARAMETER_MUTATIONS)))
    for _ in range(0 if focus else draw(st.sampled_from([0, 1, 1, 1, 1, 1, 1, 2, 2, 3]))):
        _mutate(draw, d)
    if d.unsure:
        return Body(d.body, (unknown(DATA),))
    # A valid request trains, or is refused with training_failed when scikit-learn cannot fit that algorithm
    # to the data (chebyshev distances or the cholesky solver on the sparse columns of categories and text),
    # or for what these tiny tables are too small to publish (MIN_GROUP_SIZE, 5 by default: fewer than 5
    # training rows of a class, no word of a text feature in 5 training rows).
    data = d.codes(DATA) or {"training_failed", SUCCESS, *_too_small_to_publish(d.body)}
    if d.body.get("algorithm") == "knn" and "n_neighbors" not in (d.body.get("hyperparameters") or {}):
        # the default 5 neighbours can exceed the rows of a cross-validation fold of these tiny tables
        data = data | {"invalid_hyperparameter"}
    return Body(d.body, (part(FIELDS, *d.codes(FIELDS)), part(DATA, *data)))


# ---------------------------------------------------------------- datasets: POST /datasets, …/complete

DATASET_MAX_BYTES = 5 * 1024**4
printable_names = st.text(min_size=1, max_size=128).filter(str.isprintable)


@st.composite
def dataset_bodies(draw: st.DrawFn) -> Body:
    """A create request: each field valid or broken (every violation is invalid_request)."""
    value: dict[Any, Any] = {}
    broken = False
    choice = draw(st.sampled_from(["csv", "jsonl", "jsonl", "csv", "bad", "missing"]))
    if choice == "bad":
        value["format"], broken = draw(st.sampled_from(["CSV", "parquet", "", "csv.gz", 1, None, ["csv"]])), True
    elif choice == "missing":
        broken = True
    else:
        value["format"] = choice
    size = draw(st.sampled_from(["small", "small", "huge", "bad", "missing"]))
    if size == "small":
        value["bytes"] = draw(st.integers(1, 5 * 1024**3))
    elif size == "huge":  # a multipart upload
        value["bytes"] = draw(st.integers(5 * 1024**3 + 1, DATASET_MAX_BYTES))
    elif size == "bad":
        value["bytes"] = draw(st.sampled_from([0, -1, DATASET_MAX_BYTES + 1, "10", 1.5, True, None, 10**30]))
        broken = True
    else:
        broken = True
    if draw(st.booleans()):
        if draw(st.integers(0, 2)):
            value["gzip"] = draw(st.booleans())
        else:
            value["gzip"], broken = draw(st.sampled_from(["true", 1, None, "yes"])), True
    name = draw(st.sampled_from(["none", "good", "good", "bad"]))
    if name == "good":
        value["name"] = draw(printable_names | st.sampled_from(HOSTILE_NAMES).filter(str.isprintable))
    elif name == "bad":
        value["name"] = draw(st.sampled_from(["", "x" * 129, "a\nb", "\t", "a\x00b", "\u202e", 5, ["x"]]))
        broken = True
    if draw(st.integers(0, 5)) == 0:
        value[draw(st.sampled_from(["s3_key", "Format", "size", "dataset_id", ""]))] = draw(json_scalars)
        broken = True
    return Body(value, (part(FIELDS, "invalid_request") if broken else part(FIELDS),))


@st.composite
def complete_bodies(draw: st.DrawFn) -> Body:
    """The parts of a multipart upload (valid or not: the dataset never exists in the seeded world)."""
    good_part = st.fixed_dictionaries({"part_number": st.integers(1, 10_000), "etag": st.text(min_size=1, max_size=40)})
    if draw(st.integers(0, 2)):
        return Body({"parts": draw(st.lists(good_part, min_size=1, max_size=4))}, (part(FIELDS),))
    bad = draw(
        st.sampled_from(
            [
                {},
                {"parts": []},
                {"parts": [{"part_number": 0, "etag": "x"}]},
                {"parts": [{"part_number": 10_001, "etag": "x"}]},
                {"parts": [{"part_number": "1", "etag": "x"}]},
                {"parts": [{"part_number": 1, "etag": ""}]},
                {"parts": [{"part_number": 1}]},
                {"parts": [{"part_number": 1, "etag": "x", "size": 3}]},
                {"parts": "all"},
                {"parts": [{"part_number": 1, "etag": "x"}], "upload_id": "u"},
            ]
        )
    )
    return Body(bad, (part(FIELDS, "invalid_request"),))


# ---------------------------------------------------------------- per-route composition

ROUTE_BODIES: dict[str, Callable[[], SearchStrategy[Body]]] = {
    "POST /models/{model}/versions": train_bodies,
    "PUT /models/{model}/stages/{stage}": deploy_bodies,
    "POST /models/{model}/predict": predict_bodies,
    "POST /models/{model}/explain": explain_bodies,
    "POST /v2/models/{model}/infer": infer_bodies,
    "POST /v2/models/{model}/versions/{version}/infer": infer_bodies,
    "POST /datasets": dataset_bodies,
    "POST /datasets/{dataset_id}/complete": complete_bodies,
}


# Routes choosing a version by ?stage= or ?version= (the stage serving by default).
SELECTING = frozenset({"POST /models/{model}/predict", "POST /models/{model}/explain"})
QUERY_STRATEGIES: dict[str, Callable[[], SearchStrategy[Query]]] = {
    **dict.fromkeys(SELECTING, model_queries),
    "GET /models/{model}/versions/{version}/card": format_queries,
}


def _lookup(route: str, params: dict[str, Param], query: Query, body: Body) -> list[Part]:
    """What the registry answers in the seeded world, given valid names."""
    if "dataset_id" in params:  # the seeded world has no dataset
        return [part(LOOKUP, "dataset_not_found")]
    model, stage, version = params.get("model"), params.get("stage"), params.get("version")
    if model is None or model.kind != "known":
        gone = model is not None and model.kind == "other" and route != "POST /models/{model}/versions"
        return [part(LOOKUP, "model_not_found")] if gone else []
    if route == "DELETE /models/{model}":
        return [part(LOOKUP, "model_in_use")]  # production is deployed in the seeded world
    if route == "PUT /models/{model}/stages/{stage}":
        return [part(LOOKUP, "version_not_found")] if body.info.get("version") == "other" else [part(LOOKUP)]
    if route == "POST /models/{model}/stages/{stage}/rollback":
        assert stage is not None
        return [part(LOOKUP, "no_previous_version" if stage.kind == "known" else "stage_not_found")]
    if route == "DELETE /models/{model}/stages/{stage}":
        assert stage is not None
        return [part(LOOKUP)] if stage.kind == "known" else [part(LOOKUP, "stage_not_deployed", "stage_not_found")]
    if route in SELECTING:
        if query.version is not None and query.stage is None:
            version = query.version
        elif query.stage is not None and query.version is None and query.stage.kind != "known":
            return [part(LOOKUP, "stage_not_deployed", "stage_not_found")]
    if version is not None:
        if version.kind == "other":
            return [part(LOOKUP, "version_not_found")]
        if route == "DELETE /models/{model}/versions/{version}" and version.text == IN_USE_VERSION:
            return [part(LOOKUP, "version_in_use")]
    return [part(LOOKUP)]


# Routes whose successes are worth a facet of their own (`known`): their answers carry what is checked most
# (explanations that must add up, pages that must not reflect their input).
KNOWN_BODIES: dict[str, Callable[[], SearchStrategy[Body]] | None] = {
    "POST /models/{model}/explain": lambda: explain_bodies(clean=True),
    "GET /models/{model}/versions/{version}/card": None,
}
KNOWN_PARAMS: dict[str, SearchStrategy[Param]] = {
    "model": st.just(Param(MODEL, "known")),
    "stage": st.just(Param(DEPLOYED_STAGE, "known")),
    "version": st.sampled_from(READY_VERSIONS).map(lambda v: Param(v, "known")),
}


def facets(route: str) -> list[str]:
    """The kinds of example a route gets, each with a budget of its own so that a fixed (derandomized) sample
    cannot leave one out: `mixed` varies everything; `keys` always sends an Idempotency-Key, often with a
    body and a retry; `content` sends bodies aimed at the content rules; `hyperparameters` breaks a training
    request's hyperparameters; `known` names the seeded model and versions, with bodies free of mistakes."""
    found = ["mixed"]
    if route in MUTATING:
        found.append("keys")
    if route in ROUTE_BODIES:
        found.append("content")
    if route == "POST /models/{model}/versions":
        found.append("hyperparameters")
    if route in KNOWN_BODIES:
        found.append("known")
    return found


@st.composite
def cases(draw: st.DrawFn, route: str, facet: str = "mixed") -> Case:
    """One request to `route` ("METHOD /resource" as in template.yaml) and the answer the docs promise."""
    method, resource = route.split(" ", 1)
    names = re.findall(r"\{(\w+)\}", resource)
    if facet == "known":
        params = {name: draw(KNOWN_PARAMS[name]) for name in names}
    else:
        params = {name: draw(PARAM_STRATEGIES[name]()) for name in names}
    path = resource.format(**{name: value.text for name, value in params.items()})
    query = draw(QUERY_STRATEGIES.get(route, plain_queries)())
    mutating = route in MUTATING
    sent = draw(headers(mutating, force_key=facet == "keys"))
    has_body_model = route in ROUTE_BODIES
    known_body = KNOWN_BODIES.get(route) if facet == "known" else None
    header_values = dict(sent.values)
    if facet == "content":
        body = Body(draw(hostile_payloads()), (unknown(FIELDS),), rendered=True)
    elif facet == "hyperparameters":
        body = draw(train_bodies("hyperparameters"))
    elif known_body is not None:
        body = draw(known_body())
    elif has_body_model:
        if route.endswith("/infer") and draw(st.integers(0, 15)) == 0:
            body = draw(binary_tensor_payloads())
            header_values = {k: v for k, v in header_values.items() if k.lower() != "content-type"}
            header_values["Inference-Header-Content-Length"] = [body.info["binary_header"]]
            header_values["Content-Type"] = ["application/octet-stream"]
        else:
            body = draw(generic_bodies(ROUTE_BODIES[route]))
    elif draw(st.integers(0, 1 if facet == "keys" else 2 if mutating else 5)) == 0:  # a body on a route without
        body = draw(generic_bodies(None))
    else:
        body = Body(MISSING_BODY)
    payload = draw(render(body))
    content, value = parse_body(payload)
    parts: list[Part] = [path_part(params), *query.parts]
    if has_body_model:
        parts.append(Part(CONTENT, content))
        if content == VALID:
            if value is MISSING_BODY or not isinstance(value, dict):
                parts.append(part(FIELDS, "invalid_request"))  # "request body is required" / "must be a JSON object"
            else:
                parts.extend(body.parts)
    elif mutating and sent.key_valid and content != VALID:
        parts.append(unknown(LATE_CONTENT))  # the idempotency middleware reads the body the route ignores
    if mutating and sent.key is not None and not sent.key_valid:
        parts.append(part(KEY, "invalid_idempotency_key"))
    parts.extend(_lookup(route, params, query, body))
    if "output" in body.info and any(p.rank == DATA for p in parts):  # explain: the version's outputs
        parts = _explained_output(parts, query, body.info["output"])
    request = Request(method, path, query.values, header_values, payload)
    then: Request | None = None
    same = True
    if mutating and sent.key_valid and draw(st.integers(0, 1 if facet == "keys" else 2)) == 0:
        same = draw(st.booleans())
        then = request if same else Request(method, path, {**query.values, "fuzz-retry": ["2"]}, header_values, payload)
    return Case(route, request, expected(parts), then, same)


UNROUTED_SEGMENTS = ["models", "v2", "versions", "stages", "iris", "1", "", "..", "predict", "infer", "ready", "%2F"]


@st.composite
def unrouted_requests(draw: st.DrawFn, resources: list[str]) -> Request:
    """Any method on any path: the template's resources with any text (slashes and nothing included) for their
    parameters, near misses (trailing slashes, empty or extra segments, other casing) and nonsense."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    shape = draw(st.integers(0, 3))
    if shape == 0:
        resource = draw(st.sampled_from(resources))
        text = st.sampled_from(["", "a/b", "iris", "1", "..", " "]) | st.text(max_size=8)
        path = re.sub(r"\{\w+\}", lambda _: draw(text), resource) + draw(st.sampled_from(["", "/", "/x", "//"]))
    elif shape == 1:
        path = draw(st.sampled_from(["/models/", "/Models", "/v2/", "/V2", "/models//versions", "/docs/", "//models"]))
    else:
        segments = draw(st.lists(st.sampled_from(UNROUTED_SEGMENTS) | st.text(max_size=6), max_size=6))
        path = "/" + "/".join(segments)
    body = draw(st.none() | hostile_payloads() | json_values.map(to_json))
    return Request(method, path, {}, {"Content-Type": ["application/json"]}, body)


# ---------------------------------------------------------------- found by this fuzzer

_ROW = [5.1, 3.5, 1.4, 0.2]
_KEY = {"Idempotency-Key": ["fuzz-regression-1"]}
_SINGULAR_RIDGE = {
    "algorithm": "ridge",
    "target": "y",
    "hyperparameters": {"solver": "cholesky", "fit_intercept": False, "alpha": 0.0},
    "data": {
        "columns": ["color", "word", "y"],
        "rows": [[("red", "green", "blue")[i % 3], "abcde"[i % 5], i * 2.5] for i in range(12)],
    },
}


def _regression(
    route: str, method: str, path: str, body: str | None, expect: set[str], headers: dict[str, list[str]] | None = None
) -> Case:
    return Case(route, Request(method, path, {}, dict(headers or {}), body), frozenset(expect))


# Requests the fuzzer once found answered wrongly, replayed before the generated ones on every run: an example
# database kept in the repository, so `make test` fails on them until they are fixed and guards the fixes.
REGRESSIONS: list[Case] = [
    # names and versions outside Powertools' route pattern: 404 route_not_found instead of 400
    _regression("GET /models/{model}", "GET", '/models/a"b', None, {"invalid_name"}),
    _regression("GET /v2/models/{model}", "GET", "/v2/models/a?b", None, {"invalid_name"}),
    _regression("GET /models/{model}/versions/{version}", "GET", "/models/iris/versions/1#", None, {"invalid_version"}),
    # a JSON array body validated as its first element
    _regression(
        "PUT /models/{model}/stages/{stage}",
        "PUT",
        "/models/iris/stages/production",
        '[{"version": 2}]',
        {"invalid_request"},
    ),
    _regression(
        "POST /models/{model}/predict",
        "POST",
        "/models/iris/predict",
        json.dumps([{"instances": [_ROW]}]),
        {"invalid_request"},
    ),
    _regression(
        "POST /models/{model}/versions",
        "POST",
        "/models/iris/versions",
        '[{"algorithm": "ridge", "data": {"dataset": "iris"}}]',
        {"invalid_request"},
    ),
    # a finite number that standard scaling turns into infinity
    _regression(
        "POST /models/{model}/predict",
        "POST",
        "/models/iris/predict",
        '{"instances": [[0, 0, 0, 1.3728465303704065e+308]]}',
        {SUCCESS, "invalid_value"},
    ),
    _regression(
        "POST /v2/models/{model}/infer",
        "POST",
        "/v2/models/iris/infer",
        '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0, 0, 0, 1.3728465303704065e+308]}]}',
        {SUCCESS, "invalid_value"},
    ),
    # a float hyperparameter given as an integer no float holds
    _regression(
        "POST /models/{model}/versions",
        "POST",
        "/models/iris/versions",
        '{"algorithm": "svm", "data": {"dataset": "iris"}, "hyperparameters": {"C": 1' + "0" * 400 + "}}",
        {"invalid_hyperparameter"},
    ),
    # ridge's cholesky solver on a singular sparse system falls back to svd, which raises TypeError
    _regression(
        "POST /models/{model}/versions",
        "POST",
        "/models/iris/versions",
        json.dumps(_SINGULAR_RIDGE),
        {SUCCESS, "training_failed"},
    ),
    # the idempotency middleware parses the body of routes that take none
    _regression(
        "DELETE /models/{model}/stages/{stage}",
        "DELETE",
        "/models/iris/stages/production",
        "{",
        {"invalid_json", SUCCESS},
        _KEY,
    ),
    _regression(
        "DELETE /models/{model}/versions/{version}",
        "DELETE",
        "/models/iris/versions/2",
        "{",
        {"invalid_json", SUCCESS},
        _KEY,
    ),
    _regression(
        "POST /models/{model}/stages/{stage}/rollback",
        "POST",
        "/models/iris/stages/production/rollback",
        "{",
        {"invalid_json", "no_previous_version"},
        _KEY,
    ),
    # explaining a probability by sampling evaluates the model on rows mixing a huge value with the background:
    # scikit-learn's ValueError (infinity after scaling) answered 500, where predict answers invalid_value
    _regression(
        "POST /models/{model}/explain",
        "POST",
        "/models/iris/explain",
        '{"instances": [[1, 3, 3, 1.7976931348623157e+308]]}',
        {"invalid_value", SUCCESS},
    ),
    # outputs that are not numbers (infinities, sent as null) explained with a 200, where predict answers
    # invalid_value: for probabilities by sampling, and for the exact decision function
    _regression(
        "POST /models/{model}/explain",
        "POST",
        "/models/iris/explain",
        '{"instances": [[5.1, 3.5, 1e308, 1e308]]}',
        {"invalid_value", SUCCESS},
    ),
    _regression(
        "POST /models/{model}/explain",
        "POST",
        "/models/iris/explain",
        '{"instances": [[5.1, 3.5, 1.4, -1e308]], "output": "decision"}',
        {"invalid_value", SUCCESS},
    ),
    # "a tensor whose values do not fit its datatype is refused"
    _regression(
        "POST /v2/models/{model}/infer",
        "POST",
        "/v2/models/iris/infer",
        '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "UINT8", "data": [256, 0, 0, 0]}]}',
        {"invalid_request"},
    ),
]
