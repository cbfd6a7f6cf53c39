"""Why is this job waiting? The `waiting_because` of GET /jobs/{id}.

Only for a job that Batch has held in RUNNABLE for longer than WAITING_AFTER_SECONDS (a
fresh job waits for an instance to boot; that needs no explanation). The explanation is
built from what Batch says itself, in this order:

1. the job queue: DISABLED (keeps its jobs, starts none) or INVALID;
2. the queue's compute environments: all DISABLED or INVALID (with Batch's statusReason);
3. the job's own statusReason, Batch's "blocked at the head of the queue" reasons
   (docs.aws.amazon.com/batch/latest/userguide/job_stuck_in_runnable.html):
   MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT (larger than any instance),
   MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE (more vCPUs than the environments' max),
   CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY (EC2 has none of the instance types),
   MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS, ACTION_REQUIRED (environments invalid);
4. the environments at their max vCPUs: the vCPUs of the lab's STARTING and RUNNING jobs on
   them (ListJobs, DescribeJobs) plus this job's are more than they may run;
5. older jobs ahead of it in the queue; otherwise the environments are scaling up.

A job the queue's state time limit cancelled (Batch: "Canceled by JobStateTimeLimit action due
to reason: ...") says so in plain words, from the ledger alone.

Costs nothing for jobs that are not waiting: Batch is asked only once the ledger shows the job
queued for longer than the threshold.
"""

from __future__ import annotations

import math
import os
import re
import time
from datetime import datetime
from typing import Any

from labbatch_contract import batch_reasons
from labbatch_contract.settings import LabSettings
from labbatch_api.lab_state import environment_details, environment_order, is_usable, queue_details, short_name

WAITING_AFTER_SECONDS = 60.0
# Tests (and impatient local labs) set a shorter threshold here.
WAITING_AFTER_ENV = "LABBATCH_WAITING_AFTER_SECONDS"
QUEUED_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})
ACTIVE_STATUSES = ("STARTING", "RUNNING")
# Bounds on the calls one GET may make to count what is running.
MAX_LIST_PAGES = 10
MAX_ARRAY_PARENTS = 20

JOB_TOO_LARGE = batch_reasons.JOB_RESOURCE_REQUIREMENT
ABOVE_MAX_VCPUS = batch_reasons.COMPUTE_ENVIRONMENT_MAX_RESOURCE
NO_CAPACITY = batch_reasons.INSUFFICIENT_INSTANCE_CAPACITY
SERVICE_ROLE = batch_reasons.SERVICE_ROLE_PERMISSIONS
ENVIRONMENTS_INVALID = batch_reasons.ACTION_REQUIRED
# Batch's words after a jobStateTimeLimitAction; local mode's own words too.
_TIME_LIMIT = re.compile(
    r"Canceled by JobStateTimeLimit action due to reason: (?P<code>[A-Z_]+:[A-Z_]+)"
    r"|(?P<local>[A-Z_]+:[A-Z_]+) - cancelled by the job queue's state time limit"
)
_PLAIN_CODES = {
    JOB_TOO_LARGE: "it asked for more vCPUs or memory than any instance type of its compute environments has",
    ABOVE_MAX_VCPUS: "it asked for more vCPUs than its compute environments may run at once",
    NO_CAPACITY: "EC2 had no capacity for the lab's instance types",
}


def waiting_after_seconds(environ: Any = os.environ) -> float:
    raw = environ.get(WAITING_AFTER_ENV)
    try:
        return float(raw) if raw else WAITING_AFTER_SECONDS
    except ValueError:
        return WAITING_AFTER_SECONDS


def explain(record: dict[str, Any], batch, settings: LabSettings, *, now: float | None = None,
            threshold: float | None = None) -> dict[str, Any] | None:
    """The `waiting_because` of a job record, or None when there is nothing to explain."""
    now = time.time() if now is None else now
    threshold = waiting_after_seconds() if threshold is None else threshold
    status = record.get("status")
    if status == "FAILED":
        return cancelled_by_time_limit(record.get("status_reason"))
    batch_job_id = record.get("batch_job_id")
    if status not in QUEUED_STATUSES or not batch_job_id:
        return None
    queued_since = _epoch(record.get("submitted_at") or record.get("created_at"))
    if queued_since is not None and now - queued_since < threshold:
        return None
    job = _runnable_job(batch, batch_job_id)
    if job is None:
        return None
    waited = now - _runnable_since(job)
    if waited < threshold:
        return None
    answer = _explain_runnable(job, batch, settings)
    _in_terms_of_its_pool(answer, short_name(job["jobQueue"]), settings)
    answer["waiting_seconds"] = int(waited)
    answer["status_reason"] = job.get("statusReason")
    if job.get("arrayProperties", {}).get("index") is not None:
        answer["array_index"] = job["arrayProperties"]["index"]
    return answer


def cancelled_by_time_limit(status_reason: str | None) -> dict[str, Any] | None:
    match = _TIME_LIMIT.search(status_reason or "")
    if match is None:
        return None
    code = match.group("code") or match.group("local")
    why = _PLAIN_CODES.get(code, f"Batch reported {code}")
    return _answer(
        "cancelled_by_time_limit",
        f"Batch cancelled this job: it waited in RUNNABLE longer than its job queue's time limit because {why}. "
        "It never started, and nothing was charged for it.",
        _fix_for_code(code),
        reason_code=code,
    )


# --- what Batch says ------------------------------------------------------------------------


def _runnable_job(batch, batch_job_id: str) -> dict[str, Any] | None:
    jobs = batch.describe_jobs(jobs=[batch_job_id]).get("jobs", [])
    if not jobs:
        return None
    job = jobs[0]
    if job.get("arrayProperties", {}).get("size"):
        # An array parent waits through its children: explain the first RUNNABLE one.
        children = batch.list_jobs(arrayJobId=batch_job_id, jobStatus="RUNNABLE", maxResults=1).get(
            "jobSummaryList", [])
        if not children:
            return None
        described = batch.describe_jobs(jobs=[children[0]["jobId"]]).get("jobs", [])
        job = described[0] if described else None
    if job is None or job.get("status") != "RUNNABLE":
        return None
    return job


def _runnable_since(job: dict[str, Any]) -> float:
    """Batch gives no RUNNABLE timestamp: a job is RUNNABLE within seconds of its creation, or
    of its last attempt's end when it is retried."""
    moments = [job.get("createdAt") or 0] + [a.get("stoppedAt") or 0 for a in job.get("attempts", [])]
    return max(moments) / 1000


def _resources(job: dict[str, Any]) -> tuple[int, int]:
    container = job.get("container") or {}
    vcpus, memory = container.get("vcpus"), container.get("memory")
    for requirement in container.get("resourceRequirements") or []:
        if requirement.get("type") == "VCPU":
            vcpus = math.ceil(float(requirement["value"]))
        elif requirement.get("type") == "MEMORY":
            memory = int(requirement["value"])
    return int(vcpus or 0), int(memory or 0)


def _explain_runnable(job: dict[str, Any], batch, settings: LabSettings) -> dict[str, Any]:
    vcpus, memory = _resources(job)
    queue_name = short_name(job["jobQueue"])
    queue = queue_details(batch, [job["jobQueue"]]).get(queue_name)
    if queue is None:
        return _answer("queue_missing", f"Batch does not know job queue {queue_name} any more.",
                       "Redeploy the lab's compute stack (cdk deploy).", queue=queue_name)
    if queue.get("state") != "ENABLED":
        return _answer(
            "queue_disabled",
            f"Job queue {queue_name} is {queue.get('state')}: it keeps its jobs but starts none of them.",
            f"An administrator enables it: aws batch update-job-queue --job-queue {queue_name} --state ENABLED",
            queue=queue_name)
    if queue.get("status") == "INVALID":
        return _answer(
            "queue_invalid",
            f"Job queue {queue_name} is INVALID ({queue.get('statusReason') or 'no reason given'}).",
            "An administrator repairs the queue (aws batch describe-job-queues shows why) or redeploys the lab.",
            queue=queue_name)

    order = environment_order(queue)
    environments = environment_details(batch, order)
    known = [environments[ref] for ref in order if ref in environments]
    usable = [env for env in known if is_usable(env)]
    unusable = [env for env in known if not is_usable(env)]
    if not usable:
        invalid = [env for env in unusable if env.get("status") == "INVALID"]
        described = "; ".join(_environment_problem(env) for env in unusable) or "none is known to Batch"
        if invalid:
            return _answer("compute_environment_invalid",
                           f"No compute environment of queue {queue_name} can start instances: {described}.",
                           "An administrator fixes what the status reason names (often the instance role, subnets, "
                           "launch template or AMI) and redeploys the lab; the job then starts by itself.",
                           queue=queue_name, compute_environments=[env["computeEnvironmentName"] for env in invalid])
        commands = "; ".join(f"aws batch update-compute-environment --compute-environment "
                             f"{env['computeEnvironmentName']} --state ENABLED" for env in unusable)
        return _answer("compute_environment_disabled",
                       f"Every compute environment of queue {queue_name} is disabled: {described}.",
                       f"An administrator enables {'it' if len(unusable) == 1 else 'them'}: {commands}",
                       queue=queue_name, compute_environments=[env["computeEnvironmentName"] for env in unusable])

    instance_types = sorted({t for env in usable for t in (env.get("computeResources") or {}).get("instanceTypes", [])})
    max_vcpus = sum((env.get("computeResources") or {}).get("maxvCpus") or 0 for env in usable)
    pool = settings.pool_map().get(settings.pool_of_queue(queue_name) or "")
    limits = pool.limits if pool is not None else settings.limits
    queue_key = next((key for key, name in pool.queues.items() if name == queue_name), None) if pool else None
    if pool is not None and queue_key in pool.queue_max_vcpus:
        max_vcpus = min(max_vcpus, pool.queue_max_vcpus[queue_key])
    reason = job.get("statusReason") or ""
    note = _partly_unusable(unusable)
    if reason.startswith(JOB_TOO_LARGE):
        return _answer(
            "job_too_large",
            f"It asks for {vcpus} vCPUs and {memory:,} MiB, more than any instance type of its compute environments "
            f"({', '.join(instance_types) or 'unknown'}) can give a job.{note}",
            f"Resubmit asking for at most {limits.max_vcpus} vCPUs and {limits.max_memory_mib:,} MiB "
            "(`labbatch pipelines` shows the limits), or add a larger instance type to the lab's compute.instance_types.",
            queue=queue_name, vcpus=vcpus, memory_mib=memory, instance_types=instance_types)
    if reason.startswith(ABOVE_MAX_VCPUS):
        return _answer(
            "above_max_vcpus",
            f"It asks for {vcpus} vCPUs but the compute environments of queue {queue_name} may run at most "
            f"{max_vcpus} at once.{note}",
            f"Resubmit with at most {max_vcpus} vCPUs, or raise the lab's max vCPUs.",
            queue=queue_name, vcpus=vcpus, max_vcpus=max_vcpus)
    if reason.startswith(NO_CAPACITY):
        named = reason.split("instance type", 1)[1].strip(" []:.") if "instance type" in reason else ""
        return _answer(
            "capacity_unavailable",
            f"EC2 has no capacity now for {named or 'the instance types'} "
            f"(the lab's types: {', '.join(instance_types) or 'unknown'}). Batch keeps trying; the queue cancels the "
            f"job if this lasts longer than its time limit.{note}",
            "Wait, resubmit on the on-demand queue (--queue on-demand) if this is the spot queue, or add more "
            "instance types (other sizes or families) to the lab's compute.instance_types.",
            queue=queue_name, instance_types=instance_types)
    if reason.startswith(SERVICE_ROLE):
        return _answer("service_role_permissions",
                       f"Batch's service role lacks permissions it needs to start instances ({reason}).",
                       "Redeploy the lab (it uses Batch's service-linked role) or restore the role's policy.",
                       queue=queue_name)
    if reason.startswith(ENVIRONMENTS_INVALID):
        return _answer("compute_environment_invalid", f"Batch says: {reason}.{note}",
                       "An administrator fixes the compute environments (aws batch describe-compute-environments "
                       "shows why) and redeploys the lab.", queue=queue_name)

    in_use = _vcpus_in_use(batch, settings, queue_name, usable)
    if in_use + vcpus > max_vcpus:
        return _answer(
            "at_max_vcpus",
            f"Queue {queue_name}'s compute environments are at their max vCPUs: {in_use} of {max_vcpus} in use by "
            f"running jobs, and this job needs {vcpus} more. It starts when others finish.{note}",
            "Wait; or cancel jobs you no longer need; or an administrator raises the lab's max vCPUs.",
            queue=queue_name, vcpus_in_use=in_use, max_vcpus=max_vcpus, vcpus=vcpus)
    ahead = _jobs_ahead(batch, job)
    if ahead:
        return _answer(
            "queued_behind",
            f"{ahead} older job{'s are' if ahead > 1 else ' is'} ahead of it in queue {queue_name} "
            f"({in_use} of {max_vcpus} vCPUs in use); Batch starts a queue's jobs in order.{note}",
            "Wait; `labbatch list --status RUNNABLE` shows the jobs ahead (the first may be blocked: "
            "`labbatch why` on it).",
            queue=queue_name, jobs_ahead=ahead, vcpus_in_use=in_use, max_vcpus=max_vcpus)
    return _answer(
        "scaling_up",
        f"Queue {queue_name} has room ({in_use} of {max_vcpus} vCPUs in use) and Batch is starting an instance for it; "
        f"an environment scaling from zero takes a few minutes.{note}",
        "Wait a few minutes; if it stays like this, run `labbatch doctor`.",
        queue=queue_name, vcpus_in_use=in_use, max_vcpus=max_vcpus)


def _environment_problem(environment: dict[str, Any]) -> str:
    name = environment["computeEnvironmentName"]
    if environment.get("status") == "INVALID":
        return f"{name} is INVALID ({environment.get('statusReason') or 'no reason given'})"
    return f"{name} is {environment.get('state')}"


def _partly_unusable(unusable: list[dict[str, Any]]) -> str:
    if not unusable:
        return ""
    return " Also: " + "; ".join(_environment_problem(env) for env in unusable) + "."


def _cluster(arn: str | None) -> str | None:
    """ECS cluster name of a cluster ARN (`cluster/NAME`) or a task ARN (`task/NAME/ID`)."""
    if not arn or ":" not in arn:
        return None
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) >= 2 else None


def _vcpus_in_use(batch, settings: LabSettings, queue_name: str, usable: list[dict[str, Any]]) -> int:
    """vCPUs of the lab's STARTING and RUNNING jobs placed on these compute environments (by their
    task's ECS cluster), and of this queue's jobs not yet placed on a known cluster."""
    clusters = {_cluster(env.get("ecsClusterArn")) for env in usable} - {None}
    total = 0
    every_queue = [name for pool in settings.pool_map().values() for name in pool.queues.values()]
    for job in _active_jobs(batch, every_queue):
        cluster = _cluster((job.get("container") or {}).get("taskArn"))
        if cluster in clusters or (cluster is None and short_name(job.get("jobQueue", "")) == queue_name):
            total += _resources(job)[0]
    return total


def _active_jobs(batch, queues: list[str]) -> list[dict[str, Any]]:
    ids: list[str] = []
    parents: list[str] = []
    for queue in queues:
        for status in ACTIVE_STATUSES:
            ids += [s["jobId"] for s in _list(batch, jobQueue=queue, jobStatus=status)]
        # Array children run under a PENDING parent and are listed through it.
        parents += [s["jobId"] for s in _list(batch, jobQueue=queue, jobStatus="PENDING")
                    if (s.get("arrayProperties") or {}).get("size")]
    for parent in parents[:MAX_ARRAY_PARENTS]:
        for status in ACTIVE_STATUSES:
            ids += [s["jobId"] for s in _list(batch, arrayJobId=parent, jobStatus=status)]
    ids = list(dict.fromkeys(ids))
    jobs: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        jobs += batch.describe_jobs(jobs=ids[start : start + 100]).get("jobs", [])
    return [job for job in jobs if job.get("status") in ACTIVE_STATUSES]


def _list(batch, **scope: Any) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    token = None
    for _ in range(MAX_LIST_PAGES):
        page = batch.list_jobs(**scope, **({"nextToken": token} if token else {}))
        summaries += page.get("jobSummaryList", [])
        token = page.get("nextToken")
        if not token:
            break
    return summaries


def _jobs_ahead(batch, job: dict[str, Any]) -> int:
    if (job.get("arrayProperties") or {}).get("index") is not None:
        return 0  # siblings share a creation time; counting them says nothing useful
    created = job.get("createdAt") or 0
    return sum(1 for s in _list(batch, jobQueue=job["jobQueue"], jobStatus="RUNNABLE")
               if s["jobId"] != job["jobId"] and (s.get("createdAt") or 0) < created)


def _fix_for_code(code: str) -> str:
    if code == NO_CAPACITY:
        return ("Resubmit; on the on-demand queue (--queue on-demand) if it was the spot queue, or ask for more "
                "instance types in the lab's compute.instance_types.")
    if code in (JOB_TOO_LARGE, ABOVE_MAX_VCPUS):
        return "Resubmit asking for fewer vCPUs or less memory (`labbatch pipelines` shows the limits)."
    return "Run `labbatch doctor`, then resubmit."


def _in_terms_of_its_pool(answer: dict[str, Any], queue_name: str, settings: LabSettings) -> None:
    """With pools, say which pool the job waits on, what its instances are, and where its limits live."""
    pools = settings.pool_map()
    name = settings.pool_of_queue(queue_name)
    if len(pools) == 1 or name is None:
        return
    limits = pools[name].limits
    gpus = f", {limits.max_gpus} GPUs" if limits.max_gpus else ""
    answer["message"] = (f"It waits on pool {name} (at most {limits.max_vcpus} vCPUs, {limits.max_memory_mib:,} MiB"
                         f"{gpus} per job). " + answer["message"])
    answer["fix"] = answer["fix"].replace("the lab's max vCPUs", f"compute.pools.{name}'s max vCPUs").replace(
        "the lab's compute.instance_types", f"compute.pools.{name}.instance_types")
    answer["details"]["pool"] = name


def _answer(cause: str, message: str, fix: str, **details: Any) -> dict[str, Any]:
    return {"cause": cause, "message": message, "fix": fix, "details": details}


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
