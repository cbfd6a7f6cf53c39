"""Shared plumbing for the demo tools: one-line errors and outputs that appear only when complete.

A Batch job is judged by its exit code and by the files it leaves behind, so a tool must
either finish and write its result, or fail with a readable reason and leave no result.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import sys
import secrets
import zlib
from pathlib import Path
from typing import Any, NoReturn

import dnaio

try:  # xopen decompresses gzip with ISA-L when it is installed, and ISA-L has its own error type.
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - ISA-L is absent on some platforms
    _IsalError = zlib.error

# What a truncated or corrupt compressed input raises: it comes from the decompressor, not
# from dnaio's parser. (bz2 reports bad data as OSError.)
DECOMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, _IsalError, lzma.LZMAError, OSError)

# Long enough to show the offending text, short enough to stay one readable line in a job log.
_MAX_ERROR_CHARS = 300


class ToolError(Exception):
    """A problem with the tool's inputs, reported to the user as one line and exit status 1."""


def fail(tool: str, message: str) -> NoReturn:
    one_line = " ".join(message.split())
    if len(one_line) > _MAX_ERROR_CHARS:
        one_line = one_line[: _MAX_ERROR_CHARS - 3] + "..."
    print(f"{tool}: error: {one_line}", file=sys.stderr)
    sys.exit(1)


def describe_format_error(kind: str, path: Path, error: dnaio.FileFormatError) -> str:
    # dnaio counts lines from 0 internally; people count from 1.
    where = f" at line {error.line + 1}" if error.line is not None else ""
    return f"{kind} '{path}' is not valid{where}: {error.message}"


def check_readable_file(kind: str, path: Path, allow_empty: bool) -> None:
    if not path.exists():
        raise ToolError(f"{kind} '{path}' does not exist")
    if not path.is_file():
        raise ToolError(f"{kind} '{path}' is not a regular file")
    if not os.access(path, os.R_OK):
        raise ToolError(f"{kind} '{path}' is not readable")
    if not allow_empty and path.stat().st_size == 0:
        raise ToolError(f"{kind} '{path}' is empty")


def prepare_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ToolError(f"output directory '{path}' could not be created: {error.strerror}") from error


def temp_path_beside(final_path: Path) -> Path:
    """An unused hidden name in the same directory, so the final rename stays on one filesystem
    (atomic). The file is not created here: mkstemp would make it private (0600), and the
    outputs should get the usual permissions."""
    return final_path.with_name(f".{final_path.name}.{secrets.token_hex(6)}.tmp")


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    temp = temp_path_beside(path)
    try:
        temp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
