"""The one line every `labbatch` command (CLI, local mode, demo, cost) ends a failure with:
`labbatch: <code>: <message> (<details the message does not already say>)` on stderr."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Mapping


def print_error(code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
    text = one_line(message)
    print(f"labbatch: {code}: {text}{details_suffix(details or {}, text)}", file=sys.stderr)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def details_suffix(details: Mapping[str, Any], message: str = "", limit: int = 400) -> str:
    """The details the message does not already say (a value, or every item of a list, found
    in it as a whole word), so that an error never repeats itself in a trailing block."""
    def said(value: Any) -> bool:
        if isinstance(value, list | tuple):
            return bool(value) and all(said(v) for v in value)
        text = str(value)
        return bool(text) and re.search(rf"(?<![\w.-]){re.escape(text)}(?![\w-])", message, re.IGNORECASE) is not None

    parts = [f"{key}={value if isinstance(value, str | int | float) else json.dumps(value)}"
             for key, value in (details or {}).items() if not said(value)]
    if not parts:
        return ""
    text = one_line("; ".join(parts))
    return f" ({text if len(text) <= limit else text[:limit] + '…'})"
