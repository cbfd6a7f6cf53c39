"""`manifest.json`: what one attempt did, as the runner writes it last under the job's output prefix
(containers/runner/README.md documents every field) and as the other runtimes read it: the status
updater (failure class, a child's reason, report figures), `labbatch results` (the outputs to
verify), `labbatch doctor` (its canary) and the TES views (executor logs, the runner's error).

The field names that cross that boundary are spelled here once; the readers use the accessors,
which take a manifest as found in S3 (any JSON) and never raise on a missing or mistyped field:
a manifest is evidence, and evidence may be partial.
"""

from __future__ import annotations

from typing import Any, Mapping

# Top-level fields other runtimes read.
ATTEMPT = "attempt"
STATUS = "status"
EXIT_CODE = "exit_code"
FAILED_PHASE = "failed_phase"
ERROR = "error"
OUTPUT_PREFIX = "output_prefix"
INPUTS = "inputs"
OUTPUTS = "outputs"
TOOL = "tool"
PEAK_MEMORY_BYTES = "peak_memory_bytes"
INSTANCE_TYPE = "instance_type"
TES = "tes"
# Inside `tool`.
OOM_KILLED = "oom_killed"
CPU_SECONDS = "cpu_seconds"
# Inside `error`.
ERROR_CODE = "code"
ERROR_MESSAGE = "message"
# Inside each of `inputs` and `outputs`.
SIZE = "size"
SHA256 = "sha256"
PATH = "path"
KEY = "key"

# The values of `status`.
SUCCEEDED = "succeeded"
FAILED = "failed"


def _part(manifest: Mapping[str, Any] | None, field: str) -> Mapping[str, Any]:
    value = manifest.get(field) if isinstance(manifest, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def is_of(manifest: Mapping[str, Any] | None, *, attempts: int, exit_code: int | None) -> bool:
    """True when a manifest found under a job's prefix is its attempt number `attempts` (every
    attempt writes to the same prefix: an earlier attempt's says nothing about a later one), and,
    when `exit_code` is known, the attempt that ended with it."""
    if not isinstance(manifest, Mapping):
        return False
    if manifest.get(ATTEMPT) not in (None, attempts):
        return False
    return exit_code is None or manifest.get(EXIT_CODE) == exit_code


def status(manifest: Mapping[str, Any] | None) -> str | None:
    value = manifest.get(STATUS) if isinstance(manifest, Mapping) else None
    return value if isinstance(value, str) else None


def succeeded(manifest: Mapping[str, Any] | None) -> bool:
    return status(manifest) == SUCCEEDED


def failed_phase(manifest: Mapping[str, Any] | None) -> str | None:
    value = manifest.get(FAILED_PHASE) if isinstance(manifest, Mapping) else None
    return value if isinstance(value, str) else None


def error_code(manifest: Mapping[str, Any] | None) -> str | None:
    value = _part(manifest, ERROR).get(ERROR_CODE)
    return value if isinstance(value, str) else None


def error_message(manifest: Mapping[str, Any] | None) -> str | None:
    """The runner's own message for a failed attempt (it names the tool's last output line)."""
    value = _part(manifest, ERROR).get(ERROR_MESSAGE)
    return value if isinstance(value, str) and value else None


def oom_killed(manifest: Mapping[str, Any] | None) -> bool:
    """True only when the runner saw its tool killed for memory (its cgroup's OOM-kill count)."""
    return _part(manifest, TOOL).get(OOM_KILLED) is True


def tool_part(manifest: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _part(manifest, TOOL)


def tes_part(manifest: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A TES task's executors and outputs as the runner logged them; empty for a pipeline job."""
    return _part(manifest, TES)


def entries(manifest: Mapping[str, Any] | None, field: str) -> list[Mapping[str, Any]]:
    """The `inputs` or `outputs` list, keeping only its well-formed entries."""
    value = manifest.get(field) if isinstance(manifest, Mapping) else None
    return [entry for entry in value if isinstance(entry, Mapping)] if isinstance(value, list) else []
