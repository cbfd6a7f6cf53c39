"""One attempt of one job, phase by phase: contract, stage_in, run, stage_out.

Whatever happens, the attempt ends here: a manifest saying what happened (when the job's
prefix is known), logs next to it, and no scratch directory left behind.
"""

from __future__ import annotations

from typing import Any, Mapping

from labbatch_contract import gpu_check, outcome
from labbatch_contract.outcome import ExitCode

from . import scratch
from .contract import SCRATCH_DIR, JobContract, load_sample_list, publishable_prefix, read_contract, select_sample
from .attempt import AttemptState, conclude, publish_attempt, tool_environment
from .errors import RunnerError
from .manifest import Report
from .placeholders import expand_argv
from .run import run_tool
from .runlog import RunnerLog
from .s3client import make_s3_client
from .refcache import ReferenceCache, cache_dir
from .scratch import AttemptDir, PeakUsage, sweep_stale_attempts
from .staging import plan_inputs, stage_in, stage_out
from .termination import TerminationGuard
from .transfer import DEFAULT_ENGINE, make_engine


def _prepare(argv: list[str], environ: Mapping[str, str], report: Report, log: RunnerLog) -> tuple[Any, JobContract]:
    contract = read_contract(argv, environ)
    report.job_id, report.attempt, report.array_index = contract.job_id, contract.attempt, contract.array_index
    s3 = make_s3_client()
    if contract.is_array_child:
        assert contract.samples_uri is not None
        contract = select_sample(contract, load_sample_list(s3, contract.samples_uri))
    report.sample, report.output_prefix, report.parameters = contract.sample, contract.output_prefix, contract.parameters
    if not contract.scratch_dir.is_dir():
        raise RunnerError(
            ExitCode.CONTRACT, f"{SCRATCH_DIR} {contract.scratch_dir}: not a directory (is the scratch volume mounted?)"
        )
    for stale in sweep_stale_attempts(contract.scratch_dir):
        log.info(f"removed a dead attempt's scratch directory {stale}")
    return s3, contract


def _expand(contract: JobContract, attempt_dir: AttemptDir, local_paths: dict[Any, str]) -> list[str]:
    parameters = {
        name: local_paths[contract.staged_parameters[name]] if name in contract.staged_parameters else value
        for name, value in contract.parameters.items()
    }
    return expand_argv(
        contract.command,
        inputs=[local_paths[uri] for uri in contract.inputs],
        shared_inputs=[local_paths[uri] for uri in contract.shared_inputs],
        parameters=parameters,
        output_dir=str(attempt_dir.outputs),
        work_dir=str(attempt_dir.work),
    )


def _gpus_visible(environ: Mapping[str, str], attempt_dir: AttemptDir, tool_env: Mapping[str, str], log: RunnerLog):
    """A job that asked for GPUs first checks it was given them (labbatch_contract.gpu_check): a tool
    that finds no GPU fails later, slower and in its own words, or quietly runs on the CPU."""
    try:
        gpus = int(environ.get(gpu_check.GPUS_ENV) or 0)
    except ValueError:
        raise RunnerError(ExitCode.CONTRACT, f"{gpu_check.GPUS_ENV} is {environ[gpu_check.GPUS_ENV]!r} "
                                             "(allowed: a whole number of GPUs)") from None
    if gpus <= 0:
        return None
    log.info(f"the job asked for {gpus} GPU(s): checking that it sees them")
    return run_tool(gpu_check.argv(), cwd=attempt_dir.work, env=tool_env,
                    log_path=attempt_dir.logs / outcome.TOOL_LOG_NAME)


def run_job(argv: list[str], environ: Mapping[str, str], *, log: RunnerLog, guard: TerminationGuard) -> int:
    report = Report(transfer_engine=DEFAULT_ENGINE)
    report.output_prefix = publishable_prefix(environ)

    def phases(state: AttemptState) -> None:
        with report.phase(outcome.CONTRACT):
            s3, contract = _prepare(argv, environ, report, log)
            state.s3 = s3
            attempt_dir = state.dir = AttemptDir.create(contract.scratch_dir, contract.job_id, contract.array_index, contract.attempt)
            planned = plan_inputs(contract, attempt_dir.inputs)
            report.argv = _expand(contract, attempt_dir, {item.uri: str(item.path) for item in planned})
        engine = make_engine(report.transfer_engine, s3)
        with PeakUsage(attempt_dir.root) as usage:
            state.usage = usage
            with report.phase(outcome.STAGE_IN):
                # Looked up at call time so that tests can stand in for the filesystem.
                state.cache = ReferenceCache(cache_dir(contract.scratch_dir), log)
                report.inputs = stage_in(s3, engine, planned, contract.scratch_dir, free_bytes=scratch.free_bytes, log=log,
                                         cache=state.cache, disk_factor=contract.disk_factor)
            usage.sample()
            with report.phase(outcome.RUN):
                tool_env = tool_environment(environ, tmp=attempt_dir.tmp)
                tool_log = attempt_dir.logs / outcome.TOOL_LOG_NAME
                checked = _gpus_visible(environ, attempt_dir, tool_env, log)
                if checked is None or checked.exit_code == 0:
                    log.info(f"run: {report.argv}")
                    report.tool = run_tool(report.argv, cwd=attempt_dir.work, env=tool_env, log_path=tool_log)
            usage.sample()
        report.peak_scratch_bytes = usage.peak
        if checked is not None and checked.exit_code != 0:
            report.fail(outcome.RUN, gpu_check.FAILURE_CODE, checked.last_line or gpu_check.FAILED_PREFIX, checked.exit_code)
        elif report.tool.exit_code != 0:
            how = f"killed by {report.tool.signal}" if report.tool.signal else f"exited with {report.tool.exit_code}"
            if report.tool.oom_killed:
                how += " (the kernel's OOM killer: it used more than the job's memory)"
            said = f": {report.tool.last_line}" if report.tool.last_line else ""
            report.fail(outcome.RUN, "tool_failed", f"tool {report.argv[0]!r} {how}{said}", report.tool.exit_code)
        else:
            with report.phase(outcome.STAGE_OUT):
                report.outputs = stage_out(s3, engine, attempt_dir.outputs, contract.output_prefix, log=log)
                log.info(f"succeeded in {sum(report.timings.values()):.1f} s")
                publish_attempt(s3, report, attempt_dir, log, best_effort=False)

    return conclude(report, phases, log=log, guard=guard)
