"""How every LabBatch job container is laid out: the runner tree mounted read-only and started
through its own loader, the scratch volume, and Batch's retry rules.

Shared by the CDK app and local mode (labbatch/lab/batch_layout.py, one job definition per pipeline)
and by the API handler, which registers TES task job definitions on demand (lambda/labbatch_api/tes_*.py):
every job definition LabBatch makes, wherever it is made, starts the runner the same way.
"""

from __future__ import annotations

from labbatch_contract.batch_reasons import HOST_TERMINATED_PREFIX

SCRATCH_MOUNT = "/scratch"
RUNNER_MOUNT = "/opt/labbatch/runner"
RUNNER_HOST_PATH = "/opt/labbatch/runner"  # where the boot script unpacks the tree on an instance
LOADERS = {"x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
           "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1")}
# Spot reclaims show up as Batch's status reason "Host EC2 (instance i-...) terminated."
SPOT_RECLAIM_STATUS_REASON = HOST_TERMINATED_PREFIX + "*"
# Batch retries a job that matches no rule, so the catch-all EXIT must come last.
RETRY_RULES = (
    {"action": "RETRY", "onStatusReason": SPOT_RECLAIM_STATUS_REASON},
    {"action": "EXIT", "onReason": "*"},
)
# (volume name, host path, container path, read only): every job container gets these two.
MOUNTS = (
    ("scratch", SCRATCH_MOUNT, SCRATCH_MOUNT, False),
    ("labbatch-runner", RUNNER_HOST_PATH, RUNNER_MOUNT, True),
)


def runner_launch(architecture: str = "x86_64") -> tuple[str, ...]:
    """argv that starts the mounted runner in any image: its loader, its libraries, its Python.

    `-I` keeps the tool image's PYTHON* variables and working directory out of the runner's
    Python; `--library-path` applies to the runner process only, never to the tool it starts.
    """
    triplet, loader = LOADERS[architecture]
    libraries = f"{RUNNER_MOUNT}/usr/lib/{triplet}"
    return (f"{libraries}/{loader}", "--library-path", libraries, f"{RUNNER_MOUNT}/usr/bin/python3.11",
            "-I", "-m", "labbatch_runner", "--")
