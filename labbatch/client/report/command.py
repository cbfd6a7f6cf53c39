"""`labbatch report JOB… | --since 7d | --pipeline NAME [-o report.html]`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from labbatch.client.command_base import connection_of
from labbatch.client.sdk import LabBatchClient, LabBatchError
from labbatch.lab.loader import DEFAULT_LABS_DIR

# --pipeline without --since looks this far back.
DEFAULT_SINCE = "30d"
_AGO = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", metavar="JOB", nargs="*", help="jobs to report on (their recoveries and, for "
                        "array jobs, every ended child come with them)")
    parser.add_argument("--since", metavar="WHEN", help="every job created since: 7d, 12h, 30m, or a UTC date/time "
                        "(2026-12-01, 2026-12-01T08:00:00Z)")
    parser.add_argument("--pipeline", metavar="NAME", help=f"only this pipeline's jobs (since {DEFAULT_SINCE} "
                        "unless --since says otherwise)")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE",
                        help="the HTML page to write (default: report.html)")
    parser.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR, metavar="DIR",
                        help="folder of lab files, for the lab's prices and requests (default: the project's labs/)")


def since_moment(text: str, now: datetime | None = None) -> str:
    """An ISO-8601 UTC moment from "7d"/"12h"/"30m" or a date/time."""
    now = now or datetime.now(timezone.utc)
    match = _AGO.match(text)
    if match:
        moment = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise LabBatchError("bad_since", f"--since {text!r}: give 7d, 12h, 30m, or a UTC date/time such as "
                            "2026-12-01 or 2026-12-01T08:00:00Z") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_report(client: LabBatchClient, *, output: Path, labs_dir: Path, lab_name: str | None,
                 job_ids: list[str] | tuple[str, ...] = (), since: str | None = None,
                 pipeline: str | None = None, title: str | None = None) -> dict[str, Any]:
    """Gather, price, right-size and write the page; the page's data (render.data) back."""
    from labbatch.lab.loader import load_one_lab
    from labbatch.client.report import costing, render, summary
    from labbatch.client.report.gather import gather

    name = lab_name or client.lab().get("lab")
    if not name:
        raise LabBatchError("no_lab", "the lab's name is unknown: pass --lab NAME")
    lab, problem = load_one_lab(labs_dir, name)
    if lab is None:
        raise LabBatchError("bad_lab", f"lab {name!r} in {labs_dir}: {problem} (its prices and requests price "
                            "the report; pass --labs-dir)")
    found = gather(client, job_ids=job_ids, since=since, pipeline=pipeline)
    if not found.jobs:
        raise LabBatchError("nothing_to_report", "no jobs matched: name jobs, or widen --since")
    lab_file = str(labs_dir / f"{name}.yaml")
    requests = {p: (spec.vcpus, spec.memory_mib) for p, spec in lab.pipelines.items()}
    report = summary.build(found, costing.price_book(lab), lab_file=lab_file, requests=requests)
    what = (", ".join(job_ids) if len(job_ids) <= 2 else f"{len(job_ids)} jobs and their recoveries") if job_ids \
        else f"jobs since {since}" + (f" of {pipeline}" if pipeline else "")
    page = render.render(report, title=title or f"LabBatch report: lab {name}, {what}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return render.data(report)


def run_report(args: argparse.Namespace) -> int:

    if not args.job_ids and not args.since and not args.pipeline:
        raise LabBatchError("nothing_to_report", "name jobs (labbatch report JOB...), or give --since 7d or "
                            "--pipeline NAME")
    since = since_moment(args.since or DEFAULT_SINCE) if (args.since or args.pipeline) else None
    connection = connection_of(args)
    with connection.client() as client:
        result = write_report(client, output=args.output, labs_dir=args.labs_dir, lab_name=args.lab,
                              job_ids=args.job_ids, since=since, pipeline=args.pipeline)
    if args.json:
        print(json.dumps(result, indent=2))
    counts = result["counts"]
    print(f"Report: {args.output.resolve()} ({counts['samples']} samples, {counts['succeeded']} succeeded, "
          f"{counts['failed']} failed)", file=sys.stderr if args.json else sys.stdout)
    return 0
