"""The instance's reference cache: how long the second job on an instance takes to stage a large
reference, against the first job, which has to download it.

    .venv/bin/python bench/reference_cache.py [--repeats 3] [--objects 4] [--mib 64]

Each repeat is one fresh "instance" (an empty scratch directory) on which two jobs run one after
the other, through the real runner as Batch starts it (`python -m labbatch_runner -- true`),
against a moto S3 server in its own process on loopback: each job stages its own small reads and a
reference folder (`--objects` x `--mib`, a stand-in for an aligner's index) named by a parameter.
The first job finds the cache empty and downloads the index into it; the second finds it there.
The figure is each job's `stage_in` time from its own manifest; the ratio is second / first (how
small a fraction of the first job's staging the second one pays). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "containers" / "runner"))

from benchlib import Summary, median, ratio_spread, spread  # noqa: E402
from labbatch_contract import manifest as manifests  # noqa: E402
from labbatch_contract import outcome  # noqa: E402
from staging import moto_server  # noqa: E402

BUCKET, RESULTS = "refs", "results"
MIB = 1 << 20


def run_job(env: dict[str, str], scratch: Path, name: str, reads: str, index: str) -> dict:
    job_env = {**env, "LABBATCH_JOB_ID": name, "LABBATCH_SCRATCH_DIR": str(scratch), "AWS_BATCH_JOB_ATTEMPT": "1",
               "LABBATCH_INPUTS": json.dumps([reads]), "LABBATCH_PARAMETERS": json.dumps({"index": index}),
               "LABBATCH_OUTPUT_PREFIX": f"s3://{RESULTS}/{name}/"}
    done = subprocess.run([sys.executable, "-m", "labbatch_runner", "--", "true", "{param:index}", "{input}"],
                          env=job_env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"job {name} failed ({done.returncode}): {done.stderr[-2000:]}")
    import boto3

    s3 = boto3.client("s3")
    return json.loads(s3.get_object(Bucket=RESULTS, Key=outcome.manifest_key(f"{name}/"))["Body"].read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--summary", help="write bench/run's summary rows here")
    args = parser.parse_args()

    with moto_server() as endpoint:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LABBATCH_"))}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   PYTHONPATH=os.pathsep.join([str(ROOT / "containers" / "runner"), str(ROOT)]))
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        import boto3

        s3 = boto3.client("s3")
        for bucket in (BUCKET, RESULTS):
            s3.create_bucket(Bucket=bucket)
        for i in range(args.objects):
            s3.put_object(Bucket=BUCKET, Key=f"index/part-{i:02d}.bin", Body=os.urandom(args.mib * MIB))
        index = f"s3://{BUCKET}/index/"
        total = args.objects * args.mib * MIB
        print(f"moto S3 at {endpoint}; {os.cpu_count()} CPUs; reference folder {args.objects} x {args.mib} MiB "
              f"({total / MIB:,.0f} MiB); {args.repeats} repeats, two jobs on one fresh scratch each")

        first, second, ratios = [], [], []
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="labbatch-bench-instance-") as instance:
                scratch = Path(instance)
                times = []
                for job in (1, 2):
                    name = f"r{repeat}-job{job}"
                    reads = f"s3://{BUCKET}/reads/{name}.fq"
                    s3.put_object(Bucket=BUCKET, Key=f"reads/{name}.fq", Body=b"@r\nACGT\n+\nIIII\n")
                    manifest = run_job(env, scratch, name, reads, index)
                    caches = {item["cache"] for item in manifests.entries(manifest, manifests.INPUTS)
                              if item["uri"].startswith(index)}
                    expected = {"miss"} if job == 1 else {"hit"}
                    if caches != expected:
                        raise RuntimeError(f"job {name}: reference cache said {caches}, expected {expected}")
                    times.append(manifest["timings_seconds"][outcome.STAGE_IN])
                first.append(times[0])
                second.append(times[1])
                ratios.append(times[1] / times[0])
                print(f"  repeat {repeat + 1}: first job {times[0]:.2f} s, second {times[1]:.2f} s "
                      f"({times[1] / times[0]:.1%} of the first)", flush=True)

    print(f"\nstage_in of a {total / MIB:,.0f} MiB reference folder, median (min-max) over {args.repeats}:")
    print(f"  first job on the instance (downloads it):  {spread(first)}")
    print(f"  second job on the instance (cache hit):    {spread(second)}")
    print(f"  second / first: {ratio_spread(ratios)}; the second job stages in "
          f"{median(ratios):.1%} of the first's time")
    summary = Summary("cache")
    summary.add(f"stage_in, 2nd job, {total / MIB:,.0f} MiB reference", f"{median(second):.2f} s",
                f"1st job {median(first):.2f} s", f"{median(ratios):.3f} of it")
    summary.write(args.summary)


if __name__ == "__main__":
    main()
