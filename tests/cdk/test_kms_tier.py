"""The compliance tier (`encryption: kms`, `audit: true`) on synthesized templates.

`vault` is a KMS lab with audit on LabBatch's own AMI (so the launch template declares the root
volume too); `vault-b` is a second KMS lab synthesized beside it.
"""

from __future__ import annotations

import json

import pytest

from tests.cdk.conftest import resources
from tests.cdk.test_lab_isolation import render

CRYPTO = {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKey*",
          "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:ReEncrypt*",
          "kms:CreateGrant", "kms:*"}
ROOT = "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
SERVICES = {"logs.${AWS::Region}.amazonaws.com", "logging.s3.amazonaws.com", "budgets.amazonaws.com",
            "cloudtrail.amazonaws.com"}
AUTOSCALING = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/autoscaling.amazonaws.com/" \
              "AWSServiceRoleForAutoScaling"


def key_policy(lab) -> list[dict]:
    return lab.storage_json["Resources"]["LabKey"]["Properties"]["KeyPolicy"]["Statement"]


def names_the_key(value, template: dict, lab: str) -> bool:
    """The lab's key: its ARN in the storage stack; elsewhere the SSM-typed parameter the storage stack fills."""
    if value == {"Fn::GetAtt": ["LabKey", "Arn"]}:
        return True
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = template.get("Parameters", {}).get(value["Ref"], {})
        return (parameter.get("Type") == "AWS::SSM::Parameter::Value<String>"
                and parameter.get("Default") == f"/labbatch/{lab}/kms-key-arn")
    return False


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_key_is_retained_rotated_pinned_and_published_to_the_other_stacks(synthesized_kms):
    storage = synthesized_kms["vault"].storage_json["Resources"]
    key = storage["LabKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"
    assert key["Properties"]["EnableKeyRotation"] is True and key["Properties"]["PendingWindowInDays"] == 30
    [alias] = resources(synthesized_kms["vault"].storage_json, "AWS::KMS::Alias").values()
    assert alias["Properties"]["AliasName"] == "alias/labbatch-vault"
    [parameter] = resources(synthesized_kms["vault"].storage_json, "AWS::SSM::Parameter").values()
    assert parameter["Properties"]["Name"] == "/labbatch/vault/kms-key-arn"
    assert parameter["Properties"]["Value"] == {"Fn::GetAtt": ["LabKey", "Arn"]}
    # No stack exports anything another stack imports: the key reaches them by the parameter.
    for template in synthesized_kms["vault"].templates().values():
        assert "Fn::ImportValue" not in json.dumps(template)


def test_every_store_of_a_kms_lab_names_the_labs_key(synthesized_kms):
    lab = synthesized_kms["vault"]
    seen: dict[str, int] = {}
    for template in lab.templates().values():
        def check(cfn_type: str, pick) -> None:
            for logical_id, resource in resources(template, cfn_type).items():
                for value in pick(resource["Properties"]):
                    assert names_the_key(value, template, "vault"), (logical_id, value)
                    seen[cfn_type] = seen.get(cfn_type, 0) + 1

        def bucket(p):
            [rule] = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
            assert rule["BucketKeyEnabled"] is True
            return [rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]]

        def table(p):
            assert p["SSESpecification"]["SSEEnabled"] is True and p["SSESpecification"]["SSEType"] == "KMS"
            return [p["SSESpecification"]["KMSMasterKeyId"]]

        def launch_template(p):
            devices = p["LaunchTemplateData"]["BlockDeviceMappings"]
            assert {d["DeviceName"] for d in devices} == {"/dev/xvda", "/dev/xvdb"}  # root and scratch
            assert all(d["Ebs"]["Encrypted"] is True for d in devices)
            return [d["Ebs"].get("KmsKeyId") for d in devices]

        def function(p):
            # Every function with an environment encrypts it with the lab's key.
            return [p.get("KmsKeyArn")] if p.get("Environment") else []

        check("AWS::S3::Bucket", bucket)
        check("AWS::DynamoDB::Table", table)
        check("AWS::Logs::LogGroup", lambda p: [p.get("KmsKeyId")])
        check("AWS::SNS::Topic", lambda p: [p.get("KmsMasterKeyId")])
        check("AWS::SQS::Queue", lambda p: [p.get("KmsMasterKeyId")])
        check("AWS::Lambda::Function", function)
        check("AWS::EC2::LaunchTemplate", launch_template)
        check("AWS::CloudTrail::Trail", lambda p: [p.get("KMSKeyId")])
    assert seen == {"AWS::S3::Bucket": 4, "AWS::DynamoDB::Table": 1, "AWS::Logs::LogGroup": 6, "AWS::SNS::Topic": 1,
                    "AWS::SQS::Queue": 1, "AWS::Lambda::Function": 2, "AWS::EC2::LaunchTemplate": 2,
                    "AWS::CloudTrail::Trail": 1}


def test_every_log_group_of_a_kms_lab_is_one_the_key_lets_cloudwatch_logs_use(synthesized_kms):
    [logs] = [s for s in key_policy(synthesized_kms["vault"]) if s.get("Sid") == "CloudWatchLogsForTheLabsLogGroups"]
    pattern = render(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert pattern.endswith(":log-group:/labbatch/vault/*")
    for template in synthesized_kms["vault"].templates().values():
        for logical_id, group in resources(template, "AWS::Logs::LogGroup").items():
            assert group["Properties"]["LogGroupName"].startswith("/labbatch/vault/"), logical_id


def test_the_key_policy_grants_no_principal_outside_the_lab_and_its_services(synthesized_kms):
    statements = key_policy(synthesized_kms["vault"])
    assert "vault-b" not in json.dumps(statements)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = set(as_list(statement["Action"]))
        crypto = actions & CRYPTO
        principal = statement["Principal"]
        assert principal != "*" and set(principal) <= {"AWS", "Service"}, statement
        conditions = statement.get("Condition", {})
        flat = {k: render(v) if not isinstance(v, list) else [render(x) for x in v]
                for op in conditions.values() for k, v in op.items()}
        for service in as_list(principal.get("Service", [])):
            assert render(service) in SERVICES, statement
            # Each service only for this lab's resources, or on this account's behalf.
            assert conditions and ("vault" in json.dumps(flat) or flat.get("aws:SourceAccount") == "${AWS::AccountId}"), \
                statement
        for aws in as_list(principal.get("AWS", [])):
            who = render(aws)
            if who == AUTOSCALING:
                continue  # EC2 Auto Scaling's service-linked role: the scratch and root volumes
            if statement["Sid"] == "AdministerNotUse":
                assert who == ROOT and not crypto and not conditions, statement
                continue
            # Anything else that may use the key names who, inside the account or the listed principals.
            assert crypto, statement
            if flat.get("aws:PrincipalTag/labbatch:lab") is not None:
                assert flat["aws:PrincipalTag/labbatch:lab"] == "vault"
                assert flat["aws:PrincipalArn"].endswith(":role/*")
            elif statement["Sid"] == "DeployerCreatesServiceGrants":
                assert "cfn-exec-role" in json.dumps(conditions["ArnEquals"]["aws:PrincipalArn"])
                assert {render(v).split(".")[0] for v in conditions["StringEquals"]["kms:ViaService"]} == \
                       {"dynamodb", "lambda"}
            else:
                # The lab's API principals, to upload inputs and download results through S3 only.
                assert flat["kms:ViaService"] == "s3.${AWS::Region}.amazonaws.com", statement
                assert flat.get("aws:PrincipalArn") == ["arn:aws:iam::111122223333:role/VaultScientist"] or \
                    flat.get("kms:CallerAccount") == ["444455556666"], statement


def test_the_labs_roles_that_use_the_key_carry_its_tag_and_a_second_labs_roles_cannot(synthesized_kms):
    for lab, other in (("vault", "vault-b"), ("vault-b", "vault")):
        using = 0
        for template in synthesized_kms[lab].templates().values():
            text = json.dumps(template)
            assert f"/labbatch/{other}/kms-key-arn" not in text and f"labbatch-{other}" not in text.replace(
                f"labbatch-{lab}", "")
            roles = resources(template, "AWS::IAM::Role")
            tags = {rid: {t["Key"]: t["Value"] for t in role["Properties"].get("Tags", [])}
                    for rid, role in roles.items()}
            # The key policy admits roles by this tag: no role of a lab carries another lab's
            # (CDK's own custom-resource role carries none, and so cannot use any lab's key).
            assert all(t.get("labbatch:lab") in (lab, None) for t in tags.values())
            for policy in resources(template, "AWS::IAM::Policy").values():
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    if any(a.startswith("kms:") for a in as_list(statement["Action"])):
                        using += 1
                        assert all(names_the_key(r, template, lab) for r in as_list(statement["Resource"])), statement
                        assert all(tags[r["Ref"]].get("labbatch:lab") == lab for r in policy["Properties"]["Roles"])
        assert using == 3  # the job role, the API handler and the status updater


def test_audit_trail_records_data_events_of_the_labs_buckets_and_ledger_into_its_log_bucket(synthesized_kms):
    storage = synthesized_kms["vault"].storage_json
    [(trail_id, trail)] = resources(storage, "AWS::CloudTrail::Trail").items()
    props = trail["Properties"]
    assert props["TrailName"] == "labbatch-vault-data-events"
    assert props["S3BucketName"] == {"Ref": "BucketsAccessLogsA5F88218"} and props["S3KeyPrefix"] == "cloudtrail"
    assert props["EnableLogFileValidation"] is True and props["IsLogging"] is True
    assert props["IsMultiRegionTrail"] is False and props["IncludeGlobalServiceEvents"] is False
    by_type = {}
    for selector in props["AdvancedEventSelectors"]:
        fields = {f["Field"]: f for f in selector["FieldSelectors"]}
        assert fields["eventCategory"]["Equals"] == ["Data"]  # no management events: no second copy billed
        by_type[fields["resources.type"]["Equals"][0]] = fields["resources.ARN"]
    assert {render(a) for a in by_type["AWS::S3::Object"]["StartsWith"]} == {
        "${BucketsInputs2121D50A.Arn}/", "${BucketsReferencesA6AE63EC.Arn}/", "${BucketsResultsB59121EA.Arn}/"}
    assert by_type["AWS::DynamoDB::Table"]["Equals"] == [{"Fn::GetAtt": ["JobLedgerTable532EFCFA", "Arn"]}]
    policy = resources(storage, "AWS::S3::BucketPolicy")["BucketsAccessLogsPolicy7A0117B8"]
    trail_statements = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                        if s.get("Principal", {}).get("Service") == "cloudtrail.amazonaws.com"]
    assert {s["Action"] for s in trail_statements} == {"s3:GetBucketAcl", "s3:PutObject"}
    assert all(render(s["Condition"]["StringEquals"]["aws:SourceArn"]).endswith(":trail/labbatch-vault-data-events")
               for s in trail_statements)
    assert "BucketsAccessLogsPolicy7A0117B8" in trail["DependsOn"]
    assert resources(synthesized_kms["vault-b"].storage_json, "AWS::CloudTrail::Trail") == {}


def test_the_default_lab_has_no_key_no_trail_and_keeps_sse_s3(synthesized):
    example = synthesized["example"]
    for template in example.templates().values():
        assert not resources(template, "AWS::KMS::Key") and not resources(template, "AWS::CloudTrail::Trail")
        assert "kms-key-arn" not in json.dumps(template)
    for bucket in resources(example.storage_json, "AWS::S3::Bucket").values():
        [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("part", ["Storage", "Compute", "Api", "Operations"])
def test_genomics_core_uses_the_compliance_tier(synthesized, part):
    lab = synthesized["genomics-core"]
    template = lab.templates()[part]
    if part == "Storage":
        assert "LabKey" in template["Resources"] and resources(template, "AWS::CloudTrail::Trail")
    else:
        assert "/labbatch/genomics-core/kms-key-arn" in json.dumps(template.get("Parameters", {}))
