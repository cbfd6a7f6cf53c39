"""`labbatch local --iam strict --iam-report FILE` as a user runs it: a job in a container acts as
the job role with credentials from the endpoint (no AWS key in its environment), and at stop the
report names, per principal, every action and resource used with the statement that allowed it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from labbatch.local.docker_runner import DEMO_TAG
from tests.e2e.conftest import ROOT, start_local
from tests.e2e.test_local_containers import require_engine_and_images
from tests.e2e.test_local_mode import wait

ENV_DUMP = """
import json, os, sys
json.dump(dict(os.environ), open(os.path.join(sys.argv[1], "env.json"), "w"))
"""


def labs_dir(tmp_path: Path) -> Path:
    labs = tmp_path / "labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["pipelines"]["env-dump"] = {"image": "demo", "attempts": 1, "command": ["python3", "-c", ENV_DUMP, "{output_dir}"]}
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


def test_a_container_job_acts_as_the_job_role_and_the_report_says_which_statement_allowed_what(tmp_path):
    engine = require_engine_and_images(DEMO_TAG)
    report_file = tmp_path / "iam-report.json"
    lab = start_local(tmp_path, "--iam", "strict", "--iam-report", str(report_file), labs_dir=labs_dir(tmp_path),
                      containers=True)
    try:
        assert lab.info["executor"] == engine and lab.info["iam"] == "strict"
        client = lab.client()
        uri = lab.put("inputs", "iam/x.txt", b"x")
        job = client.submit("env-dump", [uri])
        record = wait(client, job["job_id"], timeout=120)
        assert record["status"] == "SUCCEEDED", record
        env = lab.read_json(record["output_prefix"] + "env.json")
    finally:
        assert lab.stop() == 0
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:") and env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]

    report = json.loads(report_file.read_text())
    assert report["mode"] == "strict"
    principals = report["principals"]
    assert {"api-handler", "status-updater", "job-role", "execution-role", "instance-role", "scientist"} <= set(principals)
    job_role = principals["job-role"]
    assert job_role["arn"].endswith(":role/labbatch-example-job")  # named: Nextflow's and TES definitions name it
    output = next(c for c in job_role["calls"] if c["action"] == "s3:PutObject" and c["resource"].endswith("/env.json"))
    assert output["resource"] == f"arn:aws:s3:::{lab.info['buckets']['results']}/{record['output_prefix'].split('/', 3)[3]}env.json"
    (writing,) = output["allowed_by"]
    assert writing.startswith("PipelinesJobRoleDefaultPolicy264DCC5B#") and output["refused"] is None
    staged = next(c for c in job_role["calls"] if c["action"] == "s3:GetObject")
    (reading,) = staged["allowed_by"]
    assert staged["resource"].endswith("/iam/x.txt") and reading == "PipelinesJobRoleDefaultPolicy264DCC5B#0"
    assert writing != reading  # each call names the statement that allowed it, not the policy alone
    every_call = [c for p in principals.values() for c in p["calls"]]
    assert every_call and all(c["allowed_by"] and c["refused"] is None for c in every_call)
