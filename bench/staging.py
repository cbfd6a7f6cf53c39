"""Stage-in and stage-out throughput: the runner's engines against `aws s3 cp --recursive`.

    .venv/bin/python bench/staging.py [--repeats 3]

Everything runs against a moto S3 server in its own process on loopback, so that no client
shares a GIL with the server. The runner is measured through its real `stage_in` (HEAD of
every object, free-space check, download, size and checksum verification) and `stage_out`
(upload, sha256 of every output, listing to verify), with each transfer engine; `aws s3 cp`
moves the same objects with its defaults. awscli pins its own botocore, so it lives in a
throwaway virtualenv under /tmp (created on first use from PyPI). Prints medians and the
ratio time(aws s3 cp) / time(contender): above 1 means faster than `aws s3 cp`.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "containers" / "runner"))

AWSCLI_VERSION = "1.46.3"
AWSCLI_VENV = Path(tempfile.gettempdir()) / "labbatch-bench-awscli"
BUCKET = "bench"
KIB, MIB = 1 << 10, 1 << 20


def ensure_awscli(venv_dir: Path) -> Path:
    aws = venv_dir / "bin" / "aws"
    if not aws.exists():
        print(f"installing awscli=={AWSCLI_VERSION} into {venv_dir} ...", flush=True)
        venv.create(venv_dir, with_pip=True)
        subprocess.run([str(venv_dir / "bin" / "pip"), "install", "-q", f"awscli=={AWSCLI_VERSION}"], check=True)
    return aws


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait()


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=20)
    parser.add_argument("--large-count", type=int, default=2)
    parser.add_argument("--large-mib", type=int, default=50)
    parser.add_argument("--awscli-venv", type=Path, default=AWSCLI_VENV)
    args = parser.parse_args()

    aws = ensure_awscli(args.awscli_venv)
    with moto_server() as endpoint:
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        run_benchmark(args, aws, endpoint)


def run_benchmark(args: argparse.Namespace, aws: Path, endpoint: str) -> None:
    from labbatch_runner import scratch
    from labbatch_runner.runlog import RunnerLog
    from labbatch_runner.s3client import make_s3_client
    from labbatch_runner.s3uri import S3Uri
    from labbatch_runner.staging import PlannedInput, stage_in, stage_out
    from labbatch_runner.transfer import Boto3Engine, S5cmdEngine

    s3 = make_s3_client()
    s3.create_bucket(Bucket=BUCKET)
    quiet = RunnerLog(stream=io.StringIO())
    engines = {"runner/s5cmd": S5cmdEngine(endpoint), "runner/boto3": Boto3Engine(s3)}
    aws_version = subprocess.run([str(aws), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"moto S3 at {endpoint}; {aws_version}; {os.cpu_count()} CPUs; median of {args.repeats}")

    work = Path(tempfile.mkdtemp(prefix="labbatch-bench-"))
    shapes = {
        f"{args.small_count} x {args.small_kib} KiB": (args.small_count, args.small_kib * KIB),
        f"{args.large_count} x {args.large_mib} MiB": (args.large_count, args.large_mib * MIB),
    }
    rows = []
    try:
        for shape_index, (shape, (count, size)) in enumerate(shapes.items()):
            source_dir = work / f"source-{shape_index}"
            source_dir.mkdir()
            for i in range(count):
                (source_dir / f"file-{i:04d}.bin").write_bytes(os.urandom(size))
            prefix = f"data-{shape_index}/"
            subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", str(source_dir), f"s3://{BUCKET}/{prefix}"], check=True)
            uris = [S3Uri(BUCKET, f"{prefix}file-{i:04d}.bin") for i in range(count)]
            total = count * size

            def aws_in(target: Path) -> None:
                subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", f"s3://{BUCKET}/{prefix}", str(target)], check=True)

            def runner_in(engine: object) -> Callable[[Path], None]:
                def stage(target: Path) -> None:
                    planned = [PlannedInput(uri, scratch.local_input_path(target, uri), ("inputs",)) for uri in uris]
                    stage_in(s3, engine, planned, target, free_bytes=scratch.free_bytes, log=quiet)
                return stage

            def aws_out(run: int) -> None:
                subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", str(source_dir), f"s3://{BUCKET}/out-aws-{shape_index}-{run}/"], check=True)

            def runner_out(engine: object, name: str) -> Callable[[int], None]:
                def stage(run: int) -> None:
                    stage_out(s3, engine, source_dir, S3Uri(BUCKET, f"out-{name}-{shape_index}-{run}/"), log=quiet)
                return stage

            stage_ins = {"aws s3 cp": aws_in, **{name: runner_in(engine) for name, engine in engines.items()}}
            stage_outs = {"aws s3 cp": aws_out, **{name: runner_out(engine, name.replace("/", "-")) for name, engine in engines.items()}}
            times: dict[tuple[str, str], list[float]] = {}
            for run in range(args.repeats):
                # Rotate the order so that no contender always goes first (cold) or last.
                names = list(stage_ins)[run % len(stage_ins):] + list(stage_ins)[: run % len(stage_ins)]
                for name in names:
                    target = work / f"in-{run}-{name.replace('/', '-').replace(' ', '-')}"
                    target.mkdir()
                    times.setdefault(("stage in", name), []).append(_timed(lambda: stage_ins[name](target)))
                    shutil.rmtree(target)
                for name in names:
                    times.setdefault(("stage out", name), []).append(_timed(lambda: stage_outs[name](run)))
            for direction in ("stage in", "stage out"):
                baseline = statistics.median(times[(direction, "aws s3 cp")])
                for name in stage_ins:
                    seconds = statistics.median(times[(direction, name)])
                    rows.append((direction, shape, name, seconds, total / seconds / MIB, baseline / seconds))
            shutil.rmtree(source_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'direction':<10} {'shape':<16} {'contender':<14} {'seconds':>8} {'MiB/s':>8} {'vs aws s3 cp':>13}")
    for direction, shape, name, seconds, rate, ratio in rows:
        print(f"{direction:<10} {shape:<16} {name:<14} {seconds:>8.2f} {rate:>8.1f} {ratio:>12.2f}x")


if __name__ == "__main__":
    main()
