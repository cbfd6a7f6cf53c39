"""Property: whatever the client signs, the front accepts; change any signed part, and it refuses."""

from __future__ import annotations

import http.client
import io
import json
import string
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labbatch.client.sdk import encode_query, sign_request
from labbatch.local.apigateway import LocalApiGateway

REGION = "ap-southeast-2"
KEY, SECRET = "AKIAPROPERTYTEST0001", "property-secret"
CREDENTIALS = Credentials(KEY, SECRET)


class EchoHandler:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict, context: object) -> dict:
        self.events.append(event)
        return {"statusCode": 200, "body": json.dumps({"seen": True})}


@pytest.fixture(scope="module")
def handler() -> EchoHandler:
    return EchoHandler()


@pytest.fixture(scope="module")
def gateway(handler: EchoHandler) -> Iterator[LocalApiGateway]:
    with LocalApiGateway(handler, region=REGION, credentials=(KEY, SECRET), account_id="123456789012",
                         caller_arn="arn:aws:iam::123456789012:user/prop", log=io.StringIO()) as running:
        yield running


any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
header_value = st.text(st.sampled_from(string.ascii_letters + string.digits + string.punctuation + " "), max_size=24)
requests = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    "segments": st.lists(any_text.filter(lambda s: s not in ("", ".", "..")), min_size=1, max_size=3),
    "query": st.dictionaries(any_text.filter(bool), any_text, max_size=4),
    # Names outside what botocore leaves unsigned (User-Agent, Expect, ...), so every one is signed.
    "headers": st.dictionaries(st.from_regex(r"\Ax-lab-[a-z0-9]{1,8}\Z"), header_value, max_size=4),
    "body": st.binary(max_size=512),
})


def _send(gateway: LocalApiGateway, method: str, target: str, headers: dict[str, str], body: bytes):
    connection = http.client.HTTPConnection(urlsplit(gateway.url).netloc, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", urlsplit(gateway.url).netloc)
        for name, value in headers.items():
            if name.lower() not in ("host", "content-length"):
                connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _sign(gateway: LocalApiGateway, request: dict) -> tuple[str, str, dict[str, str], bytes]:
    path = "/" + "/".join(quote(segment, safe="") for segment in request["segments"])
    query = encode_query(request["query"])
    target = path + (f"?{query}" if query else "")
    signed = sign_request(CREDENTIALS, REGION, request["method"], gateway.url + target, request["headers"],
                          request["body"]).prepare()
    return request["method"], target, dict(signed.headers), signed.body or b""


def _other(char: str) -> str:
    """A different character that no canonicalization (trimming, case, encoding) could equate."""
    return "Q" if char != "Q" else "Z"


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(request=requests)
def test_any_request_signed_by_the_client_is_accepted(gateway, handler, request):
    method, target, headers, body = _sign(gateway, request)

    status, answer = _send(gateway, method, target, headers, body)

    assert status == 200, answer
    event = handler.events[-1]
    assert event["path"] == "/" + "/".join(request["segments"])
    assert (event["queryStringParameters"] or {}) == request["query"]
    for name, value in request["headers"].items():
        assert event["multiValueHeaders"][name] == [value.strip()]


@SETTINGS
@given(request=requests.filter(lambda r: r["body"]), data=st.data())
def test_any_single_byte_change_to_the_body_is_refused(gateway, request, data):
    method, target, headers, body = _sign(gateway, request)
    position = data.draw(st.integers(0, len(body) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = body[:position] + bytes([body[position] ^ mask]) + body[position + 1:]

    status, _ = _send(gateway, method, target, headers, tampered)

    assert status == 403


@SETTINGS
@given(request=requests, part=st.sampled_from(["signature", "date", "method", "path", "query", "header"]),
       data=st.data())
def test_any_change_to_a_signed_part_is_refused(gateway, request, part, data):
    method, target, headers, body = _sign(gateway, request)
    if part == "signature":
        authorization = headers["Authorization"]
        position = data.draw(st.integers(len(authorization) - 64, len(authorization) - 1))
        new = "0" if authorization[position] != "0" else "1"
        headers["Authorization"] = authorization[:position] + new + authorization[position + 1:]
    elif part == "date":
        stamp = headers["X-Amz-Date"]
        seconds = int(stamp[13:15])
        headers["X-Amz-Date"] = stamp[:13] + f"{(seconds + 1) % 60:02d}" + stamp[15:]
    elif part == "method":
        method = data.draw(st.sampled_from([m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m != method]))
    elif part == "path":
        segments = list(request["segments"])
        index = data.draw(st.integers(0, len(segments) - 1))
        position = data.draw(st.integers(0, len(segments[index]) - 1))
        segment = segments[index]
        segments[index] = segment[:position] + _other(segment[position]) + segment[position + 1:]
        path = "/" + "/".join(quote(segment, safe="") for segment in segments)
        target = path + target[len(target.split("?")[0]):]
    elif part == "query":
        query = dict(request["query"]) or {"added": ""}
        name = data.draw(st.sampled_from(sorted(query)))
        value = query[name]
        position = data.draw(st.integers(0, len(value))) if value else 0
        query[name] = value[:position] + _other(value[position:position + 1] or "") + value[position + 1:]
        target = target.split("?")[0] + "?" + encode_query(query)
    else:
        names = [n for n, v in request["headers"].items() if v.strip()]
        if not names:
            headers["X-Lab-Added"] = "unsigned"  # an extra header is fine; removing a signed one is not
            headers.pop(next(iter(h for h in headers if h.lower() == "x-amz-date")))
        else:
            name = data.draw(st.sampled_from(names))
            value = headers[name]
            position = data.draw(st.integers(0, len(value) - 1))
            headers[name] = value[:position] + _other(value[position]) + value[position + 1:]

    status, _ = _send(gateway, method, target, headers, body)

    assert status == 403
