"""stage_in in-process against the loopback moto S3: which requests it sends, and what it
guarantees when the listing, a GET or the bytes are not what they should be."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import types
from collections import Counter

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody

from tests.runner.conftest import BUCKET
from labbatch_runner import scratch, sizing
from labbatch_runner.errors import ExitCode, RunnerError
from labbatch_runner.runlog import RunnerLog
from labbatch_runner.s3uri import S3Uri
from labbatch_runner.staging import PlannedInput, stage_in
from labbatch_runner.transfer import S5cmdEngine

ACCOUNT = "123456789012"


class Requests:
    """The S3 operations a client was asked for (botocore's own retries are not counted)."""

    def __init__(self, client):
        self.sent = Counter()
        self.keys = Counter()
        client.meta.events.register("before-parameter-build.s3", self._count)

    def _count(self, model, params, **_kwargs):
        self.sent[model.name] += 1
        if "Key" in params:
            self.keys[(model.name, params["Key"])] += 1


@pytest.fixture
def client(moto_endpoint):
    # Its own client, so that the hooks a test registers stay with the test.
    return boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64),
    )


@pytest.fixture
def stager(client, moto_endpoint, aws_env, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, aws_env[name])  # for the s5cmd subprocess
    log_stream = io.StringIO()

    def stage(uris, *, free=1 << 40, **options):
        planned = [
            PlannedInput(S3Uri.parse(uri), scratch.local_input_path(tmp_path / "inputs", S3Uri.parse(uri)), ("inputs",))
            for uri in uris
        ]
        return stage_in(client, S5cmdEngine(moto_endpoint), planned, tmp_path, free_bytes=lambda _: free,
                        log=RunnerLog(stream=log_stream), **options)

    stage.log = log_stream
    return stage


def _stored(lab, name):
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"].buckets[BUCKET].keys[f"{lab.tag}/{name}"]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_small_inputs_in_one_directory_cost_one_listing_and_one_get_each(lab, client, stager, tmp_path):
    bodies = {f"reads/r{i}.fq": f"@r{i}\nACGT\n+\nIIII\n".encode() * (i + 1) for i in range(5)}
    uris = [lab.put(name, body, ChecksumAlgorithm="SHA256") for name, body in bodies.items()]
    requests = Requests(client)

    staged = stager(uris)

    assert requests.sent == {"ListObjectsV2": 1, "GetObject": 5}
    for item, body in zip(staged, bodies.values()):
        assert item.path.read_bytes() == body
        assert (item.size, item.engine) == (len(body), "get")
        assert (item.checksum.algorithm, item.checksum.value) == ("sha256", _b64(hashlib.sha256(body).digest()))
    assert "5 by GET, 0 by s5cmd" in stager.log.getvalue()


def test_keys_the_listing_does_not_reach_are_sized_by_head(lab, client, stager, monkeypatch):
    # Ten objects in the directory, four of them inputs; two keys a page and no spare page: the
    # listing stops after a0..a3 and the inputs beyond it must still be sized, by HEAD.
    uris = [lab.put(f"dir/a{i}", bytes(10 + i)) for i in range(10)]
    wanted = [uris[0], uris[3], uris[6], uris[9]]
    monkeypatch.setattr(sizing, "LIST_PAGE_KEYS", 2)
    monkeypatch.setattr(sizing, "LIST_EXTRA_PAGES", 0)
    requests = Requests(client)

    staged = stager(wanted)

    assert requests.sent == {"ListObjectsV2": 2, "HeadObject": 2, "GetObject": 4}
    assert {key for (operation, key) in requests.keys if operation == "HeadObject"} == {f"{lab.tag}/dir/a6", f"{lab.tag}/dir/a9"}
    assert [item.size for item in staged] == [10, 13, 16, 19]
    assert [item.path.read_bytes() for item in staged] == [bytes(10), bytes(13), bytes(16), bytes(19)]


def test_a_refused_listing_falls_back_to_head_which_names_the_missing_input(lab, client, stager):
    uris = [lab.put(f"dir/a{i}", b"x") for i in range(3)]
    missing = f"s3://{BUCKET}/{lab.tag}/dir/zz"
    refused = types.SimpleNamespace(status_code=403, headers={}, raw=None, content=b"")

    def deny_listing(**_kwargs):
        return refused, {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                         "ResponseMetadata": {"HTTPStatusCode": 403}}

    client.meta.events.register("before-call.s3.ListObjectsV2", deny_listing)
    requests = Requests(client)

    with pytest.raises(RunnerError) as caught:
        stager([*uris, missing])

    assert caught.value.code == ExitCode.INPUT_UNAVAILABLE
    assert caught.value.message == f"input {missing}: not found (404)"
    assert requests.sent["HeadObject"] == 4 and requests.sent["GetObject"] == 0
    assert "sizing its inputs with HEAD" in stager.log.getvalue()


def test_an_archived_object_found_by_the_listing_is_still_refused(lab, stager):
    uris = [lab.put(f"dir/a{i}", b"x") for i in range(2)] + [lab.put("dir/cold", b"x", StorageClass="GLACIER")]

    with pytest.raises(RunnerError) as caught:
        stager(uris)

    assert caught.value.code == ExitCode.INPUT_UNAVAILABLE
    assert caught.value.message == f"input {uris[2]}: in GLACIER and not restored"


def test_no_space_is_refused_before_any_get(lab, client, stager, tmp_path):
    uris = [lab.put(f"dir/a{i}", bytes(100)) for i in range(4)]
    requests = Requests(client)

    with pytest.raises(RunnerError) as caught:
        stager(uris, free=399)

    assert caught.value.code == ExitCode.NO_SCRATCH_SPACE and "inputs need 400 bytes, 399 bytes free" in caught.value.message
    assert requests.sent["GetObject"] == 0 and not (tmp_path / "inputs").exists()


def test_an_object_replaced_after_sizing_is_a_size_mismatch(lab, client, stager, s3):
    uris = [lab.put(f"dir/a{i}", b"12345") for i in range(3)]
    # Another writer replaces a2 between the listing and the GETs.
    client.meta.events.register(
        "after-call.s3.ListObjectsV2", lambda **_: s3.put_object(Bucket=BUCKET, Key=f"{lab.tag}/dir/a2", Body=b"123456789")
    )
    requests = Requests(client)

    with pytest.raises(RunnerError) as caught:
        stager(uris)

    expected = f"input {uris[2]}: size mismatch (expected 5 bytes, got 9)"
    assert (caught.value.code, caught.value.message) == (ExitCode.CHECKSUM_MISMATCH, expected)
    assert f"{expected}, downloading again" in stager.log.getvalue()
    assert requests.keys[("GetObject", f"{lab.tag}/dir/a2")] == 2


@pytest.mark.parametrize("small_object_bytes", [1 << 20, 0], ids=["get", "s5cmd"])
def test_an_etag_md5_that_does_not_match_the_bytes_fails_twice_then_exits_67(lab, stager, small_object_bytes):
    body = b"ACGT" * 100
    uris = [lab.put(f"dir/a{i}", body) for i in range(3)]
    stored = _stored(lab, "dir/a1")
    stored.checksum_value = stored.checksum_algorithm = None
    stored._etag = wrong = hashlib.md5(b"other").hexdigest()

    with pytest.raises(RunnerError) as caught:
        stager(uris, small_object_bytes=small_object_bytes)

    expected = f"input {uris[1]}: checksum mismatch (md5: expected {wrong}, got {hashlib.md5(body).hexdigest()})"
    assert (caught.value.code, caught.value.message) == (ExitCode.CHECKSUM_MISMATCH, expected)
    assert stager.log.getvalue().count(expected) == 2  # once per download; job.py logs the raised error
    assert f"{expected}, downloading again" in stager.log.getvalue()


def test_a_checksum_mismatch_on_the_first_get_only_is_downloaded_again_and_verified(lab, client, stager):
    body = b">chr1\nACGT\n"
    uris = [lab.put(f"dir/a{i}", body, ChecksumAlgorithm="SHA256") for i in range(3)]
    stored = _stored(lab, "dir/a0")
    good = stored.checksum_value
    stored.checksum_value = corrupt = _b64(hashlib.sha256(b"corrupt").digest())

    def heal(parsed, **_kwargs):  # the first response already carries the wrong value
        if parsed.get("ChecksumSHA256") == corrupt:
            stored.checksum_value = good

    client.meta.events.register("after-call.s3.GetObject", heal)

    staged = stager(uris)

    assert "checksum mismatch (sha256" in stager.log.getvalue() and ", downloading again" in stager.log.getvalue()
    assert staged[0].checksum.value == good == _b64(hashlib.sha256(body).digest())
    assert staged[0].path.read_bytes() == body


def test_a_body_cut_short_is_fetched_again(lab, client, stager):
    body = bytes(range(256)) * 40
    uris = [lab.put(f"dir/a{i}", body) for i in range(3)]
    cut = {"done": False}

    def cut_first_body(parsed, model, **_kwargs):
        if not cut["done"] and model.name == "GetObject":
            cut["done"] = True
            parsed["Body"] = StreamingBody(io.BytesIO(body[:100]), len(body))  # the connection dropped

    client.meta.events.register("after-call.s3.GetObject", cut_first_body)
    requests = Requests(client)

    staged = stager(uris)

    assert cut["done"] and requests.sent["GetObject"] == 4
    assert all(item.path.read_bytes() == body for item in staged)
    assert "downloading again" not in stager.log.getvalue()  # a transport retry, not a verification failure


@pytest.mark.parametrize("small_object_bytes", [1 << 20, 0], ids=["get", "s5cmd"])
def test_an_object_deleted_after_sizing_fails_the_download_naming_it(lab, client, stager, s3, small_object_bytes):
    uris = [lab.put(f"dir/a{i}", b"x") for i in range(3)]
    # After the sizing requests (the listing, and the HEADs when everything goes to s5cmd).
    sizing_calls = {"left": 1 if small_object_bytes else 4}
    lock = threading.Lock()  # HEADs finish on several threads

    def delete_after_sizing(**_kwargs):
        with lock:
            sizing_calls["left"] -= 1
            if sizing_calls["left"] == 0:
                s3.delete_object(Bucket=BUCKET, Key=f"{lab.tag}/dir/a1")

    client.meta.events.register("after-call.s3.ListObjectsV2", delete_after_sizing)
    client.meta.events.register("after-call.s3.HeadObject", delete_after_sizing)

    with pytest.raises(RunnerError) as caught:
        stager(uris, small_object_bytes=small_object_bytes)

    assert caught.value.code == ExitCode.STAGE_IN_FAILED
    # s5cmd words it its own way ("NoSuchKey: ... status code: 404").
    assert caught.value.message.startswith(f"input {uris[1]}: download failed: ") and "404" in caught.value.message


def test_large_objects_go_to_the_engine_verified_against_their_head(lab, client, stager):
    small, large = b"s" * 100, b"L" * 5000
    uris = [lab.put(f"dir/s{i}", small) for i in range(3)] + [lab.put("dir/big", large, ChecksumAlgorithm="SHA256")]
    requests = Requests(client)

    staged = stager(uris, small_object_bytes=1000)

    assert [item.engine for item in staged] == ["get", "get", "get", "s5cmd"]
    # The listing sized everything; only the large object needs its HEAD, for the checksum.
    assert requests.sent == {"ListObjectsV2": 1, "HeadObject": 1, "GetObject": 3}
    assert staged[3].path.read_bytes() == large
    assert (staged[3].checksum.algorithm, staged[3].checksum.value) == ("sha256", _b64(hashlib.sha256(large).digest()))
    assert "3 by GET, 1 by s5cmd" in stager.log.getvalue()
