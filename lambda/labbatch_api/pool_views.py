"""The lab's instance pools as GET /pipelines and GET /lab show them, from the settings alone."""

from __future__ import annotations

from typing import Any

from labbatch_contract import placement
from labbatch_contract.settings import LabSettings, PipelineSettings


def pool_views(settings: LabSettings) -> list[dict[str, Any]]:
    return [{
        "name": name,
        "gpu": pool.gpu or pool.limits.max_gpus > 0 or bool(pool.limits.lab_max_gpus),
        "queues": dict(pool.queues),
        "queue_max_vcpus": dict(pool.queue_max_vcpus),
        "limits": {"max_vcpus": pool.limits.max_vcpus, "max_memory_mib": pool.limits.max_memory_mib,
                   "scratch_gib": pool.scratch_gib, "max_gpus": pool.limits.max_gpus,
                   "gpu_memory_mib": pool.limits.gpu_memory_mib, "lab_max_gpus": pool.limits.lab_max_gpus},
    } for name, pool in settings.pool_map().items()]


def pipeline_limits(settings: LabSettings, pipeline: PipelineSettings) -> dict[str, int]:
    """The most one job of the pipeline can get: on its named pool, or on any pool."""
    pools = list(placement.candidates(settings.pool_map(), pipeline.pool).values())
    return {"max_vcpus": max(p.limits.max_vcpus for p in pools),
            "max_memory_mib": max(p.limits.max_memory_mib for p in pools),
            "scratch_gib": max(p.scratch_gib for p in pools),
            "max_gpus": max(p.limits.max_gpus for p in pools)}
