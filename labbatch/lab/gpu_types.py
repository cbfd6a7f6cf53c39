"""The GPU instance types a `gpu: true` pool may name, beside the CPU table (instance_types.py).

Table as of 2026-11 (AWS EC2 accelerated computing instance pages): vCPUs, memory, GPU count and
memory per GPU. GPU sizes do not follow one ladder per family (a g5.12xlarge has 4 GPUs, a
g5.16xlarge one), so every size is listed as it is sold. Only types the ECS-optimized AL2023
GPU AMI supports (NVIDIA, x86_64) are here.
"""

from __future__ import annotations

# name -> (vCPUs, memory GiB, GPUs, GiB of memory per GPU)
GPU_TYPES: dict[str, tuple[int, int, int, int]] = {
    # NVIDIA T4
    "g4dn.xlarge": (4, 16, 1, 16), "g4dn.2xlarge": (8, 32, 1, 16), "g4dn.4xlarge": (16, 64, 1, 16),
    "g4dn.8xlarge": (32, 128, 1, 16), "g4dn.12xlarge": (48, 192, 4, 16), "g4dn.16xlarge": (64, 256, 1, 16),
    # NVIDIA A10G
    "g5.xlarge": (4, 16, 1, 24), "g5.2xlarge": (8, 32, 1, 24), "g5.4xlarge": (16, 64, 1, 24),
    "g5.8xlarge": (32, 128, 1, 24), "g5.12xlarge": (48, 192, 4, 24), "g5.16xlarge": (64, 256, 1, 24),
    "g5.24xlarge": (96, 384, 4, 24), "g5.48xlarge": (192, 768, 8, 24),
    # NVIDIA L4
    "g6.xlarge": (4, 16, 1, 24), "g6.2xlarge": (8, 32, 1, 24), "g6.4xlarge": (16, 64, 1, 24),
    "g6.8xlarge": (32, 128, 1, 24), "g6.12xlarge": (48, 192, 4, 24), "g6.16xlarge": (64, 256, 1, 24),
    "g6.24xlarge": (96, 384, 4, 24), "g6.48xlarge": (192, 768, 8, 24),
    # NVIDIA L40S
    "g6e.xlarge": (4, 32, 1, 48), "g6e.2xlarge": (8, 64, 1, 48), "g6e.4xlarge": (16, 128, 1, 48),
    "g6e.8xlarge": (32, 256, 1, 48), "g6e.12xlarge": (48, 384, 4, 48), "g6e.16xlarge": (64, 512, 1, 48),
    "g6e.24xlarge": (96, 768, 4, 48), "g6e.48xlarge": (192, 1536, 8, 48),
    # NVIDIA V100, A100, H100
    "p3.2xlarge": (8, 61, 1, 16), "p3.8xlarge": (32, 244, 4, 16), "p3.16xlarge": (64, 488, 8, 16),
    "p4d.24xlarge": (96, 1152, 8, 40),
    "p5.48xlarge": (192, 2048, 8, 80),
}


def gpu_families() -> list[str]:
    return sorted({name.split(".")[0] for name in GPU_TYPES})
