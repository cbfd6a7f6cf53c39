"""What every `labbatch` sub-command shares: exit codes, the usage error, the API client from the
common flags, the arguments naming a job, and the one way an expected failure ends."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from labbatch.error_line import print_error
from labbatch.client.sdk import Connection, LabBatchClient, LabBatchError, resolve_connection

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124  # as coreutils `timeout` does, so scripts can tell "still running" from "failed"
EXIT_INTERRUPTED = 130
LAB_ENV = "LABBATCH_LAB"


class UsageError(LabBatchError):
    """The command line itself is wrong; exits 2 like argparse's own refusals."""

    def __init__(self, message: str):
        super().__init__("usage", message)


def connection_of(args: argparse.Namespace) -> Connection:
    """The lab the common flags (--endpoint, --lab, --profile, --region) name."""
    return resolve_connection(endpoint=args.endpoint, lab=args.lab, profile=args.profile, region=args.region)


def api_client(args: argparse.Namespace) -> LabBatchClient:
    return connection_of(args).client()


def job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", help="a job id (j-...)")


def job_or_child_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB",
                        help="a job id (j-...), or JOB:INDEX or JOB:SAMPLE for one child of an array job")


def child_of(job_id: str) -> tuple[str, str | None]:
    """"j-...:3" or "j-...:sample-a" -> (job id, child); a plain id -> (job id, None)."""
    job, _, child = job_id.partition(":")
    return job, (child or None)


def report_error(error: LabBatchError, *, as_json: bool) -> int:
    if as_json:
        print_json({"error": {"code": error.code, "message": error.message, "details": error.details}})
    print_error(error.code, error.message, error.details)
    if isinstance(error, UsageError):
        return EXIT_USAGE
    return EXIT_TIMEOUT if error.code == "timeout" else EXIT_FAILED


def print_json(value: Any) -> int:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    return EXIT_OK
