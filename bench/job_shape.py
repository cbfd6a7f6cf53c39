"""A small job's overhead in the job shape that runs any image, against the tool run plainly.

    .venv/bin/python bench/job_shape.py [--repeats 7]

The tool: `cksum` of a small FASTA, in `labbatch-bwa:local` (Debian's bwa and samtools image, no
Python, no LabBatch code; `make images` builds it), so that what is measured is the shape, not
the tool, and the host can run the very same command. Three ways, measured in the same run:

- plain      `docker run` of the tool image with the FASTA bind-mounted: what running the tool
             in its container costs at the least, and the baseline;
- job shape  the same image, the runner tree mounted read-only and started through its own
             loader (as a LabBatch job runs on an instance and in local mode): stage the FASTA in
             from S3, run the tool, upload its output, the logs and manifest.json;
- host       the host runner (`labbatch-runner -- sh -c ...`, local mode without an engine)
             with the same S3 work.

S3 is a moto server on loopback in its own process. Prints the median seconds and range per way,
the job shape's overhead beyond the plain run (aim: under 2 s here) and the ratios
job shape / plain and job shape / host. A benchmark, not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from benchlib import Summary, machine_line, median, ratio_spread, spread  # noqa: E402
from staging import moto_server  # noqa: E402

from labbatch.lab.batch_layout import RUNNER_LAUNCH, RUNNER_MOUNT, on_host  # noqa: E402
from labbatch.local.docker_runner import RUNNER_IMAGE, find_engine, image_id, runner_tree  # noqa: E402

TOOL_IMAGE = "labbatch-bwa:local"
BUCKET = "bench-job-shape"
FASTA = ">chr1\n" + "ACGT" * 2500 + "\n>chr2\n" + "GGCCAATT" * 1000 + "\n"
TOOL = ["sh", "-c", 'cksum "$0" > "$1/cksum.txt"', "{input}", "{output_dir}"]
AIM_SECONDS = 2.0


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench: {argv[:3]}... failed ({result.returncode}): {result.stderr[-800:]}")
    return elapsed


def _job_env(endpoint: str, input_uri: str, scratch: str) -> dict[str, str]:
    job_id = f"bench-{uuid.uuid4().hex[:12]}"
    return {
        "LABBATCH_JOB_ID": job_id,
        "LABBATCH_INPUTS": json.dumps([input_uri]),
        "LABBATCH_OUTPUT_PREFIX": f"s3://{BUCKET}/jobs/{job_id}/",
        "LABBATCH_SCRATCH_DIR": scratch,
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "AWS_BATCH_JOB_ATTEMPT": "1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--summary", help="write bench/run's summary rows here")
    args = parser.parse_args()

    engine = find_engine()
    if engine is None or image_id(engine, TOOL_IMAGE) is None or image_id(engine, RUNNER_IMAGE) is None:
        raise SystemExit(f"bench: needs a container engine with {TOOL_IMAGE} and {RUNNER_IMAGE} (make images)")
    tree = runner_tree(engine)
    print(f"job shape overhead: {args.repeats} repeats; {machine_line()}; engine {engine}")

    import boto3

    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="labbatch-bench-") as tmp:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="in/genome.fa", Body=FASTA.encode())
        input_uri = f"s3://{BUCKET}/in/genome.fa"
        local = Path(tmp) / "plain"
        local.mkdir()
        (local / "genome.fa").write_text(FASTA)
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()

        plain_argv = [engine, "run", "--rm", "--network", "none", "-v", f"{local}:/data", TOOL_IMAGE,
                      "sh", "-c", "cksum /data/genome.fa > /data/cksum.txt"]

        def shaped_argv() -> list[str]:
            env = _job_env(endpoint, input_uri, "/scratch")
            return [engine, "run", "--rm", "--network", "host", "-v", f"{tree}:{RUNNER_MOUNT}:ro",
                    "-v", f"{scratch}:/scratch", *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
                    TOOL_IMAGE, *RUNNER_LAUNCH, *TOOL]

        host_sh = shutil.which("sh") and shutil.which("cksum")
        host_runner = str(Path(sys.executable).parent / "labbatch-runner")

        plain, shaped, host = [], [], []
        for _ in range(args.repeats):
            plain.append(_timed(plain_argv))
            shaped.append(_timed(shaped_argv()))
            if host_sh:
                env = {**os.environ, **_job_env(endpoint, input_uri, str(scratch))}
                host.append(_timed([host_runner, *on_host([*RUNNER_LAUNCH, *TOOL])[1:]], env=env))

    overhead = [s - p for s, p in zip(shaped, plain)]
    summary = Summary("job_shape")
    print(f"{'plain docker run':<22}{spread(plain)}")
    print(f"{'job shape':<22}{spread(shaped)}   job shape / plain {ratio_spread([s / p for s, p in zip(shaped, plain)])}")
    print(f"{'overhead beyond plain':<22}{spread(overhead)}   aim: under {AIM_SECONDS:.0f} s")
    summary.add("small job in the job shape", f"{median(shaped):.2f} s", f"{median(plain):.2f} s (plain run)",
                ratio_spread([s / p for s, p in zip(shaped, plain)]))
    summary.add("overhead beyond a plain run", f"{median(overhead):.2f} s", "", "", f"< {AIM_SECONDS:.0f} s",
                median(overhead) < AIM_SECONDS)
    if host:
        print(f"{'host executor':<22}{spread(host)}   job shape / host {ratio_spread([s / h for s, h in zip(shaped, host)])}")
        summary.add("small job on the host executor", f"{median(host):.2f} s", f"{median(shaped):.2f} s (job shape)",
                    ratio_spread([s / h for s, h in zip(shaped, host)]))
    else:
        print("host executor: skipped (no sh and cksum on this machine's PATH)")
    summary.write(args.summary)


if __name__ == "__main__":
    main()
