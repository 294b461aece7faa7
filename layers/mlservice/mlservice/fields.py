"""Request models whose fields carry their error code: the one place request structure is validated.

Every request body is a pydantic model built on `Body` (unknown fields refused, no type coercion: `"cv": "3"`
is not 3), and each field says which documented error code its violations get (`coded(...)`). The same
conversion (`service_error`) turns pydantic's errors into a ServiceError for the HTTP routes and for direct
callers of the layer, so a request gets one answer whichever way it arrives. Path and query parameters have
fixed codes: names are `invalid_name`, versions `invalid_version`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlservice import keys
from mlservice.errors import ServiceError, bad_request
from mlservice.text import shown

CODE = "x-error-code"
RULE = "x-rule"
# Path and query parameters, by name.
PARAMETER_CODES = {"model": "invalid_name", "stage": "invalid_name", "version": "invalid_version"}
# Body fields (top level, by name) → code, and → the rule in words; filled in as Body subclasses are defined.
FIELD_CODES: dict[str, str] = {}
FIELD_RULES: dict[str, str] = {}
B = TypeVar("B", bound="Body")


def coded(code: str, default: Any = ..., *, rule: str | None = None, **kwargs: Any) -> Any:
    """A pydantic Field whose violations are reported with `code` and, when given, the rule in words ("an
    integer from 2 to 20"): both are also shown in the OpenAPI document."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[CODE] = code
    if rule:
        extra[RULE] = rule
    return Field(default, json_schema_extra=extra, **kwargs)


class Body(BaseModel):
    """A request body: unknown fields are refused and values are not coerced from other types."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if CODE in extra:
                FIELD_CODES.setdefault(name, str(extra[CODE]))
            if RULE in extra:
                FIELD_RULES.setdefault(name, str(extra[RULE]))


def _described(value: Any) -> str:
    if isinstance(value, dict):
        return "an object with keys " + (", ".join(repr(str(k))[:40] for k in list(value)[:5]) or "none")
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return shown(value)


def _message(error: dict) -> str:
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def _where(loc: list) -> str:
    """`data.records[1]` from ("data", "<records>", "records", 1): union tags (in angle brackets) left out."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith("<"):
            text += ("." if text else "") + str(part)
    return text


def service_error(errors: list[dict]) -> ServiceError:
    """The documented error for pydantic's validation errors (the first one decides; the others are counted)."""
    first = errors[0] if errors else {}
    raw_loc = list(first.get("loc", ()))
    loc = [str(part) for part in raw_loc]
    kind = first.get("type", "")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    section = loc[0] if loc else ""
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed JSON")
        return bad_request(f"request body is not valid JSON: {detail}", code="invalid_json")
    if section in ("path", "query") and len(loc) > 1:
        name = loc[1]
        code = PARAMETER_CODES.get(name, "invalid_request")
        if code == "invalid_name":
            return keys.name_error(first.get("input"), name)
        if code == "invalid_version":
            return keys.version_error(first.get("input"))
        return bad_request(f"{section} parameter {name!r}: {_message(first)}{more}")
    if section == "body" and len(loc) == 1:
        if kind == "missing":
            return bad_request("request body is required")
        return bad_request(f"request body must be a JSON object ({_message(first)}){more}")
    if section == "body":
        field = loc[1]
        where = _where(raw_loc[1:])
        code = FIELD_CODES.get(field, "invalid_request")
        rule = FIELD_RULES.get(field)
        if kind == "extra_forbidden":
            return bad_request(f"unknown field {where!r}{more}", code=code if len(loc) > 2 else "invalid_request")
        if kind == "missing" and len(loc) == 2:
            return bad_request(f"{field} is required" + (f": {rule}" if rule else "") + more, code=code)
        if code == "invalid_version":
            return keys.version_error(first.get("input"))
        got = f", got {_described(first['input'])}" if "input" in first and kind != "missing" else ""
        if rule and len(loc) == 2:
            return bad_request(f"{field} must be {rule}{got}{more}", code=code)
        return bad_request(f"{where}: {_message(first)}{got}{more}", code=code)
    return bad_request(f"{'.'.join(loc) or 'request'}: {_message(first)}{more}")


def parse(model: type[B], value: Any) -> B:
    """Validate a request outside HTTP (direct callers of the layer) with the same codes as the API."""
    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise bad_request("request body must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise service_error([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
