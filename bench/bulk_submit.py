"""Bulk submission: 10,000 samples as one array job through the real handler, beside the naive
loop of one POST per sample.

    .venv/bin/python bench/bulk_submit.py [--samples 10000] [--naive 200] [--repeats 3]

In process against moto's `mock_aws` (the lab set up as tests/api_lab.py does, from
labs/example.yaml), with one input object per sample (a 1 KiB FASTQ each, put straight into
moto's S3 backend to keep set-up short). Counted on the handler's own clients with botocore
`before-call` hooks: API requests, Batch SubmitJob calls, ledger writes (PutItem, UpdateItem,
DeleteItem, BatchWriteItem, TransactWriteItems) and S3 calls. Timed: the whole handler call,
and inside it admission's HEAD phase (`object_sizes`, 32 threads) and each AWS call. moto's
Batch without Docker builds all 10,000 children inside SubmitJob (AWS does that
asynchronously), so SubmitJob's time is shown apart.

The naive loop is N single-sample POSTs (default 200) of the same samples, timed and
extrapolated linearly to all samples; it says so in its rows.

Goal (issue 7): one request, one Batch SubmitJob, under 2 s in process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labbatch.lab.api_limits import MAX_BODY_BYTES  # noqa: E402
from benchlib import Summary, machine_line, median, spread, verdict  # noqa: E402
from request_overhead import CallTimer, setup_environment, stdout_silenced  # noqa: E402

LEDGER_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class CallCounter:
    """Counts every API call the handler's clients make, by service.operation (before-call hook)."""

    def __init__(self, clients) -> None:
        self.counts: Counter[str] = Counter()
        for client in (clients.s3, clients.batch, clients.dynamodb):
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}", self._count)

    def _count(self, model, **_) -> None:
        self.counts[f"{model.service_model.service_id.hyphenize()}.{model.name}"] += 1

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def put_inputs(api_lab, uris: list[str]) -> None:
    try:  # fast path: moto's S3 backend directly
        from moto.s3.models import s3_backends

        backend = s3_backends[api_lab.ACCOUNT]["aws"]
        for uri in uris:
            bucket, key = uri[len("s3://"):].split("/", 1)
            backend.put_object(bucket, key, b"N" * 1024)
    except Exception as exc:  # noqa: BLE001 - moto's internals moved: go through the API
        print(f"(putting inputs through the S3 API: {exc!r})")
        lab = api_lab.Lab()
        for uri in uris:
            lab.put_input(uri)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=200, help="single-sample POSTs actually made, then extrapolated")
    parser.add_argument("--repeats", type=int, default=3, help="array submissions timed")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()

    setup_environment()
    import boto3
    from moto import mock_aws

    from tests import api_lab
    os.environ["LABBATCH_SETTINGS"] = json.dumps(api_lab.SETTINGS, separators=(",", ":"))
    from labbatch_api import admission
    from labbatch_api import handler as job_api
    uris = [f"s3://{api_lab.INPUTS_BUCKET}/runs/bulk/sample-{i:05d}.fastq.gz" for i in range(args.samples)]
    samples = [{"name": f"sample-{i:05d}", "inputs": [uri]} for i, uri in enumerate(uris)]
    body = {"pipeline": "fastq-stats", "inputs": [], "samples": samples}
    body_bytes = len(json.dumps(body).encode())
    print(f"bulk submission: {machine_line()}; {args.samples:,} samples, body {body_bytes:,} bytes "
          f"(handler limit {MAX_BODY_BYTES:,})", flush=True)

    with mock_aws(config={"batch": {"use_docker": False}}):
        boto3.DEFAULT_SESSION = api_lab.SESSION
        api_lab.create_lab_resources()
        job_api.runtime.cache_clear()
        began = time.perf_counter()
        put_inputs(api_lab, uris)
        print(f"set-up: {args.samples:,} input objects in {time.perf_counter() - began:.1f} s", flush=True)
        context = api_lab.FakeLambdaContext()

        def post(payload: dict) -> dict:
            answer = job_api.lambda_handler(api_lab.api_event("POST", "/jobs", payload), context)
            if answer["statusCode"] != 202:
                raise SystemExit(f"POST /jobs answered {answer['statusCode']}: {answer['body'][:2000]}")
            return json.loads(answer["body"])

        clients = job_api.runtime().clients
        counter = CallCounter(clients)
        timer = CallTimer()
        for service in ("s3", "batch", "dynamodb"):
            timer.wrap(getattr(clients, service), service)
        head_phase: list[float] = []
        inner_sizes = admission.object_sizes

        def timed_sizes(*a, **kw):
            t = time.perf_counter()
            try:
                return inner_sizes(*a, **kw)
            finally:
                head_phase.append(time.perf_counter() - t)

        admission.object_sizes = timed_sizes

        with stdout_silenced():
            post({"pipeline": "fastq-stats", "inputs": [uris[0]]})  # warm: clients, models
            counter.take(), timer.take(), head_phase.clear()

            # --- the naive loop: one POST per sample ---------------------------------
            naive_walls = []
            for sample in samples[: args.naive]:
                began = time.perf_counter()
                post({"pipeline": "fastq-stats", "inputs": sample["inputs"], "name": sample["name"]})
                naive_walls.append(time.perf_counter() - began)
            naive_counts = counter.take()
            timer.take(), head_phase.clear()

            # --- one array job --------------------------------------------------------
            walls, heads, submits, counts_per_run = [], [], [], []
            for _ in range(args.repeats):
                began = time.perf_counter()
                answer = post(body)
                walls.append(time.perf_counter() - began)
                counts_per_run.append(counter.take())
                calls = timer.take()
                submits.append(sum(s for name, s in calls if name == "batch.SubmitJob"))
                heads.append(head_phase.pop())
            array_size = answer.get("array_size")

            timer.take()
            api_calls = defaultdict(list)
            for name, seconds in calls:
                api_calls[name].append(seconds)

        boto3.DEFAULT_SESSION = None
        admission.object_sizes = inner_sizes

    counts = counts_per_run[-1]

    def ledger_writes(c: Counter) -> int:
        return sum(n for name, n in c.items() if name.split(".")[1] in LEDGER_WRITES)

    scale = args.samples / args.naive
    naive_total = sum(naive_walls) * scale
    array_wall = median(walls)
    print(f"\none array job, {args.repeats} submissions (array_size answered: {array_size})")
    print(f"  handler wall time            {spread(walls)}")
    print(f"    sizing the inputs          {spread(heads)}  ({counts['s3.ListObjectsV2']:,} LISTs, "
          f"{counts['s3.HeadObject']:,} HEADs)")
    print(f"    Batch SubmitJob (in moto)  {spread(submits)}  (moto builds the {args.samples:,} children inside the call)")
    print(f"    everything else            {median([w - h - s for w, h, s in zip(walls, heads, submits)]):.2f} s")
    print("  calls per submission: " + ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())))
    for name, values in sorted(api_calls.items()):
        print(f"    {name:<26} {len(values):>6,} calls, median {median(values) * 1000:7.2f} ms, sum {sum(values):6.2f} s")

    print(f"\n{'':<34} {'array job (measured)':>22} {f'naive loop ({args.naive} measured, x{scale:g})':>36} {'naive / array':>14}")
    rows = [
        ("API requests", 1, args.samples),
        ("Batch SubmitJob calls", counts["batch.SubmitJob"], naive_counts["batch.SubmitJob"] * scale),
        ("ledger writes (DynamoDB)", ledger_writes(counts), ledger_writes(naive_counts) * scale),
        ("S3 calls", sum(n for k, n in counts.items() if k.startswith("s3.")),
         sum(n for k, n in naive_counts.items() if k.startswith("s3.")) * scale),
    ]
    for name, array_value, naive_value in rows:
        print(f"{name:<34} {array_value:>22,} {naive_value:>36,.0f} {naive_value / max(array_value, 1):>13,.0f}x")
    print(f"{'handler time (s)':<34} {array_wall:>22.2f} {naive_total:>36.1f} {naive_total / array_wall:>13.1f}x")
    print(f"  (naive: {median(naive_walls) * 1000:.1f} ms median per POST over {args.naive} POSTs, "
          f"x {args.samples:,} samples; extrapolated, not run)")

    one_request, one_submit = True, counts["batch.SubmitJob"] == 1
    fast = array_wall < 2.0
    print(f"\ngoal: one request (yes), one SubmitJob ({'yes' if one_submit else 'no: ' + str(counts['batch.SubmitJob'])}), "
          f"< 2 s in process ({array_wall:.2f} s): {verdict(one_request and one_submit and fast)}")
    without_moto_submit = median([w - s for w, s in zip(walls, submits)])
    print(f"  without moto's SubmitJob (a single call in AWS): {without_moto_submit:.2f} s")

    summary = Summary("bulk submit")
    summary.add(f"{args.samples:,}-sample array: handler time", f"{array_wall:.2f} s",
                f"naive loop {naive_total:.0f} s (extrapolated from {args.naive})",
                f"{naive_total / array_wall:.0f}x faster", "< 2 s", fast)
    summary.add("  requests / SubmitJob / ledger writes", f"1 / {counts['batch.SubmitJob']} / {ledger_writes(counts)}",
                f"naive {args.samples:,} / {naive_counts['batch.SubmitJob'] * scale:,.0f} / "
                f"{ledger_writes(naive_counts) * scale:,.0f}", "", "1 / 1", one_submit)
    summary.add("  of which sizing the inputs", f"{median(heads):.2f} s",
                f"{counts['s3.ListObjectsV2']:,} LISTs, {counts['s3.HeadObject']:,} HEADs", "", "", None)
    summary.add("  without moto's SubmitJob (one call in AWS)", f"{without_moto_submit:.2f} s", "", "", "< 2 s",
                without_moto_submit < 2.0)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
