"""`labbatch results`: a job's outputs (every array child's), each verified against its attempt's
`manifest.json` (size and sha256) before it becomes the file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from labbatch.error_line import print_error
from labbatch.client.sdk import FINAL_STATUSES, LabBatchError
from labbatch.client.labdata import LabData, aws_code, aws_reason, split_uri
from labbatch_contract import manifest as manifests
from labbatch_contract import outcome
from labbatch.client.transfer import PART_SUFFIX, transfer_config
from labbatch.client.transfer.checksums import sha256_file
from labbatch.client.transfer.progress import Progress, files_text, human_bytes


@dataclass(frozen=True)
class Output:
    sample: str | None  # an array child's sample name
    path: str  # relative to the job's (or child's) output prefix
    bucket: str
    key: str
    size: int
    sha256: str

    @property
    def local_path(self) -> str:
        return f"{self.sample}/{self.path}" if self.sample is not None else self.path


def results_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", help="a job id (j-...); an array job brings every child's outputs")
    parser.add_argument("--to", metavar="DIR", type=Path,
                        help="where to put them (default: ./JOB); an array child's go under DIR/<sample>/")
    parser.add_argument("--list", action="store_true", help="list the outputs (size, sha256) without downloading")
    parser.add_argument("--report", action="store_true", help="also write the job's report (labbatch report) "
                        "as report.html beside the results")
    parser.add_argument("--labs-dir", type=Path, metavar="DIR", help="folder of lab files, for the report's prices "
                        "(default: the project's labs/)")


def run_results(args: argparse.Namespace) -> int:
    data = LabData.from_args(args)
    with data.api() as api:
        record = _follow_recovery(api, api.get(args.job_id))
    outputs, manifest_bodies, problems = job_outputs(data, record)
    if args.list:
        _print_outputs(record, outputs, problems, as_json=args.json)
        return _finish(problems, record)
    destination = args.to or Path(record["job_id"])
    written = download_outputs(data, outputs, manifest_bodies, destination)
    total = sum(o.size for o in outputs)
    if args.json:
        sys.stdout.write(json.dumps({"job_id": record["job_id"], "directory": str(destination), "files": [
            {"path": o.local_path, "size": o.size, "sha256": o.sha256, "uri": f"s3://{o.bucket}/{o.key}"}
            for o in outputs], "problems": [{"code": p.code, "message": p.message} for p in problems]},
            indent=2) + "\n")
    else:
        kept = sum(1 for w in written if w)
        print(f"{files_text(len(outputs))} ({human_bytes(total)}) of {record['job_id']} in {destination}/, sizes and sha256 "
              f"verified against {outcome.MANIFEST_NAME}" + (f" ({len(outputs) - kept} already there)" if kept < len(outputs)
                                                   else ""))
    if args.report:
        from labbatch.client.report.command import DEFAULT_LABS_DIR, write_report

        page = destination / "report.html"
        with data.api() as api:
            write_report(api, output=page, labs_dir=args.labs_dir or DEFAULT_LABS_DIR, lab_name=args.lab,
                         job_ids=[args.job_id])
        print(f"Report: {page}", file=sys.stderr if args.json else sys.stdout)
    return _finish(problems, record)


def _follow_recovery(api: Any, record: dict[str, Any]) -> dict[str, Any]:
    seen = {record["job_id"]}
    while record.get("status") == "FAILED" and record.get("recovered_by") and record["recovered_by"] not in seen:
        print(f"labbatch: {record['job_id']} failed ({record.get('failure')}) and LabBatch resubmitted it as "
              f"{record['recovered_by']}: showing that job's outputs", file=sys.stderr)
        record = api.get(record["recovered_by"])
        seen.add(record["job_id"])
    return record


def _finish(problems: Sequence[LabBatchError], record: Mapping[str, Any]) -> int:
    if not problems:
        return 0
    for problem in problems[:-1]:
        print_error(problem.code, problem.message)
    raise problems[-1]


def job_outputs(data: LabData, record: Mapping[str, Any]) -> tuple[list[Output], dict[str | None, bytes],
                                                                    list[LabBatchError]]:
    """Every output the job's manifest_bodies list, the manifest_bodies themselves, and what is missing or failed.

    Refuses (raises) when there is nothing to fetch at all: a job not finished, or no manifest.
    """
    job_id, status = record["job_id"], record.get("status")
    if status not in FINAL_STATUSES:
        raise LabBatchError("job_not_finished", f"{job_id} is {status}: its outputs are uploaded when it ends "
                            f"(labbatch wait {job_id})")
    prefix = record["output_prefix"]
    s3 = data.client("s3")
    if record.get("array_size"):
        children = _samples(data, record)
        with ThreadPoolExecutor(max_workers=16) as pool:
            fetched = list(pool.map(
                lambda child: (child, _read_manifest(s3, outcome.manifest_key(f"{prefix}{child[1]}/"))), children))
    else:
        fetched = [((None, None), _read_manifest(s3, outcome.manifest_key(prefix)))]
    outputs: list[Output] = []
    manifest_bodies: dict[str | None, bytes] = {}
    problems: list[LabBatchError] = []
    for (index, sample), (uri, body, error) in fetched:
        who = job_id if sample is None else f"{job_id} child {index} ({sample})"
        if body is None:
            problems.append(LabBatchError("no_manifest", f"{who} has no {outcome.MANIFEST_NAME} at {uri} "
                                          f"({error}); status {status}: it may not have run yet"))
            continue
        try:
            manifest = json.loads(body)
        except ValueError:
            problems.append(LabBatchError("bad_manifest", f"{uri} is not JSON"))
            continue
        if not manifests.succeeded(manifest):
            detail = manifests.error_message(manifest) or f"phase {manifests.failed_phase(manifest)}"
            problems.append(LabBatchError("job_failed", f"{who} failed, so it has no outputs: {detail} "
                                          f"(labbatch logs {job_id}" + (f" --child {index}" if index is not None
                                                                        else "") + ")"))
            continue
        manifest_bodies[sample] = body
        for entry in manifests.entries(manifest, manifests.OUTPUTS):
            path = str(entry.get(manifests.PATH) or "")
            relative = PurePosixPath(path)
            if not path or relative.is_absolute() or ".." in relative.parts:
                problems.append(LabBatchError("bad_manifest", f"{uri} lists an unsafe path {path!r}"))
                continue
            bucket, key = split_uri(str(manifest.get(manifests.OUTPUT_PREFIX) or ""))
            outputs.append(Output(sample, relative.as_posix(), bucket, entry.get(manifests.KEY) or key + path,
                                  int(entry[manifests.SIZE]), str(entry[manifests.SHA256])))
    if not outputs and not manifest_bodies and problems:
        if len(problems) == 1:
            raise problems[0]
        for problem in problems[:-1]:
            print_error(problem.code, problem.message)
        raise LabBatchError(problems[-1].code, f"{problems[-1].message} (no child of {job_id} has outputs)")
    return outputs, manifest_bodies, problems


def _samples(data: LabData, record: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, sample name) of every child: from the job's sample list, else a listing of its prefix."""
    s3 = data.client("s3")
    uri = record.get("samples_uri")
    if uri:
        bucket, key = split_uri(uri)
        try:
            samples = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            return [(index, str(sample["name"])) for index, sample in enumerate(samples)]
        except Exception as error:  # noqa: BLE001 - then the listing tells
            print(f"labbatch: cannot read the sample list {uri} ({aws_reason(error)}): listing the outputs instead",
                  file=sys.stderr)
    bucket, prefix = split_uri(record["output_prefix"])
    names: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return [(index, name) for index, name in enumerate(sorted(names))]


def _read_manifest(s3: Any, uri: str) -> tuple[str, bytes | None, str | None]:
    bucket, key = split_uri(uri)
    try:
        return uri, s3.get_object(Bucket=bucket, Key=key)["Body"].read(), None
    except Exception as error:  # noqa: BLE001 - botocore's errors alike
        return uri, None, "not found" if aws_code(error) in ("NoSuchKey", "404") else aws_reason(error)


def _print_outputs(record: Mapping[str, Any], outputs: Sequence[Output], problems: Sequence[LabBatchError], *,
                   as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"job_id": record["job_id"], "files": [
            {"path": o.local_path, "size": o.size, "sha256": o.sha256, "uri": f"s3://{o.bucket}/{o.key}"}
            for o in outputs]}, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("path", "size", "sha256", "uri", title=f"outputs of {record['job_id']}", title_justify="left")
    for output in outputs:
        table.add_row(output.local_path, f"{output.size:,}", output.sha256[:16] + "…", f"s3://{output.bucket}/{output.key}")
    Console(highlight=False).print(table)
    print(f"{files_text(len(outputs))}, {human_bytes(sum(o.size for o in outputs))}")


def download_outputs(data: LabData, outputs: Sequence[Output], manifest_bodies: Mapping[str | None, bytes],
                     destination: Path) -> list[bool]:
    """Downloads and verifies every output; True for each one fetched, False for one already there intact."""
    from boto3.s3.transfer import TransferManager
    from botocore.exceptions import BotoCoreError, ClientError

    destination.mkdir(parents=True, exist_ok=True)
    for sample, body in manifest_bodies.items():
        folder = destination / sample if sample is not None else destination
        folder.mkdir(parents=True, exist_ok=True)
        (folder / outcome.MANIFEST_NAME).write_bytes(body)
    s3 = data.client("s3")
    fetched = [False] * len(outputs)
    pending = []
    for index, output in enumerate(outputs):
        target = destination / output.local_path
        if target.is_file() and target.stat().st_size == output.size and sha256_file(target) == output.sha256:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        pending.append(index)
    problems: list[LabBatchError] = []
    total = sum(outputs[i].size for i in pending)
    with Progress("download", total, len(pending)) as progress, TransferManager(s3, transfer_config()) as manager, \
            ThreadPoolExecutor(max_workers=4) as verifiers:
        for attempt in (1, 2):
            futures = {index: manager.download(outputs[index].bucket, outputs[index].key,
                                               str(destination / outputs[index].local_path) + PART_SUFFIX,
                                               subscribers=[progress.subscriber()])
                       for index in pending}
            checks = {}
            for index, future in futures.items():
                try:
                    future.result()
                except (ClientError, BotoCoreError, OSError) as error:
                    checks[index] = None
                    problems_for = LabBatchError("download_failed", f"{outputs[index].local_path}: "
                                                 f"s3://{outputs[index].bucket}/{outputs[index].key}: {aws_reason(error)}")
                    if attempt == 2:
                        problems.append(problems_for)
                    continue
                checks[index] = verifiers.submit(_verify_download, destination, outputs[index])
            retry = []
            for index, check in checks.items():
                problem = check.result() if check is not None else "download failed"
                if problem is None:
                    fetched[index] = True
                    progress.file_done()
                elif attempt == 1:
                    retry.append(index)
                    progress.bytes(-outputs[index].size)
                elif check is not None:
                    output = outputs[index]
                    (destination / (output.local_path + PART_SUFFIX)).unlink(missing_ok=True)
                    problems.append(LabBatchError(
                        "checksum_mismatch" if "sha256" in problem else "size_mismatch",
                        f"{output.local_path}: {problem} (s3://{output.bucket}/{output.key}, twice); "
                        "the download was removed"))
            if not retry:
                break
            pending = retry
    if problems:
        for problem in problems[:-1]:
            print_error(problem.code, problem.message)
        last = problems[-1]
        raise LabBatchError(last.code, last.message + (f" ({len(problems)} files failed)" if len(problems) > 1 else ""))
    return fetched


def _verify_download(destination: Path, output: Output) -> str | None:
    part = destination / (output.local_path + PART_SUFFIX)
    size = part.stat().st_size
    if size != output.size:
        return f"downloaded {size:,} bytes, the manifest says {output.size:,}"
    got = sha256_file(part)
    if got != output.sha256:
        return f"sha256 {got} does not match the manifest's {output.sha256}"
    os.replace(part, destination / output.local_path)
    return None
