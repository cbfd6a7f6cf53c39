"""`labbatch demo`: the tour. A local lab, simulated reads, real jobs, checked results.

Everything goes the way a scientist's work would: data is uploaded to the lab's buckets, jobs
are submitted and followed with the `labbatch` client over signed HTTP, and results are read
back from S3. The tour then checks them against answers it computes itself.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1
# The demo's lab runs under a name of its own, beside any `labbatch local` of the same lab.
DEMO_NAME = "demo"
REFERENCE_KEY = "demo/reference.fa"
READS_PREFIX = "demo/reads/"


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=4, help="how many simulated samples (default: 4)")
    parser.add_argument("--reads", type=int, default=2000, help="reads per sample (default: 2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated data (default: 7)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the jobs (default: 300)")


def expected_stats(fastq: Path) -> dict[str, Any]:
    """What fastq-stats must report, computed here from the raw text, independently of dnaio."""
    reads = bases = gc = acgt = quality = 0
    with gzip.open(fastq, "rt") as lines:
        for number, line in enumerate(lines):
            line = line.rstrip("\n")
            if number % 4 == 1:
                reads += 1
                bases += len(line)
                upper = line.upper()
                gc += upper.count("G") + upper.count("C")
                acgt += sum(upper.count(b) for b in "ACGT")
            elif number % 4 == 3:
                quality += sum(ord(c) - 33 for c in line)
    return {"reads": reads, "bases": bases, "gc_fraction": gc / acgt if acgt else None,
            "mean_quality": quality / bases if bases else None}


def make_data(workdir: Path, samples: int, reads: int, seed: int) -> tuple[Path, dict[str, Path]]:
    from labbatch_pipelines.simulate import make_reference, simulate_reads

    reference = workdir / "reference.fa"
    make_reference(reference, length=20_000, seed=seed, n_contigs=2)
    fastqs = {}
    for i in range(samples):
        name = f"sample-{i + 1}"
        fastqs[name] = workdir / f"{name}.fastq.gz"
        simulate_reads(reference, fastqs[name], n_reads=reads, read_length=150, seed=seed + i + 1, error_rate=0.01)
    return reference, fastqs


def demo_executor() -> tuple[str, str | None]:
    """Containers when an engine answers and holds the runner and demo images (`make images`),
    the host otherwise; with the reason when it is the host."""
    from labbatch.local.docker_runner import DEMO_TAG, RUNNER_IMAGE, find_engine, image_id

    engine = find_engine()
    if engine is None:
        return "host", "no container engine answers"
    missing = [image for image in (RUNNER_IMAGE, DEMO_TAG) if image_id(engine, image) is None]
    if missing:
        return "host", f"{' and '.join(missing)} not built yet: make images"
    return engine, None


def logs_to_file(path: Path):
    """Send the in-process Lambdas' JSON log lines (Powertools writes them to stdout) to `path`,
    so that they do not run through the tour's progress bars; returns the open file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = path.open("w", encoding="utf-8")
    # Only loggers that exist: getLogger() on a placeholder's name would create a logger between a
    # Powertools child (labbatch-api.labbatch_api.submission) and its parent, orphaning the child.
    loggers = [logging.getLogger()] + [logger for logger in list(logging.root.manager.loggerDict.values())
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(out)
    return out


def read_json(s3, uri: str) -> dict[str, Any]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def run_demo(args: argparse.Namespace) -> int:
    import boto3
    from rich.console import Console
    from rich.table import Table

    from labbatch.client.job_commands import WaitProgress
    from labbatch.client.tables import jobs_table, print_table
    from labbatch.client.sdk import LabBatchClient, labbatch_home
    from labbatch.error_line import print_error
    from labbatch.lab.loader import DEFAULT_LABS_DIR, load_one_lab
    from labbatch.local.lab import LocalLab
    from labbatch.local.state import LabAlreadyRunning

    console = Console(highlight=False, soft_wrap=True)  # never fold a URI or an id: the terminal wraps
    lab, problem = load_one_lab(DEFAULT_LABS_DIR, "example")
    if lab is None:
        print_error("bad_lab", problem)
        return EXIT_FAILED
    if not 1 <= args.samples <= 100 or not 1 <= args.reads <= 1_000_000:
        print("labbatch: bad_argument: --samples 1-100 and --reads 1-1,000,000", file=sys.stderr)
        return EXIT_FAILED

    began = time.perf_counter()
    executor, why = demo_executor()
    # The tour shows its own steps; the API's per-request log would only interleave with them.
    local = LocalLab(lab, log=io.StringIO(), name=DEMO_NAME, executor=executor)
    try:
        local.start()
    except LabAlreadyRunning as exc:
        local.stop()
        print_error("lab_running", str(exc))
        return EXIT_FAILED
    except BaseException:
        local.stop()
        raise
    log_path = labbatch_home() / "logs" / "demo.log"
    with local, tempfile.TemporaryDirectory(prefix="labbatch-demo-") as tmp, logs_to_file(log_path):
        info = local.info
        where = "on this machine" if info["executor"] == "host" else f"in {info['executor']} containers"
        console.print(f"[bold]1. Local lab[/] {info['lab']} ready in {info['ready_seconds']:.2f} s: "
                      f"API {info['api']}, AWS emulator {info['aws_endpoint']}; jobs run {where}"
                      + (f" ({why})" if why else "") + f"; the Lambdas' logs go to {log_path}")
        credentials = (info["credentials"]["access_key_id"], info["credentials"]["secret_access_key"])
        s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                          aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1])
        client = LabBatchClient(info["api"], region=info["region"], credentials=credentials)

        reference, fastqs = make_data(Path(tmp), args.samples, args.reads, args.seed)
        buckets = info["buckets"]
        s3.upload_file(str(reference), buckets["references"], REFERENCE_KEY)
        reads_uris = {}
        for name, path in fastqs.items():
            s3.upload_file(str(path), buckets["inputs"], f"{READS_PREFIX}{path.name}")
            reads_uris[name] = f"s3://{buckets['inputs']}/{READS_PREFIX}{path.name}"
        console.print(f"[bold]2. Data[/] a {reference.stat().st_size:,}-byte reference and {len(fastqs)} samples "
                      f"of {args.reads:,} simulated reads uploaded to the lab's buckets")

        reference_uri = f"s3://{buckets['references']}/{REFERENCE_KEY}"
        first = next(iter(fastqs))
        align = client.submit("align", [reads_uris[first]], parameters={"reference": reference_uri},
                              name=f"align-{first}")
        stats = client.submit("fastq-stats", samples=[{"name": n, "inputs": [u]} for n, u in reads_uris.items()],
                              name="qc-all-samples")
        console.print(f"[bold]3. Submitted[/] align {align['job_id']} and a fastq-stats array job "
                      f"{stats['job_id']} over {len(fastqs)} samples")

        job_ids = [align["job_id"], stats["job_id"]]
        with WaitProgress(job_ids) as progress:
            records = client.wait(job_ids, timeout=args.timeout, interval=0.5, on_update=progress.update)

        ok = all(r["status"] == "SUCCEEDED" for r in records.values())
        results = Table("sample", "reads", "bases", "GC fraction", "mean quality", "matches", title="4. fastq-stats")
        for name, path in fastqs.items():
            expected = expected_stats(path)
            try:
                got = read_json(s3, f"{stats['output_prefix']}{name}/stats.json")
            except s3.exceptions.NoSuchKey:
                got = {}
            match = all(got.get(k) == expected[k] if not isinstance(expected[k], float)
                        else abs(got.get(k, -1) - expected[k]) < 1e-9 for k in expected)
            ok &= match
            results.add_row(name, f"{got.get('reads', '-'):,}" if got else "-", f"{got.get('bases', 0):,}",
                            f"{got.get('gc_fraction', 0):.4f}", f"{got.get('mean_quality', 0):.2f}",
                            "[green]yes[/]" if match else "[red]NO[/]")
        console.print(results)

        try:
            aligned = read_json(s3, f"{align['output_prefix']}align.json")
        except s3.exceptions.NoSuchKey:
            aligned = {}
        mapped_share = aligned.get("mapped", 0) / aligned["reads"] if aligned.get("reads") else 0.0
        ok &= aligned.get("reads") == args.reads and mapped_share >= 0.95
        console.print(f"[bold]5. align[/] {first}: {aligned.get('mapped', 0):,} of {aligned.get('reads', 0):,} reads "
                      f"mapped ({mapped_share:.1%}); sorted, indexed BAM at {align['output_prefix']}aligned.bam")

        print_table(jobs_table(client.list()["jobs"]), console)
        report_path = labbatch_home() / "reports" / "demo.html"
        from labbatch.client.report.command import write_report

        shown = write_report(client, output=report_path, labs_dir=DEFAULT_LABS_DIR, lab_name=lab.name,
                             job_ids=job_ids, title="LabBatch demo report")
        counts = shown["counts"]
        console.print(f"[bold]6. Report[/] {counts['samples']} samples, {counts['attempts']} attempts: times, peaks, "
                      f"cost per sample and right-sizing in {report_path} (open it in a browser; it needs no "
                      "network)")
    console.print(f"[bold]7. Stopped[/] the lab: jobs, emulator and local scratch are gone "
                  f"({time.perf_counter() - began:.1f} s in all). " + ("[green]All results are right.[/]" if ok else
                                                                     "[red]Some results are wrong or missing.[/]"))
    return EXIT_OK if ok else EXIT_FAILED
