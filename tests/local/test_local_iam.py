"""Strict IAM in local mode, in-process: each principal signs with its own keys and acts under its
synthesized policies; a job finds its role only through the container-credentials endpoint;
another lab's principals are refused on this lab's data; events reach the updater only through
the template's rule."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from labbatch.client.sdk import LabBatchClient
from labbatch.lab.loader import load_lab, parse_lab
from labbatch.local.batch.events import job_state_change
from labbatch.local.iam import assembly, lab_iam
from labbatch.local.iam import templates as tpl
from labbatch.local.iam.evaluate import Principal, Request, evaluate
from labbatch.local.lab import LocalLab

ROOT = Path(__file__).resolve().parents[2]
# Writes the job's environment and what its credentials endpoint answers, for the checks below.
ENV_DUMP = """
import json, os, sys, urllib.request
answer = None
uri = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
if uri:
    request = urllib.request.Request(uri, headers={"Authorization": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
    answer = json.load(urllib.request.urlopen(request, timeout=10))
json.dump({"env": dict(os.environ), "endpoint": answer}, open(os.path.join(sys.argv[1], "env.json"), "w"))
"""


@pytest.fixture(scope="module", autouse=True)
def assembly_cache():
    os.environ.setdefault(assembly.CACHE_VARIABLE, str(Path(tempfile.gettempdir()) / "labbatch-test-assemblies"))


def lab_data(name: str = "example", **changes) -> dict:
    import yaml
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["name"] = name
    data["pipelines"]["env-dump"] = {"image": "demo", "attempts": 1,
                                     "command": [sys.executable, "-c", ENV_DUMP, "{output_dir}"]}
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def strict_lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    previous = os.environ.get("LABBATCH_HOME")
    os.environ["LABBATCH_HOME"] = str(home)
    local = LocalLab(parse_lab(lab_data(), "example.yaml"), iam="strict", executor="host", log=io.StringIO(),
                     name=f"iam-{os.getpid()}")
    with local:
        yield local
    if previous is None:
        os.environ.pop("LABBATCH_HOME", None)
    else:
        os.environ["LABBATCH_HOME"] = previous


def aws(local: LocalLab, service: str, keys):
    return boto3.session.Session(aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                                 aws_session_token=keys.session_token or None).client(
        service, endpoint_url=local.info["aws_endpoint"], region_name=local.info["region"])


def run_env_dump(local: LocalLab) -> dict:
    info = local.info
    creds = info["credentials"]
    client = LabBatchClient(info["api"], region=info["region"], credentials=(creds["access_key_id"], creds["secret_access_key"]))
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint"], region_name=info["region"],
                      aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"])
    s3.put_object(Bucket=info["buckets"]["inputs"], Key="iam/x.txt", Body=b"x")
    job = client.submit("env-dump", [f"s3://{info['buckets']['inputs']}/iam/x.txt"])
    deadline = time.monotonic() + 120
    while (record := client.get(job["job_id"]))["status"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    assert record["status"] == "SUCCEEDED", record
    bucket, key = record["output_prefix"].removeprefix("s3://").split("/", 1)
    return json.loads(s3.get_object(Bucket=bucket, Key=key + "env.json")["Body"].read())


@pytest.fixture(scope="module")
def env_dump(strict_lab):
    return run_env_dump(strict_lab)


def test_a_job_gets_no_aws_keys_in_its_environment(env_dump):
    env = env_dump["env"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")


def test_the_credentials_endpoint_hands_the_job_the_job_roles_keys(env_dump, strict_lab):
    answer = env_dump["endpoint"]
    job_role = strict_lab.iam_state.keys["job-role"]
    assert (answer["AccessKeyId"], answer["Token"]) == (job_role.access_key_id, job_role.session_token)
    assert answer["RoleArn"] == strict_lab.iam_state.role_arns["job-role"] and answer["Expiration"]


def test_the_credentials_endpoint_refuses_a_wrong_token(env_dump):
    uri = env_dump["env"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(uri, headers={"Authorization": "guess"}), timeout=10)
    assert refused.value.code == 403


def test_each_principal_acted_under_its_own_role_and_the_report_names_the_statement(env_dump, strict_lab):
    report = strict_lab.iam_state.authorizer.report()["principals"]
    used = {name: {c["action"]: c for c in p["calls"]} for name, p in report.items()}
    assert used["job-role"]["s3:PutObject"]["allowed_by"][0].startswith("PipelinesJobRoleDefaultPolicy")
    assert used["api-handler"]["batch:SubmitJob"]["allowed_by"][0].startswith("JobApiHandlerServiceRoleDefaultPolicy")
    assert used["status-updater"]["dynamodb:UpdateItem"]["allowed_by"][0].startswith("JobApiStatusUpdaterServiceRole")
    assert used["execution-role"]["logs:PutLogEvents"]["allowed_by"][0].startswith("PipelinesExecutionRoleDefaultPolicy")
    assert used["scientist"]["execute-api:Invoke"]["allowed_by"] == ["local-scientist-example#0 (LabMemberExecuteApi)"]
    assert not [c for p in report.values() for c in p["calls"] if c["refused"]]


@pytest.mark.parametrize("principal, service, call", [
    ("job-role", "s3", lambda c, lab: c.delete_object(Bucket=lab.info["buckets"]["inputs"], Key="iam/x.txt")),
    ("job-role", "dynamodb", lambda c, lab: c.scan(TableName="labbatch-example-jobs")),
    ("status-updater", "s3", lambda c, lab: c.get_object(Bucket=lab.info["buckets"]["inputs"], Key="iam/x.txt")),
    ("execution-role", "s3", lambda c, lab: c.list_objects_v2(Bucket=lab.info["buckets"]["results"])),
])
def test_a_call_the_policies_do_not_allow_is_access_denied(strict_lab, env_dump, principal, service, call):
    client = aws(strict_lab, service, strict_lab.iam_state.keys[principal])
    with pytest.raises(ClientError) as refused:
        call(client, strict_lab)
    assert refused.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")
    assert strict_lab.iam_state.role_arns[principal] in refused.value.response["Error"]["Message"]


def test_the_scientist_cannot_submit_to_batch_around_the_api(strict_lab):
    keys = strict_lab.iam_state.keys["scientist"]
    batch = boto3.client("batch", endpoint_url=strict_lab.info["batch_endpoint"], region_name=strict_lab.info["region"],
                         aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key)
    with pytest.raises(ClientError) as refused:
        batch.submit_job(jobName="around", jobQueue="labbatch-example-spot", jobDefinition="labbatch-example-env-dump")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    # Tagged as its lab, as the Nextflow access policy it holds asks: still only Nextflow's nf-* definitions.
    with pytest.raises(ClientError) as refused:
        batch.submit_job(jobName="around", jobQueue="labbatch-example-spot", jobDefinition="labbatch-example-env-dump",
                         tags={"labbatch:lab": "example"})
    assert "job-definition/labbatch-example-env-dump" in refused.value.response["Error"]["Message"]


def test_an_unknown_key_is_refused(strict_lab):
    s3 = boto3.client("s3", endpoint_url=strict_lab.info["aws_endpoint"], region_name=strict_lab.info["region"],
                      aws_access_key_id="AKIANOBODY", aws_secret_access_key="x")
    with pytest.raises(ClientError) as refused:
        s3.list_objects_v2(Bucket=strict_lab.info["buckets"]["inputs"])
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_a_second_labs_principals_are_refused_on_this_labs_buckets_ledger_and_queues(strict_lab):
    other = assembly.templates(parse_lab(lab_data("other"), "other.yaml"))
    info = strict_lab.info
    authorizer = strict_lab.iam_state.authorizer
    foreign = {}
    for principal, keys in lab_iam.foreign_principals(other, account="123456789012", region=info["region"]):
        authorizer.add(principal, keys)  # the other lab deployed in the same account
        foreign[principal.name] = keys
    names = ["other-lab:job-role", "other-lab:api-handler", "other-lab:status-updater"]
    attempts = {
        "s3": lambda c: c.get_object(Bucket=info["buckets"]["inputs"], Key="iam/x.txt"),
        "s3-put": lambda c: c.put_object(Bucket=info["buckets"]["results"], Key="jobs/j-x/out.txt", Body=b"x"),
        "dynamodb": lambda c: c.get_item(TableName="labbatch-example-jobs", Key={"job_id": {"S": "j-x"}}),
    }
    for name in names:
        principal = authorizer.principal(name)
        keys = foreign[name]
        for what, call in attempts.items():
            client = aws(strict_lab, what.split("-")[0], keys)
            with pytest.raises(ClientError) as refused:
                call(client)
            assert refused.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"), (name, what)
            assert principal.arn in refused.value.response["Error"]["Message"]
        batch = boto3.client("batch", endpoint_url=info["batch_endpoint"], region_name=info["region"],
                             aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                             aws_session_token=keys.session_token)
        with pytest.raises(ClientError) as refused:
            batch.submit_job(jobName="x", jobQueue="labbatch-example-spot", jobDefinition="labbatch-example-fastq-stats",
                             tags={"labbatch:lab": "other"})
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException", name


def test_events_reach_the_status_updater_only_through_the_templates_rule(strict_lab):
    region, account = strict_lab.info["region"], "123456789012"
    ours = job_state_change({"jobArn": f"arn:aws:batch:{region}:{account}:job/x", "status": "RUNNING",
                             "jobQueue": f"arn:aws:batch:{region}:{account}:job-queue/labbatch-example-spot"},
                            account=account, region=region)
    theirs = json.loads(json.dumps(ours).replace("labbatch-example-spot", "labbatch-other-spot"))
    assert strict_lab.event_rules.matching(ours) and not strict_lab.event_rules.matching(theirs)
    # The executor's own events carry the queue's ARN, so every one of this lab's jobs got through.
    assert strict_lab.event_rules.dropped == 0


def test_a_second_kms_labs_roles_cannot_use_this_labs_key():
    region, account = "us-east-1", "123456789012"
    ours = assembly.templates(parse_lab(lab_data("vault", encryption="kms"), "vault.yaml"))
    theirs = assembly.templates(parse_lab(lab_data("vault-b", encryption="kms"), "vault-b.yaml"))
    key_arn = f"arn:aws:kms:{region}:{account}:key/k-vault"
    place = tpl.Place(account=account, region=region, key_id="k-vault", ssm={"/labbatch/vault/kms-key-arn": key_arn})
    key_policy = tpl.resource_policies(ours, place)[key_arn]
    via_s3 = Request("kms:Decrypt", key_arn, {"kms:ViaService": f"s3.{region}.amazonaws.com", "kms:CallerAccount": account})
    our_roles, our_arns = tpl.roles(ours, place), tpl.principal_roles(ours, place)
    job = our_roles[our_arns["job-role"]]
    ours_decision = evaluate(Principal("job-role", job.arn, account, job.tags, job.policies), via_s3, key_policy,
                             key_policy=True)
    assert ours_decision.allowed, ours_decision
    # The status updater publishes failures to the key-encrypted alert topic: SNS uses the key for it.
    updater = our_roles[our_arns["status-updater"]]
    via_sns = Request("kms:GenerateDataKey", key_arn, {"kms:ViaService": f"sns.{region}.amazonaws.com",
                                                       "kms:CallerAccount": account})
    assert evaluate(Principal("status-updater", updater.arn, account, updater.tags, updater.policies), via_sns,
                    key_policy, key_policy=True).allowed
    # Their roles carry their own lab's tag, and their identity policies name their own key.
    their_place = tpl.Place(account=account, region=region, key_id="k-b",
                            ssm={"/labbatch/vault-b/kms-key-arn": f"arn:aws:kms:{region}:{account}:key/k-b"})
    for name, arn in tpl.principal_roles(theirs, their_place).items():
        role = tpl.roles(theirs, their_place)[arn]
        decision = evaluate(Principal(name, arn, account, role.tags, role.policies), via_s3, key_policy, key_policy=True)
        assert not decision.allowed, (name, decision)
