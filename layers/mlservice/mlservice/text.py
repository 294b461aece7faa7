"""Text from clients: quoting it in messages, and keeping it writable as UTF-8.

`shown` is how every error message quotes a client's value (a repr, cut short). JSON's `\\ud800`-style escapes can produce a Python string holding a lone UTF-16 surrogate, which no UTF-8
text can contain: it would fail later, wherever the value is written out (an S3 key, a log line, a CSV file).
Values that arrive as JSON are checked here once, where they are parsed.
"""

from __future__ import annotations

import re
from typing import Any

# A \\u escape of a surrogate (D800-DFFF) in the JSON text: only then can a parsed value hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def encodable(text: str) -> bool:
    """Whether the string can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed JSON value (keys included) cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_has_lone_surrogate(text: str, value: Any) -> bool:
    """has_lone_surrogate for a value parsed from `text`, walking it only when the text has such an escape."""
    return bool(_SURROGATE_ESCAPE.search(text)) and has_lone_surrogate(value)


def shown(value: Any, limit: int = 60) -> str:
    """A client's value as an error message quotes it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
