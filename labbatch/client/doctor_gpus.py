"""What `labbatch doctor` checks of GPU pools (labbatch/client/doctor.py builds the checks).

On a GPU pool whose jobs can get GPUs, the canary asks for one: the runner then runs the GPU check
(labbatch_contract.gpu_check: `nvidia-smi -L` when the image has it, else NVIDIA_VISIBLE_DEVICES,
which the ECS agent sets for GPU jobs) before the canary's tool, so a pool whose instances hand
out no GPU fails its canary with the check's own message. On a machine without GPUs (local mode,
no NVIDIA runtime) a GPU job is refused at submission: there the canary runs without a GPU, proves
the pool's queues, and doctor says the GPUs were not exercised; a GPU pipeline's program is not
looked for on this machine either."""

from __future__ import annotations

from typing import Any

from labbatch_contract import gpu_check


def canary_gpus(view: dict[str, Any], pool_name: str | None) -> int | None:
    """GPUs the canary on a queue of `pool_name` asks for: one on a GPU pool that gives GPUs here."""
    pool = next((p for p in view.get("pools") or [] if p.get("name") == (pool_name or "default")), None)
    if pool is None or not pool.get("gpu"):
        return None
    return 1 if (pool.get("limits") or {}).get("max_gpus") else None


def gpu_pool_notes(view: dict[str, Any], canaries_ran: bool) -> list[tuple[str, str]]:
    """(check name, detail) for each GPU pool of GET /lab's view whose GPUs no canary checked."""
    notes = []
    for pool in view.get("pools") or []:
        if not pool.get("gpu"):
            continue
        limits = pool.get("limits") or {}
        if limits.get("lab_max_gpus") and not limits.get("max_gpus"):
            detail = ("this machine has no GPU (its container engine gives no NVIDIA GPU): the pool's GPU jobs "
                      f"are refused at submission here, so its canary ran without one; in AWS it gives "
                      f"{limits['lab_max_gpus']} per job")
        elif not canaries_ran:
            detail = f"up to {limits.get('max_gpus', '?')} per job; not exercised (--no-canary)"
        else:
            continue  # its canaries asked for a GPU and say what they found
        notes.append((f"GPUs of pool {pool['name']}", detail))
    return notes


def gpu_canary_failed(pool: str, why: str) -> tuple[str, str]:
    """(detail, fix) of a GPU canary that failed: the check's message names what it saw."""
    if gpu_check.FAILED_PREFIX in why or gpu_check.FAILURE_CODE in why:
        detail = f"pool {pool} gave its GPU canary no visible GPU: {why}"
    else:
        detail = f"pool {pool}'s GPU canary failed: {why}"
    return detail, (f"compute.pools.{pool} must list GPU instance types and run the ECS GPU AMI (gpu: true); "
                    "`labbatch logs JOB_ID` shows the check's output")


def gpu_seen(log_lines: list[str]) -> str | None:
    """The GPU check's own ok line in a canary's log, or None."""
    return next((line.strip() for line in log_lines if gpu_check.OK_PREFIX in line), None)


def refused_here(pipeline: dict[str, Any], view: dict[str, Any]) -> str | None:
    """Why a GPU pipeline's jobs cannot run on this lab's machine, or None when they can."""
    gpus = pipeline.get("gpus") or 0
    most = max([(pool.get("limits") or {}).get("max_gpus", 0) for pool in view.get("pools") or []] or [0])
    if gpus and most < gpus:
        return (f"not looked for: its jobs need {gpus} GPU{'s' if gpus > 1 else ''} and this machine gives "
                f"{most or 'none'}, so they are refused at submission here")
    return None
