"""The local API Gateway front: SigV4 authorization, payload quota, proxy events and responses."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from labbatch.local.apigateway import MAX_PAYLOAD_BYTES, LocalApiGateway

REGION = "eu-west-1"
ACCOUNT = "123456789012"
KEY, SECRET = "AKIALOCALTESTKEY0001", "local-secret-for-tests"
CALLER = f"arn:aws:iam::{ACCOUNT}:user/local-scientist"


class RecordingHandler:
    """A Lambda handler that records what it was given and answers what the test says."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, object]] = []
        self.answer: object = {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                               "body": json.dumps({"ok": True})}

    def __call__(self, event: dict, context: object) -> object:
        self.calls.append((event, context))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    @property
    def event(self) -> dict:
        return self.calls[-1][0]


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def gateway(handler: RecordingHandler, log: io.StringIO) -> Iterator[LocalApiGateway]:
    with LocalApiGateway(handler, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER, account_id=ACCOUNT,
                         log=log) as running:
        yield running


def signed_request(gateway: LocalApiGateway, method: str, target: str, body: bytes = b"", headers: dict | None = None,
                   *, key: str = KEY, secret: str = SECRET, region: str = REGION, service: str = "execute-api",
                   ) -> tuple[str, str, dict[str, str], bytes]:
    request = AWSRequest(method=method, url=gateway.url + target, headers=dict(headers or {}), data=body)
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    return method, target, {"Host": urlsplit(gateway.url).netloc, **dict(request.headers)}, body


def send(gateway: LocalApiGateway, method: str, target: str, headers: dict[str, str], body: bytes = b""):
    """Sends exactly these bytes (no header added), so a test can tamper after signing."""
    connection = http.client.HTTPConnection(urlsplit(gateway.url).netloc, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_signed_request_reaches_handler_as_rest_proxy_event(gateway, handler):
    body = json.dumps({"pipeline": "fastq-stats", "inputs": ["s3://in/a.fq"]}).encode()
    status, _, answer = send(gateway, *signed_request(
        gateway, "POST", "/jobs?status=RUNNING&tag=a&tag=b&name=two%20words", body,
        {"Content-Type": "application/json", "Idempotency-Key": "k-1"}))

    assert status == 200 and json.loads(answer) == {"ok": True}
    event, context = handler.calls[-1]
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/jobs"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "jobs"}
    assert event["stageVariables"] is None
    assert event["queryStringParameters"] == {"status": "RUNNING", "tag": "b", "name": "two words"}
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b"]
    assert event["headers"]["Idempotency-Key"] == "k-1"
    assert event["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert json.loads(event["body"]) == {"pipeline": "fastq-stats", "inputs": ["s3://in/a.fq"]}
    assert event["isBase64Encoded"] is False
    context_fields = event["requestContext"]
    assert context_fields["accountId"] == ACCOUNT
    assert context_fields["stage"] == "local"
    assert context_fields["path"] == "/local/jobs"
    assert context_fields["resourcePath"] == "/{proxy+}"
    assert context_fields["httpMethod"] == "POST"
    assert context_fields["protocol"] == "HTTP/1.1"
    assert context_fields["requestId"] and context_fields["apiId"]
    assert abs(context_fields["requestTimeEpoch"] / 1000 - time.time()) < 60
    identity = context_fields["identity"]
    assert identity["userArn"] == CALLER
    assert identity["accessKey"] == KEY
    assert identity["accountId"] == ACCOUNT
    assert identity["sourceIp"] == "127.0.0.1"
    assert identity["caller"].startswith("AIDA")
    assert context.aws_request_id and context.function_name
    assert context.invoked_function_arn.startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
    assert 0 < context.get_remaining_time_in_millis() <= 29_000
    assert context.memory_limit_in_mb > 0


def test_job_path_is_left_to_the_handlers_router(gateway, handler):
    send(gateway, *signed_request(gateway, "GET", "/jobs/j-0123456789abcdefghijklmnop"))

    assert handler.event["path"] == "/jobs/j-0123456789abcdefghijklmnop"
    assert handler.event["pathParameters"] == {"proxy": "jobs/j-0123456789abcdefghijklmnop"}
    assert handler.event["queryStringParameters"] is None
    assert handler.event["body"] is None


def _assert_forbidden(status: int, answer: bytes, handler: RecordingHandler) -> dict:
    assert status == 403
    error = json.loads(answer)["error"]
    assert error["code"] == "forbidden" and error["message"] and isinstance(error["details"], dict)
    assert handler.calls == []
    return error


def test_unsigned_request_is_forbidden_with_a_json_error(gateway, handler):
    status, headers, answer = send(gateway, "GET", "/jobs", {"Host": urlsplit(gateway.url).netloc})

    error = _assert_forbidden(status, answer, handler)
    assert error["message"] == "Missing Authentication Token"
    assert headers["Content-Type"] == "application/json"


def test_wrong_secret_is_forbidden(gateway, handler):
    status, _, answer = send(gateway, *signed_request(gateway, "GET", "/jobs", secret="not-the-secret"))

    assert "signature" in _assert_forbidden(status, answer, handler)["message"]


def test_unknown_access_key_is_forbidden(gateway, handler):
    status, _, answer = send(gateway, *signed_request(gateway, "GET", "/jobs", key="AKIASOMEONEELSE00001"))

    assert "security token" in _assert_forbidden(status, answer, handler)["message"]


def test_body_tampered_after_signing_is_forbidden(gateway, handler):
    method, target, headers, _ = signed_request(gateway, "POST", "/jobs", b'{"pipeline": "align"}')

    status, _, answer = send(gateway, method, target, headers, b'{"pipeline": "evil!"}')

    _assert_forbidden(status, answer, handler)


def test_query_tampered_after_signing_is_forbidden(gateway, handler):
    method, _, headers, body = signed_request(gateway, "GET", "/jobs?status=RUNNING")

    status, _, answer = send(gateway, method, "/jobs?status=FAILED", headers, body)

    _assert_forbidden(status, answer, handler)


@pytest.mark.parametrize(("service", "region", "words"), [
    ("s3", REGION, "correct service"),
    ("execute-api", "us-east-1", "valid region"),
])
def test_credential_scoped_to_another_service_or_region_is_forbidden(gateway, handler, service, region, words):
    status, _, answer = send(gateway, *signed_request(gateway, "GET", "/jobs", service=service, region=region))

    assert words in _assert_forbidden(status, answer, handler)["message"]


@pytest.mark.parametrize(("minutes", "allowed"), [(-20, False), (20, False), (-10, True), (10, True)])
def test_signature_is_accepted_only_within_fifteen_minutes(gateway, handler, monkeypatch, minutes, allowed):
    signed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)

    status, _, answer = send(gateway, *signed_request(gateway, "GET", "/jobs"))

    if allowed:
        assert status == 200
    else:
        assert "Signature" in _assert_forbidden(status, answer, handler)["message"]


def test_signed_headers_must_include_host(gateway, handler):
    method, target, headers, body = signed_request(gateway, "GET", "/jobs")
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=host;x-amz-date",
                                                                "SignedHeaders=x-amz-date")

    status, _, answer = send(gateway, method, target, headers, body)

    assert "'host' must be a signed header" in _assert_forbidden(status, answer, handler)["message"]


def test_declared_payload_hash_must_match_the_body(gateway, handler):
    method, target, headers, _ = signed_request(
        gateway, "POST", "/jobs", b"{}", {"X-Amz-Content-SHA256": "0" * 64})

    status, _, answer = send(gateway, method, target, headers, b"{}")

    assert "x-amz-content-sha256" in _assert_forbidden(status, answer, handler)["message"]


def test_unsigned_payload_is_refused(gateway, handler):
    method, target, headers, body = signed_request(
        gateway, "POST", "/jobs", b"{}", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})

    status, _, answer = send(gateway, method, target, headers, body)

    assert "payload must be signed" in _assert_forbidden(status, answer, handler)["message"]


def test_body_over_ten_megabytes_is_refused_before_it_is_read(gateway, handler):
    head = (f"POST /jobs HTTP/1.1\r\nHost: {urlsplit(gateway.url).netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {MAX_PAYLOAD_BYTES + 1}\r\n\r\n").encode()
    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    with socket.create_connection((host, port), timeout=5) as connection:
        # Only a few bytes of the declared body are ever sent: an answer proves nothing waited for the rest.
        connection.sendall(head + b"{" * 1024)
        response = http.client.HTTPResponse(connection)
        response.begin()
        body = response.read()

    assert response.status == 413
    assert response.getheader("Connection") == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": MAX_PAYLOAD_BYTES, "received_bytes": MAX_PAYLOAD_BYTES + 1}
    assert handler.calls == []


def test_body_of_exactly_ten_megabytes_is_accepted(gateway, handler):
    body = b"x" * MAX_PAYLOAD_BYTES

    status, _, _ = send(gateway, *signed_request(gateway, "POST", "/jobs", body))

    assert status == 200
    assert len(handler.event["body"]) == MAX_PAYLOAD_BYTES


def test_expect_continue_with_oversized_body_gets_413_instead_of_100(gateway, handler):
    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    head = (f"PUT /jobs HTTP/1.1\r\nHost: {host}:{port}\r\nExpect: 100-continue\r\n"
            f"Content-Length: {MAX_PAYLOAD_BYTES * 2}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(head)
        response = http.client.HTTPResponse(connection)
        response.begin()
        response.read()

    assert response.status == 413
    assert handler.calls == []


def test_chunked_body_is_refused_with_length_required(gateway, handler):
    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    head = (f"POST /jobs HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "2\r\n{}\r\n0\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(head)
        response = http.client.HTTPResponse(connection)
        response.begin()
        body = response.read()

    assert response.status == 411
    assert json.loads(body)["error"]["code"] == "length_required"
    assert handler.calls == []


def test_handler_exception_is_a_502_without_the_traceback(gateway, handler, log):
    handler.answer = RuntimeError("password=hunter2 in a stack frame")

    status, _, answer = send(gateway, *signed_request(gateway, "GET", "/jobs"))

    assert status == 502
    assert json.loads(answer) == {"message": "Internal server error"}
    assert b"hunter2" not in answer and b"Traceback" not in answer
    assert "Traceback" in log.getvalue() and "hunter2" in log.getvalue()


@pytest.mark.parametrize("answer", [None, {"body": "no status"}, {"statusCode": 200, "body": {"not": "a string"}},
                                    {"statusCode": 200, "body": "%%%", "isBase64Encoded": True}])
def test_malformed_proxy_response_is_a_502(gateway, handler, answer):
    handler.answer = answer

    status, _, body = send(gateway, *signed_request(gateway, "GET", "/jobs"))

    assert status == 502
    assert json.loads(body) == {"message": "Internal server error"}


def test_binary_body_reaches_handler_base64_encoded(gateway, handler):
    payload = bytes(range(256))

    send(gateway, *signed_request(gateway, "POST", "/upload", payload, {"Content-Type": "application/octet-stream"}))

    assert handler.event["isBase64Encoded"] is True
    assert base64.b64decode(handler.event["body"]) == payload


def test_handler_response_headers_status_and_base64_body_are_written_back(gateway, handler):
    handler.answer = {"statusCode": 202, "headers": {"Content-Type": "application/octet-stream", "X-One": "1"},
                      "multiValueHeaders": {"X-Many": ["a", "b"]},
                      "body": base64.b64encode(b"\x00\xffbinary").decode(), "isBase64Encoded": True}
    connection = http.client.HTTPConnection(urlsplit(gateway.url).netloc, timeout=5)
    method, target, headers, body = signed_request(gateway, "GET", "/jobs")
    connection.request(method, target, headers=headers)
    response = connection.getresponse()

    assert response.status == 202
    assert response.read() == b"\x00\xffbinary"
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert response.getheader("X-One") == "1"
    assert response.headers.get_all("X-Many") == ["a", "b"]
    assert response.getheader("x-amzn-RequestId")
    connection.close()


def test_each_request_is_logged_in_one_line_with_method_path_status_and_time(gateway, handler, log):
    send(gateway, *signed_request(gateway, "GET", "/jobs?status=RUNNING"))
    send(gateway, "GET", "/pipelines", {"Host": urlsplit(gateway.url).netloc})

    # Each line is written after its answer went out, so under load they may land in either order.
    lines = sorted(_log_lines(log, 2))
    assert len(lines) == 2
    assert lines[0].startswith("api GET /jobs 200 ") and lines[0].endswith("ms")
    assert lines[1].startswith("api GET /pipelines 403 ") and lines[1].endswith("ms")


def _log_lines(log: io.StringIO, count: int, timeout: float = 5.0) -> list[str]:
    # The line is written once the answer has gone out, so the client can be a moment ahead of it.
    deadline = time.monotonic() + timeout
    while len(log.getvalue().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return log.getvalue().splitlines()


def test_handler_sees_one_event_at_a_time_like_one_lambda_environment(gateway, handler):
    active, most = [0], [0]
    lock = threading.Lock()

    def slow_handler(event, context):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return {"statusCode": 200, "body": "{}"}

    gateway._handler = slow_handler
    statuses: list[int] = []
    def call() -> None:
        statuses.append(send(gateway, *signed_request(gateway, "GET", "/jobs"))[0])

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 4
    assert most[0] == 1


def test_port_zero_binds_a_free_port_and_stop_frees_it(handler):
    gateway = LocalApiGateway(handler, region=REGION, credentials=(KEY, SECRET), caller_arn=CALLER,
                              account_id=ACCOUNT, log=io.StringIO()).start()
    port = urlsplit(gateway.url).port
    assert port and gateway.url == f"http://127.0.0.1:{port}"
    gateway.stop()

    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError):
        gateway.url


def test_a_client_still_sending_an_oversized_body_reads_the_413_instead_of_a_reset(gateway, handler):
    body = b"x" * (MAX_PAYLOAD_BYTES + (2 << 20))
    parts = urlsplit(gateway.url)
    # http.client sends the whole body before it reads anything, as the SDKs' connections do; the
    # front answers after the headers, so the body arrives at a socket that will not read it.
    for attempt in range(3):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == 413, attempt
        assert answer["error"]["code"] == "payload_too_large"
    assert handler.calls == []
