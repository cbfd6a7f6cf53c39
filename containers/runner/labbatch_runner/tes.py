"""TES mode: one GA4GH TES task (LABBATCH_TES_TASK) instead of a pipeline argv.

Inputs are staged into the attempt's scratch directory as usual (sized, free-space checked,
verified), then linked at the absolute paths the task names (`content` inputs are written
there); the executors run in order in the task's image, each with its workdir, env and
stdin/stdout/stderr files, stopping at the first non-zero exit unless it says ignore_error;
then the outputs (FILE, DIRECTORY, wildcards with path_prefix) are uploaded to their s3:// URLs.
The manifest's `tes` part holds each executor's exit code and times and each output's size,
which GET /ga4gh/tes/v1/tasks/{id} turns into the task's logs.

The runner is root inside the tool's container, which is what lets it write at absolute
paths; before staging, the task's top-level directories and /tmp get a home on the attempt's
scratch directory, so task data is on the scratch volume, not the image's layer. On a host it
runs a task only in the private mount namespace local mode's host executor gives it, with
paths under /tmp only (tes_paths.py says where each case writes).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from labbatch_contract import outcome
from labbatch_contract import runner_env
from labbatch_contract.outcome import ExitCode

from . import scratch
from .contract import SCRATCH_DIR, publishable_prefix, read_contract
from .errors import RunnerError
from .manifest import Report
from .attempt import AttemptState, conclude, publish_attempt, tool_environment
from .run import ToolResult, pump_output, signal_group, stop_tool
from .runlog import RunnerLog, utc_now
from .s3client import make_s3_client
from .s3uri import S3Uri
from .scratch import AttemptDir, PeakUsage, sweep_stale_attempts
from .staging import PlannedInput, stage_in
from .termination import TerminationGuard
from .tes_paths import RUNNER_TREE, TEST_ROOT, check_absolute, check_host_paths, give_homes, placement
from .transfer import DEFAULT_ENGINE, make_engine

LOG_TAIL_BYTES = 8 * 1024
_WILDCARDS = set("*?[")


def _load_task(s3: Any, raw: str) -> dict[str, Any]:
    if raw.startswith("s3://"):
        uri = S3Uri.parse(raw)
        try:
            raw = s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read().decode()
        except Exception as exc:  # noqa: BLE001 - any failure to read it is a contract failure
            raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_TASK} {uri}: {exc}") from None
    try:
        task = json.loads(raw)
    except ValueError as exc:
        raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_TASK} is not valid JSON: {exc}") from None
    if not isinstance(task, dict) or not task.get("executors"):
        raise RunnerError(ExitCode.CONTRACT, f"{runner_env.TES_TASK} must be an object with executors")
    check_absolute(task)
    return task


def _place_inputs(task: dict[str, Any], staged: dict[str, Path], log: RunnerLog) -> None:
    for item in task.get("inputs", []):
        target = Path(item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        source = staged.get(item.get("url"))
        if target.is_dir() and not target.is_symlink():
            if any(target.iterdir()) and source is not None and source.is_dir():
                # The image has files there, or another input lies inside: the folder's entries join them.
                for entry in sorted(source.iterdir()):
                    if (target / entry.name).exists() or (target / entry.name).is_symlink():
                        raise RunnerError(ExitCode.CONTRACT, f"input {item['url']}: {target / entry.name} is "
                                                             "already there (another input, or the image's)")
                    (target / entry.name).symlink_to(entry)
                log.info(f"input {item['url']} into {target}")
                continue
            target.rmdir()  # an empty home made for a DIRECTORY input: the staged folder takes its place
        elif target.is_symlink() or target.exists():
            target.unlink()
        if item.get("content") is not None:
            target.write_text(item["content"])
        else:
            # A link, not a copy: the data stays on the scratch volume, the image's layer stays small.
            target.symlink_to(staged[item["url"]])
        log.info(f"input {item.get('url') or 'content'} at {target}")
    for volume in task.get("volumes", []):
        Path(volume).mkdir(parents=True, exist_ok=True)
    # An output's directory (a FILE's parent, a DIRECTORY itself) exists before the executors run,
    # as Funnel's file mapper makes it (ohsu-comp-bio/funnel worker/file_mapper.go, AddOutput):
    # tasks written for other TES servers write there without creating it.
    # A wildcard output (TES 1.1, with path_prefix) names files the executors make where they
    # choose: its directory stays theirs to create (Snakemake-shaped tasks `mkdir` it).
    for output in task.get("outputs", []):
        path = PurePosixPath(output["path"])
        if any(mark in str(path) for mark in "*?["):
            continue
        Path(path if output.get("type") == "DIRECTORY" else path.parent).mkdir(parents=True, exist_ok=True)


def _tail(path: Path, start: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(start, os.path.getsize(path) - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_executor(executor: dict[str, Any], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> tuple[ToolResult, dict]:
    """One executor: its stdin/stdout/stderr files when it names them; otherwise its output goes
    to tool.log and the runner's stdout, as a pipeline tool's does."""
    command = executor["command"]
    workdir = Path(executor.get("workdir") or cwd)
    workdir.mkdir(parents=True, exist_ok=True)
    files = []

    def open_for(name: str, mode: str):
        path = Path(executor[name])
        if "w" in mode:
            path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, mode)
        files.append(handle)
        return handle

    start_offset = log_path.stat().st_size if log_path.exists() else 0
    started = utc_now()
    with open(log_path, "ab") as log_file:
        try:
            stdin = open_for("stdin", "rb") if executor.get("stdin") else subprocess.DEVNULL
            stdout = open_for("stdout", "wb") if executor.get("stdout") else subprocess.PIPE
            stderr = open_for("stderr", "wb") if executor.get("stderr") else (
                subprocess.STDOUT if stdout is subprocess.PIPE else subprocess.PIPE)
            process = subprocess.Popen(command, cwd=workdir, env={**env, **(executor.get("env") or {})},
                                       stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)
        except FileNotFoundError as exc:
            for handle in files:
                handle.close()
            missing = exc.filename or command[0]
            raise RunnerError(ExitCode.TOOL_NOT_FOUND, f"executor {command[0]!r}: {missing} not found") from None
        except PermissionError:
            for handle in files:
                handle.close()
            raise RunnerError(ExitCode.TOOL_NOT_EXECUTABLE, f"executor {command[0]!r}: not executable") from None
        pumps = []
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                pump = threading.Thread(target=pump_output, args=(stream, log_file, sys.stdout.buffer), daemon=True)
                pump.start()
                pumps.append(pump)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            stop_tool(process)
            raise
        finally:
            for handle in files:
                handle.close()
        process.returncode = os.waitstatus_to_exitcode(status)
        signal_group(process.pid, signal.SIGKILL)
        for pump in pumps:
            pump.join(timeout=5)
    code = process.returncode
    result = ToolResult(128 - code if code < 0 else code, signal.Signals(-code).name if code < 0 else None,
                        usage.ru_maxrss * 1024)
    entry = {"start_time": started, "end_time": utc_now(), "exit_code": result.exit_code,
             "stdout": _tail(log_path, start_offset)}
    return result, entry


def _output_files(output: dict[str, Any]) -> list[tuple[Path, str]]:
    """(local file, s3 URL) pairs for one output; a missing FILE output is an error."""
    path, url = output["path"], output["url"]
    if _WILDCARDS & set(path):
        prefix = output.get("path_prefix") or ""
        base = url if url.endswith("/") else url + "/"
        return [(Path(match), base + match[len(prefix):].lstrip("/"))
                for match in sorted(glob.glob(path)) if os.path.isfile(match)]
    local = Path(path)
    if output.get("type") == "DIRECTORY":
        if not local.is_dir():
            raise RunnerError(ExitCode.STAGE_OUT_FAILED, f"output directory {path}: not found")
        base = url.rstrip("/") + "/"
        return [(p, base + p.relative_to(local).as_posix()) for p in sorted(local.rglob("*")) if p.is_file()]
    if not local.is_file():
        raise RunnerError(ExitCode.STAGE_OUT_FAILED, f"output {path}: not found (the executors did not write it)")
    return [(local, url)]


def upload_outputs(s3: Any, task: dict[str, Any], log: RunnerLog) -> list[dict[str, Any]]:
    uploaded = []
    for output in task.get("outputs", []):
        for local, url in _output_files(output):
            target = S3Uri.parse(url)
            try:
                s3.upload_file(str(local), target.bucket, target.key)
            except Exception as exc:  # noqa: BLE001
                raise RunnerError(ExitCode.STAGE_OUT_FAILED, f"output {local} to {url}: upload failed: {exc}") from None
            size = local.stat().st_size
            uploaded.append({"url": url, "path": str(local), "size_bytes": size})
            log.info(f"output {local} -> {url} ({size:,} bytes)")
    return uploaded


def run_tes_task(environ: Mapping[str, str], *, log: RunnerLog, guard: TerminationGuard) -> int:
    report = Report(transfer_engine=DEFAULT_ENGINE)
    report.output_prefix = publishable_prefix(environ)
    report.tes = {"executors": [], "outputs": []}

    def phases(state: AttemptState) -> None:
        with report.phase(outcome.CONTRACT):
            contract = read_contract(["--", "tes-task"], environ)
            report.job_id, report.attempt = contract.job_id, contract.attempt
            report.output_prefix = contract.output_prefix
            where = placement(environ)
            s3 = state.s3 = make_s3_client()
            task = _load_task(s3, environ[runner_env.TES_TASK])
            if not contract.scratch_dir.is_dir():
                raise RunnerError(ExitCode.CONTRACT, f"{SCRATCH_DIR} {contract.scratch_dir}: not a directory")
            if where == "private_tmp":
                check_host_paths(task, contract.scratch_dir)
            for stale in sweep_stale_attempts(contract.scratch_dir):
                log.info(f"removed a dead attempt's scratch directory {stale}")
            attempt_dir = state.dir = AttemptDir.create(contract.scratch_dir, contract.job_id, None, contract.attempt)
            planned, staged_paths = [], {}
            for item in task.get("inputs", []):
                url = item.get("url")
                if url and item.get("type") == "DIRECTORY" and not url.endswith("/"):
                    url = item["url"] = url + "/"
                if url and url not in staged_paths:
                    uri = S3Uri.parse(url)
                    path = scratch.local_input_path(attempt_dir.inputs, uri)
                    staged_paths[url] = path
                    # A DIRECTORY is a folder as a pipeline's inputs and parameters name one: staged
                    # by the same code, every object under it into one directory.
                    planned.append(PlannedInput(uri, path, (f"tes:{item['path']}",), folder=url.endswith("/")))
        engine = make_engine(report.transfer_engine, s3)
        with PeakUsage(attempt_dir.root) as usage:
            state.usage = usage
            with report.phase(outcome.STAGE_IN):
                root = Path("/") if where == "container" else (
                    Path(environ[TEST_ROOT]) if where == "test" and environ.get(TEST_ROOT) else None)
                if root is not None:
                    give_homes(task, root=root, homes=attempt_dir.root / "root", log=log,
                               keep=(Path(RUNNER_TREE), contract.scratch_dir))
                report.inputs = stage_in(s3, engine, planned, contract.scratch_dir,
                                         free_bytes=scratch.free_bytes, log=log)
                _place_inputs(task, staged_paths, log)
            with report.phase(outcome.RUN):
                tool_env = tool_environment(environ, tmp=attempt_dir.tmp)
                for index, executor in enumerate(task["executors"]):
                    log.info(f"executor {index}: {executor['command']}")
                    report.argv = list(executor["command"])
                    report.tool, entry = run_executor(executor, env=tool_env, cwd=attempt_dir.work,
                                                      log_path=attempt_dir.logs / outcome.TOOL_LOG_NAME)
                    report.tes["executors"].append(entry)
                    if report.tool.exit_code != 0 and not executor.get("ignore_error"):
                        break
            usage.sample()
        report.peak_scratch_bytes = usage.peak
        if report.tool is not None and report.tool.exit_code != 0 and not task["executors"][
                len(report.tes["executors"]) - 1].get("ignore_error"):
            report.fail(outcome.RUN, "tool_failed", f"executor {len(report.tes['executors']) - 1} "
                        f"{report.argv[0]!r} exited with {report.tool.exit_code}", report.tool.exit_code)
        else:
            with report.phase(outcome.STAGE_OUT):
                report.tes["outputs"] = upload_outputs(s3, task, log)
                publish_attempt(s3, report, attempt_dir, log, best_effort=False)

    return conclude(report, phases, log=log, guard=guard)
