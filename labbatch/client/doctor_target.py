"""What every check of `labbatch doctor` works with: the lab under test (its API, and its S3 and
logs for canaries) and one check's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labbatch.client.sdk import Connection


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text} -- fix: {self.fix}"

    def as_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, **({"fix": self.fix} if self.fix else {})}


@dataclass
class Target:
    """The lab under test: how to call its API, and (for canaries) how to reach its S3 and logs."""

    connection: Connection
    local: dict[str, Any] | None  # the local lab's state file, when it is one
    lab_name: str | None
    profile: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "local" if self.local is not None else "aws"

    def aws_client(self, service: str):
        import boto3

        if self.local is not None:
            keys = self.local["credentials"]
            return boto3.client(service, endpoint_url=self.local["aws_endpoint"], region_name=self.local["region"],
                                aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"])
        return boto3.Session(profile_name=self.profile, region_name=self.connection.region).client(service)


def aws_reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return str(error)


def where(queue: dict[str, Any]) -> str:
    """`spot` for the pool `default`'s queues (a one-pool lab's), `gpu spot` for another pool's."""
    pool = queue.get("pool") or "default"
    return queue["queue"] if pool == "default" else f"{pool} {queue['queue']}"
