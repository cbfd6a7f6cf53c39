"""The checksums `labbatch upload` computes are the ones S3 reports, single-part and multipart, and
anything else (another size, other bytes, no checksum) is refused; prefixes and paths are checked
before anything is sent."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from labbatch.client.sdk import LabBatchError
from labbatch.client.transfer import MULTIPART_BYTES, transfer_config
from labbatch.client.transfer.checksums import check_s3_checksum, digest_file
from labbatch.client.transfer.upload import collect_files, normalise_prefix


@mock_aws
@pytest.mark.parametrize("size", [0, 1000, MULTIPART_BYTES, 2 * MULTIPART_BYTES + 12345])
def test_digest_is_what_s3_reports_after_a_transfer_manager_upload(tmp_path: Path, size: int):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lab-inputs")
    path = tmp_path / "data.bin"
    body = os.urandom(size)
    path.write_bytes(body)
    s3.upload_file(str(path), "lab-inputs", "data.bin", ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                   Config=transfer_config())
    digest = digest_file(path)
    assert digest.sha256 == hashlib.sha256(body).hexdigest()
    assert digest.parts == (0 if size < MULTIPART_BYTES else -(-size // MULTIPART_BYTES))
    head = s3.head_object(Bucket="lab-inputs", Key="data.bin", ChecksumMode="ENABLED")
    assert check_s3_checksum(head, digest, "s3://lab-inputs/data.bin") is None


def test_mismatches_are_named(tmp_path: Path):
    path = tmp_path / "x"
    path.write_bytes(b"hello")
    digest = digest_file(path)
    right = base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    assert check_s3_checksum({"ContentLength": 5, "ChecksumSHA256": right}, digest, "u") is None
    assert "checksum mismatch" in check_s3_checksum({"ContentLength": 5, "ChecksumSHA256": right[::-1]}, digest, "u")
    assert "S3 holds 6 bytes" in check_s3_checksum({"ContentLength": 6, "ChecksumSHA256": right}, digest, "u")
    assert "no SHA-256" in check_s3_checksum({"ContentLength": 5}, digest, "u")


def test_composite_part_count_is_checked(tmp_path: Path):
    path = tmp_path / "big"
    path.write_bytes(b"\0" * (MULTIPART_BYTES + 1))
    digest = digest_file(path)
    assert digest.parts == 2
    ok = {"ContentLength": MULTIPART_BYTES + 1, "ChecksumSHA256": f"{digest.s3_sha256}-2"}
    assert check_s3_checksum(ok, digest, "u") is None
    assert check_s3_checksum({**ok, "ChecksumSHA256": f"{digest.s3_sha256}-3"}, digest, "u")


def test_prefixes():
    assert normalise_prefix("") == ""
    assert normalise_prefix("run42") == "run42/"
    assert normalise_prefix("/a/b/") == "a/b/"
    for bad, code in (("work/x", "reserved_prefix"), ("a/../b", "bad_prefix"), ("a//b", "bad_prefix"),
                      ("s3://bucket/x", "bad_prefix")):
        with pytest.raises(LabBatchError) as caught:
            normalise_prefix(bad)
        assert caught.value.code == code


def test_folders_keep_their_name_and_layout(tmp_path: Path):
    (tmp_path / "reads" / "lane1").mkdir(parents=True)
    (tmp_path / "reads" / "a.fq").write_text("a")
    (tmp_path / "reads" / "lane1" / "b.fq").write_text("b")
    (tmp_path / "one.fa").write_text(">x")
    files = collect_files([tmp_path / "reads", tmp_path / "one.fa"])
    assert [key for _, key in files] == ["reads/a.fq", "reads/lane1/b.fq", "one.fa"]
    (tmp_path / "empty").mkdir()
    for path, code in ((tmp_path / "missing", "no_such_file"), (tmp_path / "empty", "empty_folder")):
        with pytest.raises(LabBatchError) as caught:
            collect_files([path])
        assert caught.value.code == code
