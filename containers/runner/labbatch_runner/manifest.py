"""What happened to one attempt: collected as it runs, uploaded as `<prefix>manifest.json`."""

from __future__ import annotations

import json
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labbatch_contract import manifest as manifests
from labbatch_contract import outcome
from labbatch_contract.outcome import MANIFEST_NAME, RUNNER_LOG, TOOL_LOG

from . import __version__
from .errors import RunnerError
from .run import ToolResult
from .runlog import utc_now
from .s3uri import S3Uri
from .staging import StagedInput, StagedOutput

MANIFEST_VERSION = 1


@dataclass
class Failure:
    phase: outcome.Phase
    code: str
    message: str
    exit_code: int


@dataclass
class Report:
    transfer_engine: str
    job_id: str | None = None
    array_index: int | None = None
    sample: str | None = None
    attempt: int | None = None
    output_prefix: S3Uri | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None
    tool: ToolResult | None = None
    inputs: list[StagedInput] = field(default_factory=list)
    outputs: list[StagedOutput] = field(default_factory=list)
    failure: Failure | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_scratch_bytes: int | None = None
    current_phase: str = outcome.CONTRACT
    # TES mode only: {"executors": [{start_time, end_time, exit_code, stdout}], "outputs": [{url, path, size_bytes}]}
    tes: dict[str, Any] | None = None
    started_at: str = field(default_factory=utc_now)
    _started: float = field(default_factory=time.monotonic)
    _phase_started: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.current_phase = name
        self._phase_started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self._elapsed_in_phase()
            self._phase_started = None

    def _elapsed_in_phase(self) -> float:
        assert self._phase_started is not None
        return round(self.timings.get(self.current_phase, 0.0) + time.monotonic() - self._phase_started, 3)

    def fail(self, phase: str, code: str, message: str, exit_code: int) -> None:
        self.failure = Failure(phase, code, message, exit_code)

    def fail_with(self, error: RunnerError) -> None:
        self.fail(self.current_phase, error.name, error.message, int(error.code))

    @property
    def exit_code(self) -> int:
        return self.failure.exit_code if self.failure else 0

    def key(self, relative: str) -> S3Uri:
        assert self.output_prefix is not None
        return self.output_prefix.join(relative)

    def to_manifest(self, log_names: list[str]) -> dict[str, Any]:
        timings = dict(self.timings)
        if self._phase_started is not None:  # the manifest is written from inside stage_out
            timings[self.current_phase] = self._elapsed_in_phase()
        timings["total"] = round(time.monotonic() - self._started, 3)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "runner_version": __version__,
            "job_id": self.job_id,
            "array_index": self.array_index,
            "sample": self.sample,
            manifests.ATTEMPT: self.attempt,
            manifests.STATUS: manifests.FAILED if self.failure else manifests.SUCCEEDED,
            manifests.FAILED_PHASE: self.failure.phase if self.failure else None,
            manifests.ERROR: {manifests.ERROR_CODE: self.failure.code, manifests.ERROR_MESSAGE: self.failure.message}
            if self.failure else None,
            manifests.EXIT_CODE: self.exit_code,
            manifests.OUTPUT_PREFIX: str(self.output_prefix) if self.output_prefix else None,
            "parameters": self.parameters,
            manifests.TOOL: {
                "argv": self.argv,
                "exit_code": self.tool.exit_code if self.tool else None,
                "signal": self.tool.signal if self.tool else None,
                manifests.OOM_KILLED: self.tool.oom_killed if self.tool else None,
                manifests.CPU_SECONDS: self.tool.cpu_seconds if self.tool else None,
            },
            manifests.INPUTS: [
                {
                    "uri": str(item.uri),
                    manifests.SIZE: item.size,
                    "used_as": list(item.used_as),
                    # Reference data: "hit" when the instance's cache held it, "miss" when this attempt fetched it.
                    "cache": item.cache,
                    "checksum": (
                        {"algorithm": item.checksum.algorithm, "value": item.checksum.value, "verified": True}
                        if item.checksum
                        else None
                    ),
                }
                for item in self.inputs
            ],
            manifests.OUTPUTS: [
                {manifests.PATH: item.path, manifests.KEY: item.key, manifests.SIZE: item.size,
                 manifests.SHA256: item.sha256}
                for item in self.outputs
            ],
            "logs": {Path(name).stem: str(self.key(name)) for name in log_names},
            "timings_seconds": timings,
            "started_at": self.started_at,
            "finished_at": utc_now(),
            "peak_scratch_bytes": self.peak_scratch_bytes,
            manifests.PEAK_MEMORY_BYTES: {
                manifests.TOOL: self.tool.peak_memory_bytes if self.tool else None,
                "runner": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            },
            "transfer_engine": self.transfer_engine,
        }
        if self.tes is not None:
            manifest[manifests.TES] = self.tes
        return manifest


def publish(s3: Any, report: Report, *, tool_log: Path | None, runner_log: str, manifest_first: bool) -> None:
    """Logs and manifest under the job's prefix. The manifest normally goes last, so that its
    presence means everything it lists is there; after SIGTERM it goes first, because the
    SIGKILL 30 s later may not wait for a long tool log."""
    log_names = [RUNNER_LOG] + ([TOOL_LOG] if tool_log is not None and tool_log.exists() else [])
    manifest = json.dumps(report.to_manifest(log_names), indent=2).encode()

    def put_manifest() -> None:
        target = report.key(MANIFEST_NAME)
        s3.put_object(Bucket=target.bucket, Key=target.key, Body=manifest, ContentType="application/json")

    def put_logs() -> None:
        target = report.key(RUNNER_LOG)
        s3.put_object(Bucket=target.bucket, Key=target.key, Body=runner_log.encode(), ContentType="text/plain; charset=utf-8")
        if TOOL_LOG in log_names:
            target = report.key(TOOL_LOG)
            s3.upload_file(str(tool_log), target.bucket, target.key, ExtraArgs={"ContentType": "text/plain; charset=utf-8"})

    for step in (put_manifest, put_logs) if manifest_first else (put_logs, put_manifest):
        step()
