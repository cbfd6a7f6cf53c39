"""Stage-in and stage-out throughput: the runner against `aws s3 cp --recursive`.

    .venv/bin/python bench/staging.py [--repeats 5]

Everything runs against a moto S3 server in its own process on loopback, so that no client
shares a GIL with the server. The runner is measured through its real `stage_in` (sizing by
LIST and HEAD, free-space check, download, size and checksum verification) and `stage_out`
(upload, sha256 of every output, listing to verify); `aws s3 cp` moves the same objects with
its defaults. awscli pins its own botocore, so it lives in a throwaway virtualenv under /tmp
(created on first use from PyPI).

Stage-in contenders: `runner` as it ships (plain GETs below `smallget.SMALL_OBJECT_BYTES`,
s5cmd at or above), and the same code with every object forced through one path, which is
what places the threshold. The `engine` column says which path moved how many objects.
Prints the median seconds over the repeats with their range, and time(aws s3 cp) /
time(contender) per repeat (median and range): above 1 means faster than `aws s3 cp`.
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
from collections import Counter
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
    parser.add_argument("--medium-count", type=int, default=16)
    parser.add_argument("--medium-mib", type=int, default=4)
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
    from labbatch_runner.smallget import SMALL_OBJECT_BYTES
    from labbatch_runner.staging import PlannedInput, stage_in, stage_out
    from labbatch_runner.transfer import Boto3Engine, S5cmdEngine

    s3 = make_s3_client()
    s3.create_bucket(Bucket=BUCKET)
    quiet = RunnerLog(stream=io.StringIO())
    s5cmd = S5cmdEngine(endpoint)
    # name -> (engine, small_object_bytes)
    in_contenders = {
        "runner": (s5cmd, SMALL_OBJECT_BYTES),
        "runner/all GET": (s5cmd, 1 << 62),
        "runner/all s5cmd": (s5cmd, 0),
    }
    out_contenders = {"runner/s5cmd": s5cmd, "runner/boto3": Boto3Engine(s3)}
    aws_version = subprocess.run([str(aws), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"moto S3 at {endpoint}; {aws_version}; {os.cpu_count()} CPUs; {args.repeats} repeats; "
          f"runner GETs objects below {SMALL_OBJECT_BYTES / MIB:g} MiB")

    work = Path(tempfile.mkdtemp(prefix="labbatch-bench-"))
    shapes = {
        f"{args.small_count} x {args.small_kib} KiB": (args.small_count, args.small_kib * KIB),
        f"{args.medium_count} x {args.medium_mib} MiB": (args.medium_count, args.medium_mib * MIB),
        f"{args.large_count} x {args.large_mib} MiB": (args.large_count, args.large_mib * MIB),
    }
    rows = []
    try:
        for shape_index, (shape, (count, size)) in enumerate(shapes.items()):
            if count == 0:
                continue
            source_dir = work / f"source-{shape_index}"
            source_dir.mkdir()
            for i in range(count):
                (source_dir / f"file-{i:04d}.bin").write_bytes(os.urandom(size))
            prefix = f"data-{shape_index}/"
            subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", str(source_dir), f"s3://{BUCKET}/{prefix}"], check=True)
            uris = [S3Uri(BUCKET, f"{prefix}file-{i:04d}.bin") for i in range(count)]
            total = count * size
            engines_used: dict[str, str] = {}

            def aws_in(target: Path) -> None:
                subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", f"s3://{BUCKET}/{prefix}", str(target)], check=True)

            def runner_in(name: str, engine: object, small_object_bytes: int) -> Callable[[Path], None]:
                def stage(target: Path) -> None:
                    planned = [PlannedInput(uri, scratch.local_input_path(target, uri), ("inputs",)) for uri in uris]
                    staged = stage_in(s3, engine, planned, target, free_bytes=scratch.free_bytes, log=quiet,
                                      small_object_bytes=small_object_bytes)
                    used = Counter(item.engine for item in staged)
                    engines_used[name] = " + ".join(f"{engine} x{n}" for engine, n in sorted(used.items()))
                return stage

            def aws_out(run: int) -> None:
                subprocess.run([str(aws), "s3", "cp", "--recursive", "--quiet", str(source_dir), f"s3://{BUCKET}/out-aws-{shape_index}-{run}/"], check=True)

            def runner_out(engine: object, name: str) -> Callable[[int], None]:
                def stage(run: int) -> None:
                    stage_out(s3, engine, source_dir, S3Uri(BUCKET, f"out-{name}-{shape_index}-{run}/"), log=quiet)
                return stage

            stage_ins = {"aws s3 cp": aws_in, **{name: runner_in(name, *spec) for name, spec in in_contenders.items()}}
            stage_outs = {"aws s3 cp": aws_out, **{name: runner_out(engine, name.replace("/", "-")) for name, engine in out_contenders.items()}}
            for name, engine in out_contenders.items():
                engines_used[f"out {name}"] = f"{engine.name} x{count}"
            times: dict[tuple[str, str], list[float]] = {}
            for run in range(args.repeats):
                # Rotate the order so that no contender always goes first (cold) or last.
                names = _rotated(list(stage_ins), run)
                for name in names:
                    target = work / f"in-{run}-{name.replace('/', '-').replace(' ', '-')}"
                    target.mkdir()
                    times.setdefault(("stage in", name), []).append(_timed(lambda: stage_ins[name](target)))
                    shutil.rmtree(target)
                for name in _rotated(list(stage_outs), run):
                    times.setdefault(("stage out", name), []).append(_timed(lambda: stage_outs[name](run)))
            for direction, contenders in (("stage in", stage_ins), ("stage out", stage_outs)):
                baseline = times[(direction, "aws s3 cp")]
                for name in contenders:
                    seconds = times[(direction, name)]
                    # Paired per repeat: both ran moments apart, under the same load.
                    ratios = [aws_seconds / own for aws_seconds, own in zip(baseline, seconds)]
                    engine = "awscli" if name == "aws s3 cp" else engines_used[name if direction == "stage in" else f"out {name}"]
                    rows.append((direction, shape, name, engine, seconds, total / statistics.median(seconds) / MIB, ratios))
            shutil.rmtree(source_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'direction':<10} {'shape':<15} {'contender':<17} {'engine':<11} {'seconds (range)':>19} {'MiB/s':>7} {'vs aws s3 cp (range)':>22}")
    for direction, shape, name, engine, seconds, rate, ratios in rows:
        spread = f"{statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f})"
        ratio = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"{direction:<10} {shape:<15} {name:<17} {engine:<11} {spread:>19} {rate:>7.1f} {ratio:>22}")


def _rotated(names: list[str], run: int) -> list[str]:
    return names[run % len(names):] + names[: run % len(names)]


if __name__ == "__main__":
    main()
