"""The lifecycle every attempt shares, a pipeline job's (job.py) and a GA4GH TES task's (tes.py):
the tool's environment, what the attempt holds while it runs, and how it ends (`conclude`):
a manifest saying what happened (when the job's prefix is known), logs next to it, the
reference cache's locks released and no scratch directory left behind, whatever happened.
"""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from labbatch_contract import outcome, runner_env
from labbatch_contract.outcome import ExitCode

from .errors import RunnerError, Terminated
from .manifest import Report, publish
from .refcache import ReferenceCache
from .runlog import RunnerLog
from .s3client import make_s3_client
from .scratch import AttemptDir, PeakUsage
from .termination import TerminationGuard

# The runner's own contract; the tool sees the container's environment (its image's, Batch's
# and the job role's credentials endpoint) without them.
RUNNER_VARIABLE_PREFIX = runner_env.PREFIX


def tool_environment(environ: Mapping[str, str], *, tmp: Any) -> dict[str, str]:
    env = {name: value for name, value in environ.items() if not name.startswith(RUNNER_VARIABLE_PREFIX)}
    # Temporary files land on scratch, and are removed with the attempt, not in the image's /tmp.
    env["TMPDIR"] = str(tmp)
    return env


@dataclass
class AttemptState:
    """What an attempt's ending needs of what its phases got to: S3, scratch, peak usage."""

    s3: Any = None
    dir: AttemptDir | None = None
    usage: PeakUsage | None = None
    cache: ReferenceCache | None = None  # holds the reference data the attempt links to


def conclude(report: Report, phases: Callable[[AttemptState], None], *, log: RunnerLog,
             guard: TerminationGuard) -> int:
    """Runs an attempt's phases (a pipeline job's or a TES task's). Whatever happens, the attempt
    ends here: a manifest saying what happened (when the job's prefix is known), logs next to
    it, and no scratch directory left behind."""
    state = AttemptState()
    try:
        try:
            phases(state)
        except Terminated as exc:
            name = signal.Signals(exc.signum).name
            report.fail(outcome.TERMINATED, "terminated", f"received {name} during {report.current_phase}", 128 + exc.signum)
        except RunnerError as exc:
            report.fail_with(exc)
        except Exception as exc:  # a runner bug must still end with a manifest and a clean scratch
            log.info(traceback.format_exc().rstrip())
            report.fail_with(RunnerError(ExitCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"))
        guard.disarm()
        if report.failure is not None:
            if state.usage is not None:
                report.peak_scratch_bytes = state.usage.peak
            log.error(report.failure.message)
            publish_attempt(state.s3, report, state.dir, log, best_effort=True)
    finally:
        guard.disarm()
        if state.dir is not None:
            state.dir.remove()
        if state.cache is not None:
            state.cache.release_all()
    return report.exit_code


def publish_attempt(s3: Any, report: Report, attempt_dir: AttemptDir | None, log: RunnerLog, *, best_effort: bool) -> None:
    if report.output_prefix is None:
        log.error("no output prefix to write the manifest to: see the error above")
        return
    try:
        s3 = s3 or make_s3_client()
        tool_log = attempt_dir.logs / outcome.TOOL_LOG_NAME if attempt_dir is not None else None
        terminated = report.failure is not None and report.failure.phase == outcome.TERMINATED
        publish(s3, report, tool_log=tool_log, runner_log=log.text(), manifest_first=terminated)
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, (BotoCoreError, ClientError, OSError)):
            raise
        message = f"manifest and logs to {report.output_prefix}: upload failed: {exc}"
        if not best_effort:
            raise RunnerError(ExitCode.STAGE_OUT_FAILED, message) from None
        log.error(message)
