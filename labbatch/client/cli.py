"""The `labbatch` command.

Each sub-command is one small function `run(args) -> exit code`, registered in COMMANDS with
the function that declares its arguments. Expected failures (the API refused, the lab is
unreachable, a bad flag) end in one line on stderr, `labbatch: <code>: <message>`, never a
traceback.

Exit codes: 0 done; 1 the API refused, the lab could not be reached, or a job did not succeed;
2 bad usage; 124 `wait` timed out; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labbatch.client.command_base import EXIT_INTERRUPTED, EXIT_USAGE, LAB_ENV, job_argument, job_or_child_argument, report_error
from labbatch.client.sdk import LabBatchError


@dataclass(frozen=True)
class SubCommand:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    # Sub-commands that call a lab's API get --endpoint/--lab/--profile/--region.
    talks_to_api: bool = True


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command's module is imported only when it runs: `labbatch --help` stays quick, and local
    mode's moto and executor load for `labbatch local` alone."""
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(module), function)(args)
    return run


def _lazy_arguments(module: str, function: str) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(parser: argparse.ArgumentParser) -> None:
        import importlib
        getattr(importlib.import_module(module), function)(parser)
    return arguments


COMMANDS: tuple[SubCommand, ...] = (
    SubCommand("submit", "submit a job (or one array job over --samples)", _lazy("labbatch.client.submit_command", "run_submit"),
               _lazy_arguments("labbatch.client.submit_command", "submit_arguments")),
    SubCommand("status", "show one job (or one child of an array job)", _lazy("labbatch.client.job_commands", "run_status"),
               job_or_child_argument),
    SubCommand("list", "list jobs, newest first", _lazy("labbatch.client.job_commands", "run_list"),
               _lazy_arguments("labbatch.client.job_commands", "list_arguments")),
    SubCommand("cancel", "cancel a queued job or terminate a running one", _lazy("labbatch.client.job_commands", "run_cancel"),
               job_argument),
    SubCommand("wait", "follow jobs to their end; exit 0 only if all succeeded", _lazy("labbatch.client.job_commands", "run_wait"),
               _lazy_arguments("labbatch.client.job_commands", "wait_arguments")),
    SubCommand("pipelines", "what this lab can run, with defaults and limits", _lazy("labbatch.client.job_commands", "run_pipelines")),
    SubCommand("why", "why a job is waiting (or how it ended)", _lazy("labbatch.client.why", "run_why"), job_or_child_argument),
    SubCommand("upload", "upload files and folders to the lab's inputs (or references) bucket, checksums verified; "
               "prints the s3:// URIs to submit", _lazy("labbatch.client.transfer.upload", "run_upload"),
               _lazy_arguments("labbatch.client.transfer.upload", "upload_arguments")),
    SubCommand("results", "download a job's outputs (every array child's), verified against its manifest.json",
               _lazy("labbatch.client.transfer.results", "run_results"), _lazy_arguments("labbatch.client.transfer.results", "results_arguments")),
    SubCommand("download", "download everything under a prefix of the lab's buckets (a workflow engine's outputs), "
               "each file checked against S3's own checksum", _lazy("labbatch.client.prefix_download", "run_download"),
               _lazy_arguments("labbatch.client.prefix_download", "download_arguments")),
    SubCommand("report", "an HTML report of jobs (JOB..., --since 7d, --pipeline NAME): failures, times, peaks, "
               "cost per sample and right-sizing", _lazy("labbatch.client.report.command", "run_report"),
               _lazy_arguments("labbatch.client.report.command", "report_arguments")),
    SubCommand("logs", "a job's log lines, every attempt (--child N for an array child, --follow to keep going)",
               _lazy("labbatch.client.joblogs", "run_logs"), _lazy_arguments("labbatch.client.joblogs", "logs_arguments")),
    SubCommand("doctor", "check the lab end to end: API, queues, compute environments, images, a canary job "
               "per queue; exit 0 when all pass", _lazy("labbatch.client.doctor", "run_doctor"),
               _lazy_arguments("labbatch.client.doctor", "doctor_arguments")),
    SubCommand("tes-proxy", "a localhost GA4GH TES endpoint for workflow engines (Snakemake, Nextflow, py-tes) "
               "that re-signs each request with your AWS credentials", _lazy("labbatch.client.tes_proxy", "run_tes_proxy"),
               _lazy_arguments("labbatch.client.tes_proxy", "tes_proxy_arguments")),
    SubCommand("token", "bearer tokens for workflow engines on the lab's TES endpoint: create (shown once), list, "
               "revoke ID", _lazy("labbatch.client.engine_config", "run_token"),
               _lazy_arguments("labbatch.client.engine_config", "token_arguments")),
    SubCommand("engine-config", "what Snakemake, Nextflow, Toil, Cromwell or py-tes need for this lab's TES "
               "endpoint: URL, token, work prefix", _lazy("labbatch.client.engine_config", "run_engine_config"),
               _lazy_arguments("labbatch.client.engine_config", "engine_config_arguments")),
    SubCommand("local", "run a lab on this machine, no AWS account needed", _lazy("labbatch.local.command", "run_local"),
               _lazy_arguments("labbatch.local.command", "local_arguments"), talks_to_api=False),
    SubCommand("demo", "tour: local lab, simulated reads, real jobs, results", _lazy("labbatch.demo", "run_demo"),
               _lazy_arguments("labbatch.demo", "demo_arguments"), talks_to_api=False),
    SubCommand("cost", "a lab's fixed monthly cost and per-job prices, from its templates",
               _lazy("labbatch.client.cost", "run_cost"), _lazy_arguments("labbatch.client.cost", "cost_arguments"),
               talks_to_api=False),
)


def build_parser(commands: Sequence[SubCommand] = COMMANDS) -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of tables")
    api = argparse.ArgumentParser(add_help=False)
    where = api.add_argument_group("which lab")
    where.add_argument("--endpoint", metavar="URL", help="the API's URL (default: $LABBATCH_ENDPOINT, a running "
                       "local lab, or the ApiEndpoint output of the lab's deployed API stack)")
    where.add_argument("--lab", default=os.environ.get(LAB_ENV), metavar="NAME", help=f"the lab (default: ${LAB_ENV})")
    where.add_argument("--profile", metavar="PROFILE", help="AWS profile to sign with (default: the usual chain)")
    where.add_argument("--region", metavar="REGION", help="the lab's Region (default: the profile's)")

    parser = argparse.ArgumentParser(prog="labbatch", description="Run and follow jobs on a LabBatch lab.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in commands:
        parents = [output, api] if command.talks_to_api else [output]
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help, parents=parents)
        command.arguments(sub)
        sub.set_defaults(command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # argparse's --help and usage errors; in-process callers get a code
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    command: SubCommand | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command.run(args)
    except LabBatchError as error:
        return report_error(error, as_json=getattr(args, "json", False))
    except KeyboardInterrupt:
        print("labbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
