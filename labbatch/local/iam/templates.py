"""The lab's principals and resource policies, read from its synthesized templates.

CloudFormation intrinsics (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select) are resolved against
local mode's own names and ARNs (`Place`), the same names the constructs give the deployed
resources (labbatch_contract.names). What cannot be resolved becomes an `unresolved:` string that
matches no real ARN: a statement about a resource local mode does not have can neither allow nor
deny anything here, and the report shows it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from moto.iam.aws_managed_policies import aws_managed_policies_data

_MANAGED = json.loads(aws_managed_policies_data)
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass(frozen=True)
class Place:
    """Where the lab lives locally: account, Region, the lab's key and SSM parameter values."""
    account: str
    region: str
    api_id: str = "localapigw"
    ssm: dict[str, str] = field(default_factory=dict)  # parameter name -> value (the lab key's ARN)
    key_id: str | None = None
    # The account the lab file pins (`account:`): local mode runs it as `account`, so what the
    # templates spell with it literally (ARNs, bucket names) names the local account instead.
    lab_account: str | None = None


@dataclass(frozen=True)
class Policy:
    """One policy document and the name the report gives its statements."""
    name: str
    document: dict[str, Any]

    def statements(self) -> list[dict[str, Any]]:
        found = self.document.get("Statement", [])
        return found if isinstance(found, list) else [found]


@dataclass(frozen=True)
class Role:
    logical_id: str
    stack: str
    arn: str
    tags: dict[str, str]
    policies: tuple[Policy, ...]


class Resolver:
    def __init__(self, stacks: dict[str, dict], place: Place) -> None:
        self.stacks, self.place = stacks, place

    def resolve(self, value: Any, stack: str) -> Any:
        if isinstance(value, str) and self.place.lab_account and self.place.lab_account != self.place.account:
            # Everywhere: ARNs (`:111122223333:`) and the names built from it (buckets end `-<account>-<region>`).
            return value.replace(self.place.lab_account, self.place.account)
        if isinstance(value, list):
            return [self.resolve(v, stack) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self._ref(arg, stack)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(logical, attribute, stack)
            if fn == "Fn::Join":
                separator, parts = arg
                return self.resolve(separator.join(str(self.resolve(p, stack)) for p in parts), stack)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.resolve(v, stack) for k, v in variables.items()}
                return _SUB.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables
                                else str(self._sub_name(m.group(1), stack)), text)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items, stack)[int(index)]
            if fn.startswith("Fn::"):
                return f"unresolved:{fn}"
        return {k: self.resolve(v, stack) for k, v in value.items()}

    def _sub_name(self, name: str, stack: str) -> str:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self._get_att(logical, attribute, stack)
        return self._ref(name, stack)

    def _pseudo(self, name: str, stack: str) -> str | None:
        return {"AWS::Partition": "aws", "AWS::Region": self.place.region, "AWS::AccountId": self.place.account,
                "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack, "AWS::NoValue": ""}.get(name)

    def _resource(self, logical: str, stack: str) -> dict | None:
        return self.stacks[stack].get("Resources", {}).get(logical)

    def _ref(self, name: str, stack: str) -> str:
        pseudo = self._pseudo(name, stack)
        if pseudo is not None:
            return pseudo
        parameter = self.stacks[stack].get("Parameters", {}).get(name)
        if parameter is not None:
            # SSM-typed parameters (the lab key's ARN) resolve to the value local mode put there.
            return self.place.ssm.get(str(parameter.get("Default")), f"unresolved:parameter:{name}")
        resource = self._resource(name, stack)
        if resource is None:
            return f"unresolved:{name}"
        kind, props = resource["Type"], resource.get("Properties", {})
        region, account = self.place.region, self.place.account
        named = {"AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::Table": "TableName",
                 "AWS::Logs::LogGroup": "LogGroupName", "AWS::IAM::Role": "RoleName",
                 "AWS::Batch::JobQueue": "JobQueueName", "AWS::Lambda::Function": "FunctionName"}
        if kind in named:
            given = self.resolve(props.get(named[kind]), stack)
            if kind == "AWS::Batch::JobQueue":
                return f"arn:aws:batch:{region}:{account}:job-queue/{given or name}"
            return given or f"{stack}-{name}"  # CloudFormation's generated names: stack plus logical id
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{region}:{account}:{self.resolve(props.get('TopicName'), stack) or name}"
        if kind == "AWS::KMS::Key":
            return self.place.key_id or f"unresolved:{name}"
        if kind == "AWS::ApiGateway::RestApi":
            return self.place.api_id
        return f"unresolved:{name}"

    def _get_att(self, logical: str, attribute: str, stack: str) -> str:
        resource = self._resource(logical, stack)
        if resource is not None and (resource["Type"], attribute) == ("AWS::Batch::JobQueue", "JobQueueArn"):
            return self._ref(logical, stack)  # a queue's Ref is its ARN too
        if resource is None or attribute != "Arn":
            return f"unresolved:{logical}.{attribute}"
        kind, ref = resource["Type"], self._ref(logical, stack)
        region, account = self.place.region, self.place.account
        arns = {"AWS::S3::Bucket": f"arn:aws:s3:::{ref}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{ref}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{ref}:*",
                "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{ref}",
                "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{ref}",
                "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{stack}-{logical}",
                "AWS::Events::Rule": f"arn:aws:events:{region}:{account}:rule/{stack}-{logical}",
                "AWS::KMS::Key": f"arn:aws:kms:{region}:{account}:key/{ref}"}
        return arns.get(kind, f"unresolved:{logical}.Arn")


def _of_type(stacks: dict[str, dict], kind: str) -> list[tuple[str, str, dict]]:
    return [(stack, logical, resource) for stack, template in stacks.items()
            for logical, resource in template.get("Resources", {}).items() if resource["Type"] == kind]


def managed_policy(arn: str) -> Policy:
    name = arn.rsplit("/", 1)[-1]
    if ":iam::aws:policy/" not in arn or name not in _MANAGED:
        raise ValueError(f"managed policy {arn} is not an AWS managed policy local mode knows")
    return Policy(name=f"aws-managed:{name}", document=_MANAGED[name]["Document"])


def _attached(resolver: Resolver, stack: str, arn: Any) -> Policy:
    """A role's ManagedPolicyArns entry: the lab's own managed policy (a Ref to one in the template,
    such as the Nextflow access policy), else an AWS managed policy by its ARN."""
    logical = arn.get("Ref") if isinstance(arn, dict) else None
    target = resolver._resource(logical, stack) if isinstance(logical, str) else None
    if target is not None and target["Type"] == "AWS::IAM::ManagedPolicy":
        return Policy(name=logical, document=resolver.resolve(target["Properties"]["PolicyDocument"], stack))
    return managed_policy(resolver.resolve(arn, stack))


def member_policies(stacks: dict[str, dict], place: Place) -> list[Policy]:
    """The lab's managed policies made for people to attach (the Nextflow access policy): the
    local scientist holds them, as a lab member who runs Nextflow would."""
    resolver = Resolver(stacks, place)
    return [Policy(name=logical, document=resolver.resolve(resource["Properties"]["PolicyDocument"], stack))
            for stack, logical, resource in _of_type(stacks, "AWS::IAM::ManagedPolicy")]


def roles(stacks: dict[str, dict], place: Place) -> dict[str, Role]:
    """Every IAM role of the lab by its ARN, with its inline, attached and managed policies."""
    resolver = Resolver(stacks, place)
    found: dict[str, dict] = {}
    for stack, logical, resource in _of_type(stacks, "AWS::IAM::Role"):
        props = resource.get("Properties", {})
        policies = [_attached(resolver, stack, arn) for arn in props.get("ManagedPolicyArns", [])]
        policies += [Policy(name=f"{logical}/{p['PolicyName']}", document=resolver.resolve(p["PolicyDocument"], stack))
                     for p in props.get("Policies", [])]
        tags = {t["Key"]: str(resolver.resolve(t["Value"], stack)) for t in props.get("Tags", [])}
        found[logical] = {"stack": stack, "arn": resolver._get_att(logical, "Arn", stack), "tags": tags,
                          "policies": policies}
    for stack, logical, resource in _of_type(stacks, "AWS::IAM::Policy") + _of_type(stacks, "AWS::IAM::ManagedPolicy"):
        props = resource["Properties"]
        for role in props.get("Roles", []):
            role_logical = role.get("Ref") if isinstance(role, dict) else None
            if role_logical in found:
                found[role_logical]["policies"].append(
                    Policy(name=logical, document=resolver.resolve(props["PolicyDocument"], stack)))
    return {v["arn"]: Role(logical_id=k, stack=v["stack"], arn=v["arn"], tags=v["tags"], policies=tuple(v["policies"]))
            for k, v in found.items()}


def _role_arn_of(resolver: Resolver, stack: str, value: Any) -> str | None:
    resolved = resolver.resolve(value, stack) if value is not None else None
    return resolved if isinstance(resolved, str) and ":role/" in resolved else None


def principal_roles(stacks: dict[str, dict], place: Place) -> dict[str, str]:
    """Local mode's principal names -> role ARN, found by what each role does in the templates: the
    function the API's methods integrate, the one the Batch rule targets, the API's authorizer, the
    job definitions' job and execution roles, the compute environments' instance profile."""
    resolver = Resolver(stacks, place)
    functions = {logical: (stack, resource) for stack, logical, resource in _of_type(stacks, "AWS::Lambda::Function")}

    def function_role(reference: Any) -> str | None:
        text = json.dumps(reference)
        for logical, (stack, resource) in functions.items():
            if f'"{logical}"' in text:
                return _role_arn_of(resolver, stack, resource["Properties"].get("Role"))
        return None

    found: dict[str, str] = {}
    for _, _, method in _of_type(stacks, "AWS::ApiGateway::Method"):
        role = function_role(method["Properties"].get("Integration", {}).get("Uri"))
        if role:
            found["api-handler"] = role
    for _, _, rule in _of_type(stacks, "AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            role = function_role(target.get("Arn"))
            if role:
                found["status-updater"] = role
    for _, _, authorizer in _of_type(stacks, "AWS::ApiGateway::Authorizer"):
        role = function_role(authorizer["Properties"].get("AuthorizerUri"))
        if role:
            found["authorizer"] = role
    for stack, _, definition in _of_type(stacks, "AWS::Batch::JobDefinition"):
        container = definition["Properties"].get("ContainerProperties", {})
        for principal, key in (("job-role", "JobRoleArn"), ("execution-role", "ExecutionRoleArn")):
            role = _role_arn_of(resolver, stack, container.get(key))
            if role:
                found[principal] = role
    for stack, _, profile in _of_type(stacks, "AWS::IAM::InstanceProfile"):
        for role in profile["Properties"].get("Roles", []):
            logical = role.get("Ref") if isinstance(role, dict) else None
            if logical:
                found["instance-role"] = resolver._get_att(logical, "Arn", stack)
    return found


def resource_policies(stacks: dict[str, dict], place: Place) -> dict[str, list[Policy]]:
    """Resource ARN -> its resource policies: bucket policies, the lab key's key policy, the REST
    API's resource policy (its `execute-api:/` shorthand expanded), SNS topic policies."""
    resolver = Resolver(stacks, place)
    found: dict[str, list[Policy]] = {}
    for stack, logical, resource in _of_type(stacks, "AWS::S3::BucketPolicy"):
        props = resource["Properties"]
        bucket = resolver.resolve(props["Bucket"], stack)
        found.setdefault(f"arn:aws:s3:::{bucket}", []).append(
            Policy(name=logical, document=resolver.resolve(props["PolicyDocument"], stack)))
    for stack, logical, resource in _of_type(stacks, "AWS::KMS::Key"):
        if place.key_id:
            arn = f"arn:aws:kms:{place.region}:{place.account}:key/{place.key_id}"
            found.setdefault(arn, []).append(
                Policy(name=logical, document=resolver.resolve(resource["Properties"]["KeyPolicy"], stack)))
    for stack, logical, resource in _of_type(stacks, "AWS::ApiGateway::RestApi"):
        document = resource["Properties"].get("Policy")
        if document:
            text = json.dumps(resolver.resolve(document, stack)).replace(
                '"execute-api:/', f'"arn:aws:execute-api:{place.region}:{place.account}:{place.api_id}/')
            found.setdefault(f"arn:aws:execute-api:{place.region}:{place.account}:{place.api_id}", []).append(
                Policy(name=logical, document=json.loads(text)))
    for stack, logical, resource in _of_type(stacks, "AWS::SNS::TopicPolicy"):
        props = resource["Properties"]
        for topic in props.get("Topics", []):
            found.setdefault(resolver.resolve(topic, stack), []).append(
                Policy(name=logical, document=resolver.resolve(props["PolicyDocument"], stack)))
    return found


def event_patterns(stacks: dict[str, dict], place: Place) -> list[tuple[str, dict]]:
    """(rule logical id, resolved event pattern) of every EventBridge rule whose target is a function."""
    resolver = Resolver(stacks, place)
    return [(logical, resolver.resolve(rule["Properties"]["EventPattern"], stack))
            for stack, logical, rule in _of_type(stacks, "AWS::Events::Rule")
            if "EventPattern" in rule["Properties"]]
