"""Request overhead: a warm POST /jobs through the real handler against a direct boto3 SubmitJob,
and the signed round trip through local mode.

    .venv/bin/python bench/request_overhead.py [--requests 500] [--local-requests 300] [--local-starts 3]

Part 1, in process: moto's `mock_aws` holds the lab (buckets, ledger table, queues and job
definitions set up as tests/api_lab.py does, from labs/example.yaml), and the handler is
called with API Gateway proxy events, warm (its clients built, a few requests already served).
The baseline is the same SubmitJob request the handler sent (captured from it), made directly
on the handler's own Batch client against the same moto: the one call a submission cannot do
without. Handler and baseline samples are interleaved. The handler's AWS calls are timed one by
one (botocore + moto), so the rest is the handler's own code: validation, models, logging.
Powertools logs at INFO as deployed; its output goes to /dev/null while timing. moto's Batch
without Docker marks jobs SUCCEEDED on submission, which does not matter for this timing.

Part 2, local mode: `labbatch local` in a subprocess on a free port (the way a user runs it),
with the example lab plus a `hold` pipeline (`sleep 600`, 2 vCPUs): one hold job runs and
every measured job waits RUNNABLE behind it, so the two cores measure the API rather than
jobs running beside it. Ready time is the wall time from starting the process to its JSON
line (and the `ready_seconds` it prints); the round trip is `LabBatchClient.submit` (SigV4
signing, HTTP, the API Gateway front, the handler, the local Batch endpoint and moto).

Goals: handler <= 3x the direct SubmitJob (issue 7); local mode ready < 5 s and a signed
POST /jobs < 50 ms at the median (issue 11).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, Summary, machine_line, median, percentile, verdict  # noqa: E402

HOLD_PIPELINE = {"image": "demo", "command": ["sleep", "600"], "vcpus": 2, "memory_mib": 1024, "attempts": 1,
                 "description": "bench: holds the executor so measured jobs wait RUNNABLE"}


@contextlib.contextmanager
def stdout_silenced() -> Iterator[None]:
    """Send fd 1 to /dev/null (Powertools' JSON log lines), restoring it afterwards."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class CallTimer:
    """Wall time and count of every API call a botocore client makes (wraps _make_api_call)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def wrap(self, client: Any, service: str) -> None:
        inner = client._make_api_call

        def timed(operation_name: str, api_params: dict) -> Any:
            began = time.perf_counter()
            try:
                return inner(operation_name, api_params)
            finally:
                self.calls.append((f"{service}.{operation_name}", time.perf_counter() - began))

        client._make_api_call = timed

    def take(self) -> list[tuple[str, float]]:
        calls, self.calls = self.calls, []
        return calls


def setup_environment() -> None:
    for name in list(os.environ):
        if name.startswith("AWS_") or name in ("POWERTOOLS_IDEMPOTENCY_DISABLED",):
            del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="1", POWERTOOLS_LOG_LEVEL="INFO",
                      POWERTOOLS_SERVICE_NAME="labbatch-api")
    for path in (ROOT, ROOT / "lambda"):
        sys.path.insert(0, str(path))


def in_process(requests: int, summary: Summary) -> float:
    """Returns the handler's median seconds per POST (part 2's baseline)."""
    setup_environment()
    import boto3
    from moto import mock_aws

    from tests import api_lab  # the lab's resources and the API Gateway event, as the tests build them

    os.environ["LABBATCH_SETTINGS"] = json.dumps(api_lab.SETTINGS, separators=(",", ":"))
    from labbatch_api import handler as job_api
    body = {"pipeline": "fastq-stats", "inputs": [api_lab.READS]}
    with mock_aws(config={"batch": {"use_docker": False}}):
        boto3.DEFAULT_SESSION = api_lab.SESSION
        api_lab.create_lab_resources()
        job_api.runtime.cache_clear()
        api_lab.Lab().put_input(api_lab.READS)
        context = api_lab.FakeLambdaContext()

        def post(headers: dict | None = None) -> dict:
            answer = job_api.lambda_handler(api_lab.api_event("POST", "/jobs", body, headers=headers), context)
            if answer["statusCode"] != 202:
                raise SystemExit(f"POST /jobs answered {answer['statusCode']}: {answer['body']}")
            return answer

        clients = job_api.runtime().clients
        sent: list[dict] = []
        clients.batch.meta.events.register("provide-client-params.batch.SubmitJob",
                                           lambda params, **_: sent.append(dict(params)))
        with stdout_silenced():
            post()
        submit_request = sent[0]
        timer = CallTimer()
        for service in ("s3", "batch", "dynamodb"):
            timer.wrap(getattr(clients, service), service)

        handler, handler_keyed, direct, per_call = [], [], [], defaultdict(list)
        aws_share, own = [], []
        with stdout_silenced():
            for i in range(20):  # warm: the clients' connection pools, pydantic's caches
                post()
                post({"Idempotency-Key": f"warm-{i}"})
                clients.batch.submit_job(**submit_request)
            timer.take()
            for i in range(requests):
                began = time.perf_counter()
                post()
                elapsed = time.perf_counter() - began
                calls = timer.take()
                handler.append(elapsed)
                in_aws = sum(seconds for _, seconds in calls)
                aws_share.append(in_aws)
                own.append(elapsed - in_aws)
                for name, seconds in calls:
                    per_call[name].append(seconds)

                began = time.perf_counter()
                clients.batch.submit_job(**submit_request)
                direct.append(time.perf_counter() - began)
                timer.take()

                began = time.perf_counter()
                post({"Idempotency-Key": f"bench-{i}"})
                handler_keyed.append(time.perf_counter() - began)
                timer.take()
        boto3.DEFAULT_SESSION = None

    def row(name: str, values: list[float], base: list[float] | None) -> str:
        ratio = f"{median(values) / median(base):6.2f}x {percentile(values, 0.99) / percentile(base, 0.99):6.2f}x" if base else ""
        return (f"{name:<44} {median(values) * 1000:8.2f} {percentile(values, 0.99) * 1000:8.2f} "
                f"{min(values) * 1000:7.2f} {max(values) * 1000:8.2f}   {ratio}")

    print(f"\nin process, warm, moto mock_aws; {requests} requests each, interleaved (ms)")
    print(f"{'':<44} {'median':>8} {'p99':>8} {'min':>7} {'max':>8}   {'vs direct: median p99':>21}")
    print(row("direct boto3 batch.submit_job (baseline)", direct, None))
    print(row("POST /jobs through the handler", handler, direct))
    print(row("POST /jobs with an Idempotency-Key", handler_keyed, direct))
    print(row("  of which the handler's AWS calls", aws_share, direct))
    print(row("  of which the handler's own code", own, direct))
    calls_per_request = sum(len(v) for v in per_call.values()) / requests
    print(f"\nAWS calls per POST (without a key): {calls_per_request:g}")
    for name, values in sorted(per_call.items()):
        print(f"  {name:<30} {len(values) / requests:4g} per request, median {median(values) * 1000:6.2f} ms")

    r = median(handler) / median(direct)
    print(f"\nhandler / direct SubmitJob: {r:.2f}x at the median, "
          f"{percentile(handler, 0.99) / percentile(direct, 0.99):.2f}x at p99; goal <= 3x: {verdict(r <= 3)}")
    summary.add("POST /jobs in process (median)", f"{median(handler) * 1000:.1f} ms",
                f"direct SubmitJob {median(direct) * 1000:.1f} ms", f"{r:.2f}x", "<= 3x", r <= 3)
    rp = percentile(handler, 0.99) / percentile(direct, 0.99)
    summary.add("POST /jobs in process (p99)", f"{percentile(handler, 0.99) * 1000:.1f} ms",
                f"direct SubmitJob {percentile(direct, 0.99) * 1000:.1f} ms", f"{rp:.2f}x", "", None)
    summary.add("  handler's own code (median)", f"{median(own) * 1000:.1f} ms",
                f"its {calls_per_request:g} AWS calls {median(aws_share) * 1000:.1f} ms", "", "", None)
    return median(handler)


# What-if: the server side of the proposed fix (TCP_NODELAY on the local API front's sockets,
# as labbatch/local/batch/http_server.py already sets on its own), applied at start-up.
NODELAY_LAUNCHER = """\
import sys
import labbatch.local.apigateway.http_front as front
front.ProxyRequestHandler.disable_nagle_algorithm = True
from labbatch.client.cli import main
sys.argv = ["labbatch"] + sys.argv[1:]
sys.exit(main())
"""


def start_local(labs_dir: Path, home: Path, *, nodelay: bool = False) -> tuple[subprocess.Popen, dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "LABBATCH_"))}
    env["LABBATCH_HOME"] = str(home)
    command = ([str(ROOT / ".venv" / "bin" / "python"), "-c", NODELAY_LAUNCHER] if nodelay
               else [str(ROOT / ".venv" / "bin" / "labbatch")])
    began = time.perf_counter()
    # The host executor: this measures the request path, not a container engine's start-up (nor
    # the one-time extraction of the runner image into a fresh LABBATCH_HOME).
    process = subprocess.Popen([*command, "local", "--labs-dir", str(labs_dir), "--no-containers"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env, cwd=home)
    line = process.stdout.readline()
    wall = time.perf_counter() - began
    if not line:
        process.wait(timeout=30)
        raise SystemExit(f"labbatch local exited {process.returncode} before it was ready")
    # Keep reading what else it writes to stdout, or a full pipe would stall it.
    extra_lines = [0]

    def drain() -> None:
        for _ in process.stdout:
            extra_lines[0] += 1

    threading.Thread(target=drain, daemon=True).start()
    process.extra_stdout_lines = extra_lines  # type: ignore[attr-defined]
    return process, json.loads(line), wall


def stop_local(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def round_trips(info: dict, requests: int, *, nodelay: bool) -> tuple[list[float], list[float], str]:
    """Signed POST /jobs and GET /jobs/{id} times against a running local lab."""
    import boto3
    from botocore.httpsession import URLLib3Session

    from labbatch.client.sdk import LabBatchClient

    creds = info["credentials"]
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                      aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    bucket = info["buckets"]["inputs"]
    s3.put_object(Bucket=bucket, Key="bench/reads.fastq", Body=b"@r1\nACGT\n+\nIIII\n")
    uri = f"s3://{bucket}/bench/reads.fastq"
    client = LabBatchClient(info["api"], region=info["region"],
                            credentials=(creds["access_key_id"], creds["secret_access_key"]))
    if nodelay:
        # What-if, client side: the socket option botocore's own clients set (botocore/args.py)
        # and a bare URLLib3Session leaves out.
        client._http.close()
        client._http = URLLib3Session(timeout=30, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    first = client.submit("hold", [uri])
    deadline = time.monotonic() + 30
    while client.get(first["job_id"])["status"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(20):  # warm
        client.submit("hold", [uri])
    posts, gets = [], []
    for _ in range(requests):
        began = time.perf_counter()
        job = client.submit("hold", [uri])
        posts.append(time.perf_counter() - began)
        began = time.perf_counter()
        client.get(job["job_id"])
        gets.append(time.perf_counter() - began)
    held = client.get(first["job_id"])["status"]
    client.close()
    return posts, gets, held


def local_mode(requests: int, starts: int, handler_median: float | None, what_if: bool, summary: Summary) -> None:
    import yaml

    with tempfile.TemporaryDirectory(prefix="labbatch-bench-local-") as tmp:
        labs_dir = Path(tmp) / "labs"
        labs_dir.mkdir()
        data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
        data["pipelines"]["hold"] = HOLD_PIPELINE
        (labs_dir / "example.yaml").write_text(yaml.safe_dump(data))

        walls, readies = [], []
        for i in range(starts):
            home = Path(tmp) / f"home{i}"
            home.mkdir()
            process, info, wall = start_local(labs_dir, home)
            walls.append(wall)
            readies.append(float(info["ready_seconds"]))
            if i < starts - 1:
                stop_local(process)
        try:
            posts, gets, held = round_trips(info, requests, nodelay=False)
        finally:
            stop_local(process)
        extra_stdout = process.extra_stdout_lines[0]
        if what_if:
            home = Path(tmp) / "home-nodelay"
            home.mkdir()
            process, info, _ = start_local(labs_dir, home, nodelay=True)
            try:
                fixed_posts, fixed_gets, _ = round_trips(info, requests, nodelay=True)
            finally:
                stop_local(process)

    def line(name: str, values: list[float]) -> str:
        return (f"  {name:<58} median {median(values) * 1000:6.1f} ms, p99 {percentile(values, 0.99) * 1000:6.1f} ms, "
                f"range {min(values) * 1000:.1f}-{max(values) * 1000:.1f} ms")

    print(f"\nlocal mode (`labbatch local` subprocess, {starts} starts; {requests} signed requests, client in this process)")
    print(f"  ready: wall {median(walls):.2f} s ({min(walls):.2f}-{max(walls):.2f}) from exec to the JSON line; "
          f"ready_seconds {median(readies):.2f} s ({min(readies):.2f}-{max(readies):.2f}); goal < 5 s: "
          f"{verdict(median(walls) < 5)}")
    print(line("signed POST /jobs, as shipped", posts) + f"; goal < 50 ms: {verdict(median(posts) < 0.05)}")
    print(line("signed GET /jobs/{id}, as shipped", gets))
    if what_if:
        print(line("signed POST /jobs, with TCP_NODELAY both ends (what-if)", fixed_posts))
        print(line("signed GET /jobs/{id}, with TCP_NODELAY both ends (what-if)", fixed_gets))
    print(f"  (the holding job was {held} at the end; measured jobs waited RUNNABLE behind it)")
    if extra_stdout:
        print(f"  note: after its JSON line, `labbatch local` wrote {extra_stdout} more lines to stdout "
              "(the handlers' Powertools logs); a caller that reads only the first line must drain the pipe")
    baseline = f"handler in process {handler_median * 1000:.1f} ms" if handler_median else ""
    ratio = f"{median(posts) / handler_median:.2f}x" if handler_median else ""
    if handler_median:
        print(f"  round trip / in-process handler (part 1): {ratio}")
    summary.add("local mode ready (wall)", f"{median(walls):.2f} s", f"ready_seconds {median(readies):.2f} s", "",
                "< 5 s", median(walls) < 5)
    summary.add("local signed POST /jobs (median)", f"{median(posts) * 1000:.1f} ms", baseline, ratio,
                "< 50 ms", median(posts) < 0.05)
    summary.add("local signed POST /jobs (p99)", f"{percentile(posts, 0.99) * 1000:.1f} ms", "", "", "", None)
    if what_if:
        summary.add("  what-if: TCP_NODELAY both ends", f"{median(fixed_posts) * 1000:.1f} ms",
                    f"p99 {percentile(fixed_posts, 0.99) * 1000:.1f} ms", "", "(forced; shipped since)", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="in-process requests per variant (>= 500)")
    parser.add_argument("--local-requests", type=int, default=300)
    parser.add_argument("--local-starts", type=int, default=3)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--what-if", action="store_true",
                        help="also a local run that forces TCP_NODELAY at start-up (shipped since; for comparison)")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(f"request overhead: {machine_line()}", flush=True)
    summary = Summary("request overhead")
    handler_median = in_process(args.requests, summary)
    if not args.skip_local:
        local_mode(args.local_requests, args.local_starts, handler_median, args.what_if, summary)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
