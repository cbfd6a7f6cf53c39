"""Recovery: resubmitting a failed job once, when a second try can succeed where the first could not.

| failure        | kind                 | the new job                                             |
|----------------|----------------------|---------------------------------------------------------|
| spot_reclaimed | spot_to_on_demand    | on its pool's on-demand queue, same resources           |
| out_of_memory  | more_memory          | 1.5 x the memory, rounded up to 256 MiB; on another     |
|                |                      | pool when its own cannot hold that; refused when none   |
| infrastructure | infrastructure_retry | the same request again                                  |

Other classes (application, timeout, cancelled, out_of_scratch) are never resubmitted.

Bounds: each kind at most once per original job, along a whole chain (a job recovered from a
spot reclaim that then runs out of memory may still get more memory, once; never a second
on-demand retry). Array jobs are not recovered (each child's class is recorded instead).

Ledger: the decision is made before the failure is recorded, so that no reader ever sees a
FAILED job without its class and what LabBatch does about it. The new record is written first
(`recovered_from`, `recovery`: {kind, reason, original_job_id, kinds_used}) under an id derived
from the failed job (`recovery_job_id`: a redelivered event finds the same one); then the old
record becomes FAILED with `failure` and `recovered_by` in one conditional write, which only one
delivery can make, so a job is recovered at most once; then Batch is called and the new record
completed, the order lambda/labbatch_api/submission.py keeps. A recovery that is not made says why on
the old record, in that same write (`recovery_refused`: {kind, reason}).

The SubmitJob request is the API's own (labbatch_contract.batch_submit): the LABBATCH_*
environment of the job that failed, with a new LABBATCH_JOB_ID and output prefix
(`s3://<results>/jobs/<new job id>/`, plus the sample's segment for a one-sample job).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from labbatch_contract import batch_submit, placement, runner_env
from labbatch_contract.failures import MORE_MEMORY, RECOVERY_FOR, SPOT_TO_ON_DEMAND
from labbatch_contract.ids import job_id_from
from labbatch_contract.ledger import new_job_record
from labbatch_contract.settings import PoolSettings

MEMORY_FACTOR = 1.5
MEMORY_STEP_MIB = 256


def recovery_job_id(job_id: str, batch_job_id: str, at_millis: int) -> str:
    """The id of the job that recovers `job_id`, a job id like any other, its time `at_millis`
    (when the job stopped) and its entropy a hash of the failed job: every delivery of the same
    event names the same recovery."""
    digest = hashlib.sha256(f"labbatch-recovery/{job_id}/{batch_job_id}".encode()).digest()[:10]
    return job_id_from(at_millis, digest)


def more_memory(memory_mib: int) -> int:
    """1.5 x, rounded up to a multiple of 256 MiB."""
    return math.ceil(memory_mib * MEMORY_FACTOR / MEMORY_STEP_MIB) * MEMORY_STEP_MIB


@dataclass(frozen=True)
class Plan:
    kind: str
    reason: str
    queue: str
    memory_mib: int
    pool: str  # the pool the new job goes to: the failed job's, or one that holds more memory


@dataclass(frozen=True)
class Refusal:
    kind: str
    reason: str

    def as_record(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason}


def kinds_used(record: Mapping[str, Any]) -> list[str]:
    recovery = record.get("recovery") or {}
    return list(recovery.get("kinds_used") or ([recovery["kind"]] if recovery.get("kind") else []))


def plan(
    record: Mapping[str, Any],
    failure: str,
    *,
    enabled: Mapping[str, bool],
    pools: Mapping[str, PoolSettings],
    pool: str,
    status_reason: str | None,
    attempts: int,
    movable_to: Mapping[str, PoolSettings] | None = None,
    gpus: int = 0,
) -> Plan | Refusal | None:
    """What to do about a failed job: a Plan, a Refusal worth recording, or None (nothing to say).

    `pool`: the pool the job ran on; `movable_to`: the pools its pipeline may use (all of them
    unless it names one), where a job that needs more memory than its pool holds may move."""
    kind = RECOVERY_FOR.get(failure)
    if kind is None or record.get("array_size"):
        return None
    if not enabled.get(kind, True):
        return Refusal(kind, f"recovery.{kind} is off for pipeline {record.get('pipeline')}")
    if kind in kinds_used(record):
        original = (record.get("recovery") or {}).get("original_job_id") or record.get("recovered_from")
        return Refusal(kind, f"already recovered once by {kind} (original job {original}); "
                             "LabBatch resubmits each kind of failure only once")
    vcpus, memory, queue = int(record["vcpus"]), int(record["memory_mib"]), record["queue"]
    current = pools[pool]
    one_pool = len(pools) == 1
    what = status_reason or failure
    if kind == SPOT_TO_ON_DEMAND:
        # Within the pool: the job was placed there for its shape, and its on-demand instances are
        # the same types as its spot ones.
        if queue != "spot":
            return None  # reclaimed on on-demand cannot happen; nothing sensible to add
        on_demand_max = current.queue_max_vcpus.get("on-demand", 0)
        if "on-demand" not in current.queues:
            return Refusal(kind, "this lab has no on-demand queue (compute.on_demand_max_vcpus is 0)" if one_pool else
                           f"pool {pool} has no on-demand queue (compute.pools.{pool}.on_demand_max_vcpus is 0)")
        if vcpus > on_demand_max:
            whose = "the on-demand queue" if one_pool else f"pool {pool}'s on-demand queue"
            return Refusal(kind, f"the job needs {vcpus} vCPUs; {whose} has at most {on_demand_max}")
        tries = f"all {attempts} attempts" if attempts > 1 else "its attempt"
        return Plan(kind, f"{tries} on spot were reclaimed ({what}); resubmitted once on the on-demand queue",
                    "on-demand", memory, pool)
    if kind == MORE_MEMORY:
        wanted = more_memory(memory)
        need = placement.Need(vcpus, wanted, gpus, queue)
        if placement.fails(current, need) is None:
            return Plan(kind, f"killed for memory at {memory:,} MiB ({what}); resubmitted once with {wanted:,} MiB",
                        queue, wanted, pool)
        limits = current.limits
        if limits.lab_max_memory_mib:
            # Local mode, whose machine gives less than the lab's instances would.
            return Refusal(kind, f"killed for memory at {memory:,} MiB; {MEMORY_FACTOR}x that is {wanted:,} MiB, "
                                 f"over the {limits.max_memory_mib:,} MiB this local machine can give a job (the lab's "
                                 f"instances give {limits.lab_max_memory_mib:,} MiB): run it on a larger machine or in AWS, "
                                 "or make the tool use less")
        if one_pool:
            return Refusal(kind, f"killed for memory at {memory:,} MiB; {MEMORY_FACTOR}x that is {wanted:,} MiB, "
                                 f"over this lab's {limits.max_memory_mib:,} MiB limit (limits.max_memory_mib): "
                                 "add a larger instance type or make the tool use less")
        others = {name: other for name, other in (movable_to or {}).items() if name != pool}
        placed = placement.place(others, need) if others else None
        if placed is None or isinstance(placed, placement.Unplaceable):
            elsewhere = ("and no other pool its pipeline may use holds it" if others else
                         "and its pipeline may use no other pool")
            return Refusal(kind, f"killed for memory at {memory:,} MiB; {MEMORY_FACTOR}x that is {wanted:,} MiB, "
                                 f"more than pool {pool} holds ({limits.max_memory_mib:,} MiB), {elsewhere}: add a "
                                 "larger instance type or make the tool use less")
        moved_to, _ = placed
        return Plan(kind, f"killed for memory at {memory:,} MiB ({what}); {wanted:,} MiB is more than pool {pool} "
                          f"holds ({limits.max_memory_mib:,} MiB): resubmitted once with {wanted:,} MiB on pool "
                          f"{moved_to}", queue, wanted, moved_to)
    return Plan(kind, f"could not start or stage ({what}); resubmitted once", queue, memory, pool)


def new_record(old: Mapping[str, Any], plan_: Plan, *, job_id: str, prefix: str, job_queue: str,
               job_definition: str, lab: str) -> dict[str, Any]:
    original = (old.get("recovery") or {}).get("original_job_id") or old["job_id"]
    return new_job_record(
        job_id=job_id, lab=lab, pipeline=old.get("pipeline"), queue=plan_.queue, job_queue=job_queue,
        job_definition=old.get("job_definition") or job_definition, vcpus=old.get("vcpus"),
        memory_mib=plan_.memory_mib, output_prefix=prefix, gpus=old.get("gpus"), pool=plan_.pool,
        status_reason=f"Recorded by LabBatch recovery ({plan_.kind}); submitting to AWS Batch",
        recovered_from=old["job_id"],
        recovery={"kind": plan_.kind, "reason": plan_.reason, "original_job_id": original,
                  "kinds_used": kinds_used(old) + [plan_.kind]},
        **{field: old.get(field) for field in ("name", "batch_job_name", "submitted_by", "inputs", "shared_inputs",
                                              "parameters", "input_bytes", "scratch_needed_bytes")})


def submit_job_request(old: Mapping[str, Any], new: Mapping[str, Any], environment: Mapping[str, str], *,
                       job_name: str | None, lab: str) -> dict[str, Any]:
    """The failed job's SubmitJob request again, for the new record."""
    suffix = ""
    old_container_prefix = environment.get(runner_env.OUTPUT_PREFIX, "")
    if old_container_prefix.startswith(old["output_prefix"]):
        suffix = old_container_prefix[len(old["output_prefix"]):]  # a one-sample job's "<sample>/"
    env = {runner_env.JOB_ID: new["job_id"]}
    for name in runner_env.PASSED_ON_BY_RECOVERY:
        if name in environment:
            env[name] = environment[name]
    env.setdefault(runner_env.INPUTS, json.dumps(old.get("inputs") or [], separators=(",", ":")))
    env.setdefault(runner_env.PARAMETERS, json.dumps(old.get("parameters") or {}, separators=(",", ":"),
                                                     sort_keys=True))
    env[runner_env.OUTPUT_PREFIX] = new["output_prefix"] + suffix
    return batch_submit.submit_job_request(
        job_name=old.get("batch_job_name") or job_name or "labbatch-job", job_queue=new["job_queue"],
        job_definition=new["job_definition"], environment=env, vcpus=new["vcpus"], memory_mib=new["memory_mib"],
        gpus=int(old.get("gpus") or 0), lab=lab)
