"""What a workflow engine's polling costs the lab: TES `GET tasks/{id}?view=MINIMAL` against the
job API's own `GET /jobs/{id}`, one request at a time and from 10 threads at once.

    .venv/bin/python bench/tes_poll.py [--rounds 250] [--threads 10] [--seconds 5]

Engines poll every task they submitted (Snakemake's TES executor up to 10 times a second per
workflow, from several threads; py-tes and nf-ga4gh alike) with `GET <tes>/v1/tasks/{id}?view=MINIMAL`,
so that route must stay cheap. One `labbatch local --no-containers` lab (started as
tests/e2e/conftest.py start_local does, on a labs dir whose example.yaml allows `labbatch-bwa:`
images for TES) answers every request; the client is this process, over loopback, one keep-alive
requests.Session per thread for every way, so the ways differ only in what the lab does:

- baseline   `GET /jobs/{id}` of a finished fastq-stats job, SigV4-signed per request with
             labbatch.client.sdk.sign_request (the signing time is in the figure, as a client pays it);
- MINIMAL    `GET /ga4gh/tes/v1/tasks/{id}?view=MINIMAL` with `Authorization: Bearer <tes_token>`;
- FULL       `GET /ga4gh/tes/v1/tasks/{id}?view=FULL` (reads the task's manifest from S3);
- alias      `GET /v1/tasks/{id}?view=MINIMAL`, the bare-URL route py-tes and nf-ga4gh are given;
- and, to show where MINIMAL's time beyond the baseline goes, the alias with a malformed token
  (refused before any read) and with a well-formed token the lab does not know (refused after
  the authorizer's consistent ledger read, which every TES request makes; SigV4 reads nothing).

The task is a TES task of executor image labbatch-bwa:local and command ["true"], finished (as is
the job) before timing starts, so that no job runs beside the measurement; MINIMAL reads the same
ledger record whatever the task's state. The ways are interleaved round by round; each way's
median, p99 and range are printed, with its ratio to the baseline's median as the median (and
range) of per-block ratios over blocks of 50 rounds. Then the throughput: `--threads` threads
each poll their own finished task with MINIMAL as fast as they can for `--seconds`, over
keep-alive connections (and, as its baseline, the same threads on signed `GET /jobs/{id}`), then
again through py-tes's own `get_task`, which Snakemake's TES executor calls and which opens a new
connection per request. Every answer that is not 200 is counted, as the client saw it and as the
lab logged it: an engine aborts the workflow on one. A benchmark, not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from benchlib import Summary, machine_line, median, percentile, ratio_spread  # noqa: E402

from labbatch.client.sdk import sign_request  # noqa: E402

TES_IMAGE = "labbatch-bwa:local"
FINAL_TASK_STATES = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}
BLOCK = 50  # rounds per block for the ratio's spread
SNAKEMAKE_POLLS_PER_SECOND = 10  # per workflow, at most


class Lab:
    """`labbatch local --no-containers` in a subprocess; both its pipes drained (stderr kept)."""

    def __init__(self, tmp: Path):
        import yaml

        labs = tmp / "labs"
        labs.mkdir()
        data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
        data["tes"] = {"allowed_images": ["labbatch-bwa:"]}
        (labs / "example.yaml").write_text(yaml.safe_dump(data))
        home = tmp / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["LABBATCH_HOME"] = str(home)
        labbatch = str(Path(sys.executable).parent / "labbatch")
        self.process = subprocess.Popen([labbatch, "local", "--labs-dir", str(labs), "--no-containers"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            raise SystemExit(f"bench: labbatch local exited {self.process.returncode} before it was ready:\n"
                             f"{self.process.stderr.read()[-3000:]}")
        self.info = json.loads(line)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        self._drain = threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True)
        self._drain.start()

    def answers(self, since: int) -> Counter:
        """The statuses of the requests the lab logged from stderr line `since` on."""
        time.sleep(0.3)  # its last lines through the pipe
        return Counter(int(line.split()[3]) for line in self.stderr[since:]
                       if line.startswith("api ") and len(line.split()) == 5 and line.split()[3].isdigit())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.join(timeout=10)


def tes_session(token: str):
    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return session


def finished_task(lab: Lab, session, timeout: float = 60) -> tuple[str, str]:
    """Creates a TES task (labbatch-bwa:local, `true`) and waits for it to end: (id, state)."""
    api = lab.info["api"]
    answer = session.post(f"{api}/ga4gh/tes/v1/tasks", json={
        "name": "bench-tes-poll", "executors": [{"image": TES_IMAGE, "command": ["true"]}]}, timeout=30)
    if answer.status_code != 200:
        raise SystemExit(f"bench: POST tasks answered {answer.status_code}: {answer.text[:500]}")
    task_id = answer.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = session.get(f"{api}/ga4gh/tes/v1/tasks/{task_id}", params={"view": "MINIMAL"}, timeout=30).json()["state"]
        if state in FINAL_TASK_STATES:
            return task_id, state
        time.sleep(0.2)
    raise SystemExit(f"bench: task {task_id} still {state} after {timeout:g} s")


def finished_job(lab: Lab) -> tuple[str, str]:
    """A fastq-stats job on a tiny FASTQ, waited for: (id, status)."""
    import boto3

    from labbatch.client.sdk import LabBatchClient

    info, creds = lab.info, lab.info["credentials"]
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                      aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    bucket = info["buckets"]["inputs"]
    s3.put_object(Bucket=bucket, Key="bench/reads.fastq", Body=b"@r1\nACGT\n+\nIIII\n")
    with LabBatchClient(info["api"], region=info["region"],
                        credentials=(creds["access_key_id"], creds["secret_access_key"])) as client:
        job_id = client.submit("fastq-stats", [f"s3://{bucket}/bench/reads.fastq"])["job_id"]
        record = client.wait([job_id], timeout=60, interval=0.2)[job_id]
    return job_id, record["status"]


def signed_getter(lab: Lab, session, job_id: str) -> Callable[[], object]:
    """GET /jobs/{id}, signed per request as LabBatchClient signs, sent on `session`."""
    from botocore.credentials import Credentials

    info, creds = lab.info, lab.info["credentials"]
    credentials = Credentials(creds["access_key_id"], creds["secret_access_key"])
    url = f"{info['api']}/jobs/{job_id}"

    def get():
        signed = sign_request(credentials, info["region"], "GET", url, {"Accept": "application/json"}, b"").prepare()
        return session.get(signed.url, headers=dict(signed.headers), timeout=30)

    return get


class Way(NamedTuple):
    short: str  # its name in bench/run's summary ("" leaves it out)
    call: Callable[[], object]
    status: int = 200  # the answer it must get


class _Ok:
    status_code, text = 200, ""


def pytes_getter(api: str, token: str, task_id: str) -> Callable[[], object]:
    """py-tes's own get_task, as Snakemake's TES executor polls: a new connection per request."""
    import requests
    import tes

    client = tes.HTTPClient(api, token=token, timeout=30)

    def get():
        try:
            client.get_task(task_id, view="MINIMAL")
        except requests.HTTPError as error:  # py-tes raises on the answers it does not take
            if error.response is None:
                raise
            return error.response
        return _Ok

    return get


def latency(ways: dict[str, Way], rounds: int) -> dict[str, list[float]]:
    """Each way once per round, in turn; raises on any answer but the way's own status."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(10):  # warm: connections, the handler's clients and caches
        for way in ways.values():
            way.call()
    for _ in range(rounds):
        for name, way in ways.items():
            began = time.perf_counter()
            answer = way.call()
            times[name].append(time.perf_counter() - began)
            if answer.status_code != way.status:
                raise SystemExit(f"bench: {name} answered {answer.status_code}: {answer.text[:500]}")
    return times


class Poller:
    """`threads` threads calling `make_call(i)()` as fast as they can for `seconds`."""

    def __init__(self, threads: int, seconds: float, make_call: Callable[[int], Callable[[], object]]):
        self.calls = [make_call(i) for i in range(threads)]
        self.seconds = seconds
        self.times: list[float] = []
        self.statuses: Counter = Counter()
        self.failures: list[str] = []  # the first few answers that were not 200, and errors
        self.rate = 0.0
        self.logged: Counter = Counter()  # the statuses the lab logged meanwhile
        self._lock = threading.Lock()

    def run(self) -> float:
        """Requests per second over the window (every request the threads started in it)."""
        for call in self.calls:  # warm each thread's connection
            call()
        start = threading.Barrier(len(self.calls) + 1)
        threads = [threading.Thread(target=self._poll, args=(call, start)) for call in self.calls]
        for thread in threads:
            thread.start()
        self.deadline = time.perf_counter() + self.seconds + 0.01
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        self.rate = len(self.times) / (time.perf_counter() - began)
        return self.rate

    def _poll(self, call: Callable[[], object], start: threading.Barrier) -> None:
        start.wait()
        times, statuses, failures = [], Counter(), []
        while time.perf_counter() < self.deadline:
            began = time.perf_counter()
            try:
                answer = call()
                status = answer.status_code
                if status != 200:
                    failures.append(f"{status}: {answer.text[:300]}")
            except Exception as error:  # an engine sees a failed poll either way
                status = "error"
                failures.append(f"{type(error).__name__}: {error}")
            times.append(time.perf_counter() - began)
            statuses[status] += 1
        with self._lock:
            self.times += times
            self.statuses.update(statuses)
            self.failures += failures[:5]

    @property
    def not_ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=250, help="sequential requests per way, interleaved")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the threads poll, per way")
    parser.add_argument("--summary", help="write bench/run's summary rows here")
    args = parser.parse_args()
    print(f"TES polling: {machine_line()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="labbatch-bench-tes-") as tmp:
        began = time.perf_counter()
        lab = Lab(Path(tmp))
        try:
            print(f"lab ready in {time.perf_counter() - began:.2f} s (executor {lab.info['executor']})", flush=True)
            token, api = lab.info["tes_token"], lab.info["api"]
            setup = tes_session(token)
            job_id, job_status = finished_job(lab)
            task_ids = [finished_task(lab, setup) for _ in range(args.threads)]
            task_id, task_state = task_ids[0]
            states = Counter(state for _, state in task_ids)
            print(f"job {job_id} {job_status}; {len(task_ids)} tasks "
                  f"({', '.join(f'{n} {s}' for s, n in states.items())})", flush=True)

            session = tes_session(token)
            # Where MINIMAL's time beyond the baseline goes: a malformed token is refused before any
            # read; a well-formed one the lab does not know after the authorizer's ledger read.
            malformed, stranger = tes_session("malformed"), tes_session("lbt_0000000000000000_" + "x" * 43)
            ways = {
                "baseline: signed GET /jobs/{id}": Way("signed GET /jobs/{id}", signed_getter(lab, session, job_id)),
                "TES MINIMAL /ga4gh/tes/v1/tasks/{id}": Way("TES MINIMAL", lambda: session.get(
                    f"{api}/ga4gh/tes/v1/tasks/{task_id}?view=MINIMAL", timeout=30)),
                "TES FULL (manifest read)": Way("TES FULL", lambda: session.get(
                    f"{api}/ga4gh/tes/v1/tasks/{task_id}?view=FULL", timeout=30)),
                "TES MINIMAL /v1/tasks/{id} (alias)": Way("TES MINIMAL, /v1 alias", lambda: session.get(
                    f"{api}/v1/tasks/{task_id}?view=MINIMAL", timeout=30)),
                "  403, malformed token (no read)": Way("", lambda: malformed.get(
                    f"{api}/v1/tasks/{task_id}?view=MINIMAL", timeout=30), 403),
                "  403, unknown token (its ledger read)": Way("", lambda: stranger.get(
                    f"{api}/v1/tasks/{task_id}?view=MINIMAL", timeout=30), 403),
            }
            times = latency(ways, args.rounds)

            def baseline_call(i: int) -> Callable[[], object]:
                return signed_getter(lab, tes_session(token), job_id)

            def minimal_call(i: int) -> Callable[[], object]:
                own, tid = tes_session(token), task_ids[i % len(task_ids)][0]
                return lambda: own.get(f"{api}/v1/tasks/{tid}?view=MINIMAL", timeout=30)

            pollers = {"baseline: signed GET /jobs/{id}": Poller(args.threads, args.seconds, baseline_call),
                       "TES MINIMAL /v1/tasks/{id}": Poller(args.threads, args.seconds, minimal_call),
                       "TES MINIMAL through py-tes": Poller(args.threads, args.seconds, lambda i: pytes_getter(
                           api, token, task_ids[i % len(task_ids)][0]))}
            for poller in pollers.values():
                since = len(lab.stderr)
                poller.run()
                poller.logged = lab.answers(since)
        finally:
            lab.stop()
    handler_failures = sum("api handler failed" in line for line in lab.stderr)

    summary = Summary("tes poll")
    names = list(times)
    base = times[names[0]]
    starts = list(range(0, args.rounds - BLOCK // 2, BLOCK)) or [0]  # the last block takes the remainder
    blocks = [slice(a, b) for a, b in zip(starts, [*starts[1:], args.rounds])]
    print(f"\none request at a time, {args.rounds} per way, interleaved (ms; ratio: per-block median / baseline's, "
          f"{len(blocks)} blocks of {BLOCK})")
    print(f"{'':<40} {'median':>7} {'p99':>7} {'min':>6} {'max':>7}   vs baseline")
    for name in names:
        values = times[name]
        ratio = "" if name == names[0] else ratio_spread(
            [median(values[b]) / median(base[b]) for b in blocks])
        print(f"{name:<40} {median(values) * 1000:7.2f} {percentile(values, 0.99) * 1000:7.2f} "
              f"{min(values) * 1000:6.2f} {max(values) * 1000:7.2f}   {ratio}")
        if not ways[name].short:
            continue
        summary.add(f"{ways[name].short} (median)", f"{median(values) * 1000:.1f} ms",
                    "" if name == names[0] else f"GET /jobs/{{id}} {median(base) * 1000:.1f} ms",
                    ratio.split(" ")[0] if ratio else "")

    minimal = times[names[1]]
    token_read = median(times[names[5]]) - median(times[names[4]])
    print(f"MINIMAL beyond the baseline: {(median(minimal) - median(base)) * 1000:.2f} ms; the TES token check's "
          f"ledger read (unknown - malformed token): {token_read * 1000:.2f} ms")
    print(f"\n{args.threads} threads polling as fast as they can for {args.seconds:g} s each; each thread its own "
          f"{'task' if len(task_ids) >= args.threads else 'task of ' + str(len(task_ids))}, over a keep-alive "
          "connection (py-tes: a new one per request)")
    for label, poll in pollers.items():
        slow = sum(1 for t in poll.times if t > 1)
        logged_bad = sum(n for status, n in poll.logged.items() if status != 200)
        print(f"  {label:<34} {poll.rate:6.1f} requests/s; latency median {median(poll.times) * 1000:.0f} ms, "
              f"p99 {percentile(poll.times, 0.99) * 1000:.0f} ms, max {max(poll.times) * 1000:.0f} ms ({slow} over 1 s); "
              f"{len(poll.times)} requests, {poll.not_ok} not 200 "
              f"({', '.join(f'{s}: {n}' for s, n in sorted(poll.statuses.items(), key=str))}); "
              f"the lab logged {sum(poll.logged.values())}, {logged_bad} not 200")
        for failure in poll.failures[:10]:
            print(f"    not 200: {failure}")
    base_rate, tes_poll = pollers["baseline: signed GET /jobs/{id}"].rate, pollers["TES MINIMAL /v1/tasks/{id}"]
    tes_rate, pytes = tes_poll.rate, pollers["TES MINIMAL through py-tes"]
    print(f"  TES / baseline throughput: {tes_rate / base_rate:.2f}x; TES with {args.threads} threads / one at a time "
          f"(1 / MINIMAL's median above, {1 / median(minimal):.1f}/s): {tes_rate * median(minimal):.2f}x; "
          f"py-tes / keep-alive: {pytes.rate / tes_rate:.2f}x")
    print(f"  in local mode that is about {tes_rate / SNAKEMAKE_POLLS_PER_SECOND:.0f} Snakemake workflows polling at "
          f"their most ({SNAKEMAKE_POLLS_PER_SECOND}/s each) before polls queue")
    if handler_failures:
        print(f"  the lab logged {handler_failures} handler failure(s) (502s): see its stderr")
    seen = sum(p.not_ok for p in pollers.values())
    logged = sum(n for p in pollers.values() for status, n in p.logged.items() if status != 200)
    summary.add(f"TES MINIMAL, {args.threads} threads", f"{tes_rate:.0f} req/s",
                f"GET /jobs/{{id}} {base_rate:.0f} req/s", f"{tes_rate / base_rate:.2f}x")
    summary.add(f"  through py-tes, {args.threads} threads", f"{pytes.rate:.0f} req/s, {pytes.not_ok} not 200",
                f"keep-alive {tes_rate:.0f} req/s", f"{pytes.rate / tes_rate:.2f}x")
    summary.add("  answers not 200 under polling", f"{seen} seen, {logged} logged", "", "", "none",
                seen == 0 and logged == 0)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
