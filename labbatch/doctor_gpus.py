"""What `labbatch doctor` can say of GPU pools (labbatch/doctor.py builds the checks).

Its canary is a CPU job: on a GPU pool it proves the queues, instances, image and scratch, not
the GPUs, and doctor says so rather than report them checked. On a machine without GPUs (local
mode, no NVIDIA runtime) a GPU pipeline's jobs are refused at submission, so its program is not
looked for on this machine either."""

from __future__ import annotations

from typing import Any


def gpu_pool_notes(view: dict[str, Any]) -> list[tuple[str, str]]:
    """(check name, detail) for each GPU pool of GET /lab's view."""
    notes = []
    for pool in view.get("pools") or []:
        if not pool.get("gpu"):
            continue
        limits = pool.get("limits") or {}
        if limits.get("lab_max_gpus") and not limits.get("max_gpus"):
            detail = ("this machine has no GPU (its container engine reports no NVIDIA runtime): the pool's GPU jobs "
                      f"are refused at submission here; in AWS it gives {limits['lab_max_gpus']} per job")
        else:
            detail = (f"up to {limits.get('max_gpus', '?')} per job; not exercised by doctor (its canary asks for no "
                      "GPU): run one job of a GPU pipeline to prove them")
        notes.append((f"GPUs of pool {pool['name']}", detail))
    return notes


def refused_here(pipeline: dict[str, Any], view: dict[str, Any]) -> str | None:
    """Why a GPU pipeline's jobs cannot run on this lab's machine, or None when they can."""
    gpus = pipeline.get("gpus") or 0
    most = max([(pool.get("limits") or {}).get("max_gpus", 0) for pool in view.get("pools") or []] or [0])
    if gpus and most < gpus:
        return (f"not looked for: its jobs need {gpus} GPU{'s' if gpus > 1 else ''} and this machine gives "
                f"{most or 'none'}, so they are refused at submission here")
    return None
