"""Local mode's emulator gives each DynamoDB request DynamoDB's isolation.

moto applies an UpdateItem to the stored item attribute by attribute, and its server answers
requests on parallel threads; under load a client once read a job `FAILED` whose `failure` was
not written yet (tests/e2e/test_failures_recovery.py failed that way). Here the update is slowed
down half-way, deterministically, and a read made at that moment must see all of it or none."""

from __future__ import annotations

import threading
import uuid

import pytest
from moto.dynamodb.parsing import executors

from labbatch.local.emulator import Emulator

CREDENTIALS = ("AKIDLOCALTEST", "secret")


@pytest.fixture()
def table():
    emulator = Emulator()
    emulator.start()
    db = emulator.client("dynamodb", "us-east-1", CREDENTIALS)
    name = f"ledger-{uuid.uuid4().hex[:8]}"  # moto's backend is one per process
    db.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
    yield emulator, db, name
    emulator.stop()


def test_a_read_during_an_update_sees_all_of_it_or_none(table, monkeypatch):
    emulator, db, name = table
    db.put_item(TableName=name, Item={"job_id": {"S": "j-1"}, "status": {"S": "RUNNING"}})
    status_written = threading.Event()
    original = executors.SetExecutor.execute

    def slow_after_status(self, item):
        original(self, item)
        if item.attrs.get("status") is not None and item.attrs["status"].value == "FAILED" \
                and not status_written.is_set():
            status_written.set()
            threading.Event().wait(0.5)  # the rest of the update comes later

    monkeypatch.setattr(executors.SetExecutor, "execute", slow_after_status)
    writer = threading.Thread(target=lambda: emulator.client("dynamodb", "us-east-1", CREDENTIALS).update_item(
        TableName=name, Key={"job_id": {"S": "j-1"}},
        UpdateExpression="SET #s = :failed, failure = :failure",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": "FAILED"}, ":failure": {"S": "out_of_memory"}}))
    writer.start()
    assert status_written.wait(10)

    item = db.get_item(TableName=name, Key={"job_id": {"S": "j-1"}}, ConsistentRead=True)["Item"]
    writer.join(10)

    assert (item["status"]["S"], item.get("failure", {}).get("S")) in {("RUNNING", None), ("FAILED", "out_of_memory")}


def test_other_services_are_not_held_up_by_a_slow_dynamodb_request(table, monkeypatch):
    emulator, db, name = table
    db.put_item(TableName=name, Item={"job_id": {"S": "j-1"}, "status": {"S": "RUNNING"}})
    inside, release = threading.Event(), threading.Event()
    original = executors.SetExecutor.execute

    def held(self, item):
        inside.set()
        release.wait(10)
        original(self, item)

    monkeypatch.setattr(executors.SetExecutor, "execute", held)
    writer = threading.Thread(target=lambda: emulator.client("dynamodb", "us-east-1", CREDENTIALS).update_item(
        TableName=name, Key={"job_id": {"S": "j-1"}}, UpdateExpression="SET #s = :v",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":v": {"S": "FAILED"}}))
    writer.start()
    try:
        assert inside.wait(10)
        s3 = emulator.client("s3", "us-east-1", CREDENTIALS)
        s3.create_bucket(Bucket=name)
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        release.set()
        writer.join(10)
