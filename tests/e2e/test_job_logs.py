"""A job's output reaches the lab's log group whole, as ECS's awslogs driver ships it: a blank line
costs no other line, a line longer than an event arrives in pieces, binary output arrives as
replacement characters, and a burst of 100,000 lines arrives complete (local mode, host executor)."""

from __future__ import annotations

import sys

import boto3
import pytest
import yaml

from tests.e2e.conftest import ROOT, start_local
from tests.e2e.test_local_mode import wait

CHATTY = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "out.write(b'one\\n\\nthree\\n')\n"
    "out.write(b'L' * 300000 + b'\\n')\n"
    "out.write(b'bin \\xff\\xfe end\\n')\n"
    "out.write(b''.join(b'burst %d\\n' % i for i in range(100000)))\n"
)


@pytest.fixture(scope="module")
def chatty_lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logs")
    labs = tmp / "labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["pipelines"]["chatty"] = {"image": "demo", "attempts": 1, "memory_mib": 1024,
                                   "command": [sys.executable, "-c", CHATTY, "{input}"]}
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    lab = start_local(tmp, labs_dir=labs)
    yield lab
    assert lab.stop() == 0


def log_messages(lab, stream: str) -> list[str]:
    creds = lab.info["credentials"]
    logs = boto3.client("logs", endpoint_url=lab.info["aws_endpoint"], region_name=lab.info["region"],
                        aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    group = lab.info["log_group"] if "log_group" in lab.info else f"/labbatch/{lab.info['name']}/jobs"
    messages, token = [], None
    while True:
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        messages += [event["message"] for event in page["events"]]
        if page["nextForwardToken"] == token or not page["events"]:
            return messages
        token = page["nextForwardToken"]


def test_blank_long_binary_and_a_burst_of_lines_all_arrive(chatty_lab):
    client = chatty_lab.client()
    reads = chatty_lab.put("inputs", "logs/x.txt", b"x")
    job = client.submit("chatty", [reads])
    record = wait(client, job["job_id"], 120)
    assert record["status"] == "SUCCEEDED", record
    (attempt,) = record["attempts"]
    messages = log_messages(chatty_lab, attempt["log_stream"])
    tool = messages[messages.index("one"):]
    assert tool[:2] == ["one", "three"]  # the blank line is no event, and costs no other line
    long = [m for m in tool if set(m) == {"L"}]
    assert "".join(long) == "L" * 300000 and len(long) == 2
    assert "bin \ufffd\ufffd end" in tool
    burst = [m for m in tool if m.startswith("burst ")]
    assert burst == [f"burst {i}" for i in range(100000)]
