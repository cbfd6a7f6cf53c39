"""`labbatch report` of a 10,000-child array job from a local lab's ledger, against reading every
child's manifest (issue 27).

    .venv/bin/python bench/report_scale.py [--children 10000] [--repeats 3]

One `labbatch local --no-containers` lab (started as bench/request_overhead.py does). Set-up, not
timed: the array job's record, its sample list, one runner manifest per child under
`<prefix><sample>/manifest.json` (the runner's shape: two inputs with checksums, four outputs
with sha256, logs, timings, peaks), and each child's ledger item as the status updater leaves it
when the child ends (status, sample, log, times, and `figures` built by
labbatch_contract.measures from the child's Batch attempt and that manifest), and the report
blocks holding each child's row (written with BatchWriteItem, since 10,000 children's events
through the updater would only slow the set-up).

Timed, interleaved per repeat, over the same loopback:
- report     the report as `labbatch report JOB` makes it: labbatch.client.report.gather over the signed
             job API (GET /jobs/{id}/report, pages of 5,000 children from the report blocks),
             summary.build, render.render; bytes read: the API's JSON answers;
- baseline   what a report would do without the ledger's figures: list the job's prefix and GET
             every manifest.json, one after another (bytes read: the manifests' bodies); the
             report's own summary and rendering are not added to it.

Printed: each way's median time and bytes, and the report's ratios to the baseline measured in
the same run. Aim (issue 27): under 10 s, and under 1 % of the manifests' bytes. A benchmark,
not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, Summary, machine_line, median, spread, verdict  # noqa: E402
from request_overhead import start_local, stop_local  # noqa: E402

sys.path.insert(0, str(ROOT))
from labbatch_contract import batch_reasons, outcome  # noqa: E402
JOB_ID = "j-" + "01benchreportscale".ljust(26, "0")


def manifest(job_id: str, prefix: str, sample: str, index: int) -> dict:
    """A runner manifest of the usual shape (containers/runner/README.md)."""
    out = f"{prefix}{sample}/"
    return {
        "manifest_version": 1, "runner_version": "0.1.0", "job_id": job_id, "array_index": index, "sample": sample,
        "attempt": 1, "status": "succeeded", "failed_phase": None, "error": None, "exit_code": 0,
        "output_prefix": out, "parameters": {"preset": "sr"},
        "tool": {"argv": ["fastq-stats", f"/scratch/in/{sample}_R1.fastq.gz", "--output-dir", "/scratch/out"],
                 "exit_code": 0, "signal": None, "oom_killed": None, "cpu_seconds": 40.0 + index % 7},
        "inputs": [{"uri": f"s3://bench-inputs/reads/{sample}_R{r}.fastq.gz", "size": 180_000_000 + index,
                    "used_as": ["inputs"], "cache": None,
                    "checksum": {"algorithm": "sha256", "value": "q1MKE+RZFJgrefm34/uplM/R8/si9xzqGvvwK0YMbR0=",
                                 "verified": True}} for r in (1, 2)],
        "outputs": [{"path": name, "key": f"{out[len('s3://'):].split('/', 1)[1]}{name}", "size": 4096 + index,
                     "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
                    for name in ("stats.json", "qc/per_base.tsv", "qc/lengths.tsv", "logs/fastq-stats.log")],
        "logs": {"runner": f"{out}{outcome.RUNNER_LOG}", "tool": f"{out}{outcome.TOOL_LOG}"},
        "timings_seconds": {outcome.CONTRACT: 0.004, outcome.STAGE_IN: 3.2, outcome.RUN: 61.5, outcome.STAGE_OUT: 0.8,
                            "total": 65.6},
        "started_at": "2026-12-01T10:00:00.000000Z", "finished_at": "2026-12-01T10:01:05.600000Z",
        "peak_scratch_bytes": 400_000_000, "peak_memory_bytes": {"tool": (900 + index % 300) * 1024 * 1024,
                                                                 "runner": 60 * 1024 * 1024},
        "transfer_engine": "s5cmd",
    }


def set_up(info: dict, children: int) -> str:
    import boto3

    from labbatch_contract import ledger, measures, names

    creds = info["credentials"]
    kwargs = dict(endpoint_url=info["aws_endpoint"], region_name=info["region"],
                  aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    s3, db = boto3.client("s3", **kwargs), boto3.client("dynamodb", **kwargs)
    table = names.ledger_table(info["lab"])
    results = info["buckets"]["results"]
    prefix = f"s3://{results}/jobs/{JOB_ID}/"
    samples = [f"s{i:05d}" for i in range(children)]
    record = ledger.new_job_record(
        job_id=JOB_ID, lab=info["lab"], pipeline="fastq-stats", queue="spot", job_queue="q", job_definition="d",
        vcpus=2, memory_mib=4096, output_prefix=prefix, created_at="2026-12-01T09:59:00.000000Z",
        submitted_by="bench", array_size=children, children={"SUCCEEDED": children})
    record.update(status="SUCCEEDED", progress=ledger.PROGRESS_FINAL, children_final=True)
    db.put_item(TableName=table, Item=ledger.to_item(record))

    def put(index: int) -> dict:
        body = manifest(JOB_ID, prefix, samples[index], index)
        s3.put_object(Bucket=results, Key=outcome.manifest_key(f"jobs/{JOB_ID}/{samples[index]}/"),
                      Body=json.dumps(body, indent=2).encode())
        attempt = {"started_at": "2026-12-01T10:00:00.000000Z", "stopped_at": "2026-12-01T10:01:06.000000Z",
                   "exit_code": 0, "reason": batch_reasons.CONTAINER_EXITED}
        figures = measures.attempt_figures(attempts=[attempt], created_at="2026-12-01T09:59:00.000000Z", vcpus=2,
                                           memory_mib=4096, market="spot", failure=None, manifest=body)
        return {"job_id": ledger.child_key(JOB_ID, index), "status": "SUCCEEDED", "progress": ledger.PROGRESS_FINAL,
                "sample": samples[index], "log": {"group": info["log_group"], "stream": f"fastq-stats/default/{index}"},
                "started_at": attempt["started_at"], "stopped_at": attempt["stopped_at"],
                measures.FIGURES: measures.encode_figures(figures),
                "_row": measures.child_row(index, samples[index], "SUCCEEDED", figures)}

    with ThreadPoolExecutor(8) as pool:
        items = list(pool.map(put, range(children)))
    blocks: dict[int, list[str]] = {}
    for index, item in enumerate(items):
        blocks.setdefault(measures.report_block_of(index), []).append(item.pop("_row"))
    items += [{"job_id": measures.report_block_key(JOB_ID, block), measures.REPORT_ROWS: set(rows)}
              for block, rows in blocks.items()]
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": ledger.to_item(i)}} for i in items[start:start + 25]]}
        while request:
            request = db.batch_write_item(RequestItems=request).get("UnprocessedItems") or None
    return prefix


def by_report(info: dict, labs_dir: Path, out: Path) -> tuple[float, int, int]:
    from labbatch.client.sdk import LabBatchClient
    from labbatch.lab.loader import load_one_lab
    from labbatch.client.report import costing, render, summary
    from labbatch.client.report.gather import gather

    creds = info["credentials"]
    began = time.perf_counter()
    client = LabBatchClient(info["api"], region=info["region"],
                            credentials=(creds["access_key_id"], creds["secret_access_key"]), timeout=120)
    found = gather(client, job_ids=[JOB_ID])
    read = time.perf_counter()
    lab, _ = load_one_lab(labs_dir, info["lab"])
    report = summary.build(found, costing.price_book(lab), lab_file="labs/example.yaml")
    out.write_text(render.render(report, title="bench"))
    elapsed = time.perf_counter() - began
    print(f"  report: {read - began:.2f} s reading ({found.requests} requests), {elapsed - (read - began):.2f} s "
          "summarizing and rendering", flush=True)
    return elapsed, found.bytes_read, len(report.samples)


def by_manifests(info: dict) -> tuple[float, int, int]:
    import boto3

    creds = info["credentials"]
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                      aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    bucket = info["buckets"]["results"]
    began = time.perf_counter()
    read, count = 0, 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"jobs/{JOB_ID}/"):
        for entry in page.get("Contents", []):
            if entry["Key"].endswith("/" + outcome.MANIFEST_NAME):
                body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                json.loads(body)
                read += len(body)
                count += 1
    return time.perf_counter() - began, read, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--summary", help="write bench/run's summary rows here")
    args = parser.parse_args()
    print(f"bench/report_scale.py: {machine_line()}", flush=True)
    summary = Summary("report")
    # The lab runs this checkout's handlers (the venv's `labbatch` may be another checkout's install).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="labbatch-bench-report-") as tmp:
        home, labs = Path(tmp) / "home", ROOT / "labs"
        home.mkdir()
        process, info, _ = start_local(labs, home)
        try:
            began = time.perf_counter()
            set_up(info, args.children)
            print(f"set-up: {args.children:,} children's manifests and ledger items in "
                  f"{time.perf_counter() - began:.0f} s", flush=True)
            report_times, manifest_times = [], []
            report_bytes = manifest_bytes = 0
            for repeat in range(args.repeats):
                seconds, report_bytes, samples = by_report(info, labs, Path(tmp) / "report.html")
                assert samples == args.children, f"the report has {samples} samples, not {args.children}"
                report_times.append(seconds)
                seconds, manifest_bytes, count = by_manifests(info)
                assert count == args.children, f"{count} manifests read, not {args.children}"
                manifest_times.append(seconds)
                print(f"repeat {repeat + 1}: report {report_times[-1]:.2f} s, manifests {manifest_times[-1]:.2f} s",
                      flush=True)
        finally:
            stop_local(process)
    time_ratio = median(report_times) / median(manifest_times)
    byte_ratio = report_bytes / manifest_bytes
    print(f"\n{'way':<10} {'seconds (median, range)':<28} {'bytes read':>14}")
    print(f"{'report':<10} {spread(report_times):<28} {report_bytes:>14,}")
    print(f"{'baseline':<10} {spread(manifest_times):<28} {manifest_bytes:>14,}")
    print(f"\nreport / baseline: time {time_ratio:.3f}x, bytes {byte_ratio:.2%} "
          f"(aim: under 10 s {verdict(median(report_times) < 10)}, under 1 % of the bytes {verdict(byte_ratio < 0.01)})")
    summary.add(f"report of {args.children:,} children", f"{median(report_times):.2f} s",
                f"every manifest {median(manifest_times):.2f} s", f"{time_ratio:.3f}x", "< 10 s",
                median(report_times) < 10)
    summary.add("bytes read by the report", f"{report_bytes:,} B", f"manifests {manifest_bytes:,} B",
                f"{byte_ratio:.2%}", "< 1 %", byte_ratio < 0.01)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
