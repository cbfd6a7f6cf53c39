"""Why a deployed lab's instances never joined their cluster: read from their consoles.

A compute environment that wants vCPUs (desiredvCpus > 0) but has no container instance in its
ECS cluster has launched instances that never started the ECS agent. When a LabBatch boot step
failed, that instance says why on its console (labbatch_contract/boot_reasons.py), which EC2's
GetConsoleOutput returns without the agent. This is what `labbatch why` (for a RUNNABLE job) and
`labbatch doctor` add to what Batch and the job API can say.

The caller's own AWS credentials make the calls (the labbatch-<lab>-diagnose policy grants
them: lab_constructs/boot_diagnosis.py): ecs:ListContainerInstances, ec2:DescribeInstances,
ec2:GetConsoleOutput. A local lab has no EC2 instances: callers skip this there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from labbatch_contract import boot_reasons, names
from labbatch_contract.boot_reasons import BootFailure

# An instance boots and joins in 2-4 minutes (AL2023, runner tree pulled); one that has shown no
# failure line and still not joined after this long is reported as not joined, without a reason.
SILENT_AFTER_SECONDS = 600
# AWS's words for a call the caller's policies do not allow, and for no credentials at all.
_REFUSED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                            "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken"})
_LATEST_UNSUPPORTED = frozenset({"UnsupportedOperation", "InvalidParameterCombination", "InvalidParameterValue"})


class BootLookupFailed(Exception):
    """The consoles could not be read (most often: the caller lacks the diagnose policy)."""


@dataclass(frozen=True)
class NotJoined:
    """An instance a compute environment launched that has not joined its cluster."""
    instance_id: str
    compute_environment: str
    launched_seconds_ago: int | None
    failures: tuple[BootFailure, ...] = field(default=())

    def message(self) -> str:
        head = f"instance {self.instance_id} of compute environment {self.compute_environment} has not joined its cluster"
        if self.failures:
            return head + ": " + "; ".join(f"boot step {f.step} failed: {f.reason}" for f in self.failures)
        age = f" {self.launched_seconds_ago // 60} min after launch" if self.launched_seconds_ago is not None else ""
        return head + f"{age}, and its console names no LabBatch boot failure"

    def fix(self) -> str:
        terminate = f"aws ec2 terminate-instances --instance-ids {self.instance_id}"
        if self.failures:
            return ("it will never run jobs: fix what the reason names (for the runner tree: the image in the "
                    f"CDK asset repository and the instance role's pull access; redeploy), then {terminate} so "
                    "that Batch launches another")
        return (f"read its console (aws ec2 get-console-output --latest --instance-id {self.instance_id}) for the "
                f"boot's own errors; {terminate} to have Batch launch another")


def environments_of(view: Mapping[str, Any], queue: str | None = None,
                    pool: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(pool, environment) of the lab's queues in GET /lab, each environment once; only those of
    `queue` ("spot", "on-demand") and `pool` when given."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in view.get("queues") or []:
        if (queue and entry.get("queue") != queue) or (pool and (entry.get("pool") or "default") != pool):
            continue
        for environment in entry.get("compute_environments") or []:
            found.setdefault(environment["name"], (entry.get("pool") or "default", environment))
    return list(found.values())


def instances_not_joined(lab: str, environments: Iterable[tuple[str, Mapping[str, Any]]],
                         client: Callable[[str], Any], *, now: datetime | None = None) -> list[NotJoined]:
    """Instances of `environments` that have not joined: every instance of an environment that
    wants vCPUs and has no container instance, when its console shows a boot failure or it was
    launched longer than SILENT_AFTER_SECONDS ago. `client(service)` makes a boto3 client.
    Raises BootLookupFailed when AWS refuses a call."""
    now = now or datetime.now(timezone.utc)
    found: list[NotJoined] = []
    try:
        ecs = ec2 = None
        for pool, environment in environments:
            kind = boot_reasons.KIND_OF_TYPE.get(str(environment.get("type") or ""))
            if not (environment.get("desired_vcpus") or 0) > 0 or not environment.get("ecs_cluster") or kind is None:
                continue
            ecs = ecs or client("ecs")
            if ecs.list_container_instances(cluster=environment["ecs_cluster"], maxResults=1).get("containerInstanceArns"):
                continue  # one has joined: this environment runs jobs
            ec2 = ec2 or client("ec2")
            for instance in _instances(ec2, lab, boot_reasons.compute_environment_tag(pool, kind)):
                launched = instance.get("LaunchTime")
                age = int((now - launched).total_seconds()) if isinstance(launched, datetime) else None
                failures = tuple(boot_reasons.failures_in(_console(ec2, instance["InstanceId"])))
                if failures or (age is not None and age >= SILENT_AFTER_SECONDS):
                    found.append(NotJoined(instance["InstanceId"], environment["name"], age, failures))
    except Exception as error:  # noqa: BLE001 - botocore's errors and missing credentials alike
        raise BootLookupFailed(_refusal(lab, error)) from None
    return found


def _instances(ec2, lab: str, environment_tag: str) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{names.LAB_TAG}", "Values": [lab]},
               {"Name": f"tag:{boot_reasons.COMPUTE_ENVIRONMENT_TAG}", "Values": [environment_tag]},
               {"Name": "instance-state-name", "Values": ["pending", "running"]}]
    instances: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        instances += [i for reservation in page.get("Reservations", []) for i in reservation.get("Instances", [])]
    return instances


def _console(ec2, instance_id: str) -> str:
    """The instance's console text. `Latest` asks for the serial console as it is now (Nitro
    instances); other instance types only have the buffer EC2 posts around state changes.
    botocore base64-decodes `Output` itself."""
    from botocore.exceptions import ClientError

    try:
        return ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in _LATEST_UNSUPPORTED:
            raise
    return ec2.get_console_output(InstanceId=instance_id).get("Output") or ""


def _refusal(lab: str, error: Exception) -> str:
    response = getattr(error, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    text = f"{code}: {response['Error'].get('Message')}" if code else str(error) or type(error).__name__
    if code in _REFUSED_CODES or code is None:
        return (f"could not read the lab's instances ({text}); attach the {names.diagnose_policy(lab)} policy "
                "to the identity you run this as")
    return f"could not read the lab's instances ({text})"


# --- `labbatch why` ---------------------------------------------------------------------------------


def for_waiting_job(connection, api, job: Mapping[str, Any]) -> dict[str, Any] | None:
    """For a RUNNABLE job of a deployed lab: `{"instances_not_joined": [...]}` when instances of its
    queue's compute environments did not join, `{"instances_not_checked": why}` when that could not
    be read, None otherwise (and always for a local lab, which has no instances)."""
    from labbatch.client.sdk import local_lab_state

    if job.get("status") != "RUNNABLE" or local_lab_state(connection.endpoint) is not None:
        return None
    view = api.lab()
    try:
        found = instances_not_joined(str(view.get("lab")), environments_of(view, job.get("queue"), job.get("pool")),
                                     aws_client_maker(connection.profile, connection.region))
    except BootLookupFailed as error:
        return {"instances_not_checked": str(error)} if job.get("waiting_because") else None
    if not found:
        return None
    return {"instances_not_joined": [
        {"instance_id": n.instance_id, "compute_environment": n.compute_environment,
         "failures": [{"step": f.step, "reason": f.reason} for f in n.failures], "message": n.message(), "fix": n.fix()}
        for n in found]}


def why_lines(found: Mapping[str, Any] | None) -> list[str]:
    if not found:
        return []
    if "instances_not_checked" in found:
        return [f"Instances: not checked: {found['instances_not_checked']}"]
    lines = []
    for instance in found["instances_not_joined"]:
        lines += [f"Also: {instance['message']}", f"Fix: {instance['fix']}"]
    return lines


def aws_client_maker(profile: str | None, region: str) -> Callable[[str], Any]:
    def client(service: str):
        import boto3

        return boto3.Session(profile_name=profile, region_name=region).client(service)
    return client
