"""`labbatch download s3://<lab bucket>/<prefix>`: a workflow engine's outputs (which live under its
own prefix, not under a job's) fetched from a local lab and checked against S3's own checksums."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
from boto3.s3.transfer import TransferConfig

from tests.e2e.conftest import LABBATCH


def download(lab, *argv: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["LABBATCH_HOME"] = str(lab.home)
    return subprocess.run([LABBATCH, "download", *argv, "--lab", lab.info["lab"]], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_download_fetches_a_prefix_and_checks_each_file(local_lab, tmp_path):
    results = local_lab.info["buckets"]["results"]
    s3 = local_lab.s3()
    local_lab.put("results", "tes/snakemake/run1/summary.tsv", b"alpha\t3\n")
    local_lab.put("results", "tes/snakemake/run1/counts/beta.tsv", b"beta\t5\n")
    local_lab.put("results", "tes/snakemake/run10/other.tsv", b"not this run\n")
    big = os.urandom(11 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(big)
    # Multipart, as the CLIs upload large files: a composite checksum, not the whole file's.
    s3.upload_file(str(tmp_path / "big.bin"), results, "tes/snakemake/run1/big.bin",
                   Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))

    done = download(local_lab, f"s3://{results}/tes/snakemake/run1", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    files = {f["path"]: f for f in answer["files"]}
    assert set(files) == {"summary.tsv", "counts/beta.tsv", "big.bin"}  # not run10's
    assert (tmp_path / "run1" / "summary.tsv").read_bytes() == b"alpha\t3\n"
    assert (tmp_path / "run1" / "counts" / "beta.tsv").read_bytes() == b"beta\t5\n"
    assert (tmp_path / "run1" / "big.bin").read_bytes() == big
    assert files["summary.tsv"]["verified_by"] in ("crc32", "sha256", "md5")
    # A composite (per-part) checksum says nothing of the whole file here: named as size only.
    assert files["big.bin"]["verified_by"] == "size only"
    told = download(local_lab, f"s3://{results}/tes/snakemake/run1/", "--to", str(tmp_path / "again"), cwd=tmp_path)
    assert told.returncode == 0 and "except 1 S3 keeps none for (size only: big.bin)" in told.stdout, told.stdout
    assert not list((tmp_path / "run1").rglob("*.labbatch-part"))


def test_download_refuses_other_buckets_empty_prefixes_and_keys_that_climb_out(local_lab, tmp_path):
    results = local_lab.info["buckets"]["results"]
    other = download(local_lab, "s3://someone-elses-bucket/x", cwd=tmp_path)
    assert other.returncode != 0 and "not_a_lab_bucket" in other.stderr and results in other.stderr
    empty = download(local_lab, f"s3://{results}/nothing/here/", cwd=tmp_path)
    assert empty.returncode != 0 and "nothing_there" in empty.stderr
    local_lab.put("results", "climb/../../escape.txt", b"x")
    climbing = download(local_lab, f"s3://{results}/climb/", "--to", str(tmp_path / "d"), cwd=tmp_path)
    assert climbing.returncode != 0 and "unsafe_key" in climbing.stderr
    assert not (tmp_path / "escape.txt").exists()
