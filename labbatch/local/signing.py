"""Checking SigV4 signatures the way API Gateway's IAM authorization does, for local mode.

The signature is recomputed with botocore's own SigV4Auth, so the canonical request checked
here is, byte for byte, the one botocore (and so the `labbatch` client and the AWS SDKs)
signs. Only what botocore cannot know is done here: which headers the caller chose to sign,
the canonical form of the query string as received, and the checks AWS makes before it
compares signatures (credential scope, clock skew, body hash).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote_to_bytes

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# AWS refuses a signature whose X-Amz-Date is more than 15 minutes from its own clock.
MAX_CLOCK_SKEW = timedelta(minutes=15)
# Payload hashes a client may send instead of the body's hash: API Gateway signs the payload,
# so a request that opts out of it is refused rather than trusted.
_UNSIGNED_PAYLOADS = frozenset({"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
_PRESIGNED_QUERY_KEYS = frozenset({"x-amz-signature", "x-amz-credential", "x-amz-algorithm"})


class SignatureRejected(Exception):
    """The request is not signed by the configured credentials; the reason is safe to show."""

    def __init__(self, message: str, **details: str):
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class ReceivedRequest:
    """An HTTP request as it arrived: raw path and query, headers in order (names may repeat)."""

    method: str
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True)
class SigV4Verifier:
    """Accepts requests signed by one credential pair for one Region and service."""

    access_key_id: str
    secret_access_key: str
    region: str
    service: str = SERVICE
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def verify(self, request: ReceivedRequest) -> str:
        """Returns the access key id that signed `request`, or raises SignatureRejected."""
        if _PRESIGNED_QUERY_KEYS & {key.lower() for key, _ in _query_pairs(request.raw_query)}:
            raise SignatureRejected("Presigned URLs are not accepted here; sign the Authorization header.")
        authorization = _parse_authorization(request.header("Authorization"))
        self._check_scope(authorization)
        timestamp = self._check_date(request, authorization)
        self._check_signed_headers(request, authorization)
        _check_payload_hash(request)
        expected = self._signature(request, authorization, timestamp)
        if not hmac.compare_digest(expected, authorization.signature):
            raise SignatureRejected(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return authorization.access_key

    def _check_scope(self, authorization: _Authorization) -> None:
        # The same order and wording as AWS, so a mistake reads the same locally and deployed.
        if authorization.access_key != self.access_key_id:
            raise SignatureRejected("The security token included in the request is invalid.")
        if authorization.terminator != "aws4_request":
            raise SignatureRejected("Credential should be scoped with a valid terminator: 'aws4_request'.")
        if authorization.region != self.region:
            raise SignatureRejected(
                f"Credential should be scoped to a valid region, not '{authorization.region}'.",
                expected_region=self.region,
            )
        if authorization.service != self.service:
            raise SignatureRejected(f"Credential should be scoped to correct service: '{self.service}'.")

    def _check_date(self, request: ReceivedRequest, authorization: _Authorization) -> str:
        timestamp = request.header("X-Amz-Date")
        if timestamp is None:
            raise SignatureRejected("Authorization needs an X-Amz-Date header.")
        try:
            signed_at = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise SignatureRejected(f"X-Amz-Date {timestamp!r} is not of the form YYYYMMDDTHHMMSSZ.") from None
        if authorization.date != timestamp[:8]:
            raise SignatureRejected(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{authorization.date}' != '{timestamp[:8]}', from '{timestamp}'."
            )
        now = self.clock()
        if signed_at < now - MAX_CLOCK_SKEW:
            earliest = (now - MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)
            raise SignatureRejected(f"Signature expired: {timestamp} is now earlier than {earliest}.")
        if signed_at > now + MAX_CLOCK_SKEW:
            latest = (now + MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)
            raise SignatureRejected(f"Signature not yet current: {timestamp} is still later than {latest}.")
        return timestamp

    def _check_signed_headers(self, request: ReceivedRequest, authorization: _Authorization) -> None:
        signed = set(authorization.signed_headers)
        # A header that decides what the request means or who sends it must be under the signature.
        for required in ("host", "x-amz-date"):
            if required not in signed:
                raise SignatureRejected(f"'{required}' must be a signed header.")
        for optional in ("x-amz-content-sha256", "x-amz-security-token"):
            if request.header(optional) is not None and optional not in signed:
                raise SignatureRejected(f"'{optional}' is present, so it must be a signed header.")
        if request.header("x-amz-security-token") is not None:
            raise SignatureRejected("The security token included in the request is invalid.")
        for name in authorization.signed_headers:
            if request.header(name) is None:
                raise SignatureRejected(f"Signed header '{name}' is missing from the request.")

    def _signature(self, request: ReceivedRequest, authorization: _Authorization, timestamp: str) -> str:
        signed_headers = HTTPHeaders()
        for name in authorization.signed_headers:
            for value in request.header_values(name):
                signed_headers[name] = value
        query = canonical_query_string(request.raw_query)
        # The scheme matters to botocore only to decide whether to hash the payload; "http"
        # makes it always hash, which is what API Gateway checks.
        url = f"http://{request.header('host')}{request.raw_path or '/'}" + (f"?{query}" if query else "")
        aws_request = AWSRequest(method=request.method, url=url, headers=signed_headers, data=request.body)
        aws_request.context["timestamp"] = timestamp
        signer = _SignerOfGivenHeaders(
            Credentials(self.access_key_id, self.secret_access_key), self.service, self.region, signed_headers
        )
        canonical_request = signer.canonical_request(aws_request)
        return signer.signature(signer.string_to_sign(aws_request, canonical_request), aws_request)


class _SignerOfGivenHeaders(SigV4Auth):
    """botocore's signer, told which headers were signed instead of choosing them itself.

    botocore leaves out headers such as User-Agent when it signs; another SDK may sign them,
    and the Authorization header's SignedHeaders list is what counts.
    """

    def __init__(self, credentials: Credentials, service: str, region: str, signed_headers: HTTPHeaders):
        super().__init__(credentials, service, region)
        self._signed_headers = signed_headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed_headers


def canonical_query_string(raw_query: str) -> str:
    """SigV4's canonical query: every name and value percent-encoded per RFC 3986, sorted.

    Decoding to bytes first makes `a%20b`, `a b` and `a%2fb` vs `a/b` canonicalize as AWS does,
    without losing bytes that are not UTF-8.
    """
    pairs = [(_rfc3986(key), _rfc3986(value)) for key, value in _query_pairs(raw_query)]
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    if not raw_query:
        return []
    return [(key, value) for key, _, value in (part.partition("=") for part in raw_query.split("&"))]


def _rfc3986(text: str) -> str:
    return quote(unquote_to_bytes(text), safe="-_.~")


def _parse_authorization(header: str | None) -> _Authorization:
    if not header:
        # API Gateway's own words for a request with no signature at all.
        raise SignatureRejected("Missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected(f"Authorization must use {ALGORITHM}, not {algorithm!r}.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
    if missing:
        raise SignatureRejected(
            f"Authorization header requires {', '.join(repr(m) for m in missing)} "
            f"(form: {ALGORITHM} Credential=..., SignedHeaders=..., Signature=...)."
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        raise SignatureRejected(
            "Credential must have the form <access key id>/<date>/<region>/<service>/aws4_request."
        )
    return _Authorization(
        access_key=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        terminator=scope[4],
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def _check_payload_hash(request: ReceivedRequest) -> None:
    declared = request.header("x-amz-content-sha256")
    if declared is None:
        return  # the canonical request then carries the body's own hash
    if declared in _UNSIGNED_PAYLOADS:
        raise SignatureRejected("The payload must be signed: unsigned payloads are not accepted.")
    if not hmac.compare_digest(declared, hashlib.sha256(request.body).hexdigest()):
        raise SignatureRejected("The provided 'x-amz-content-sha256' header does not match what was computed.")
