"""`labbatch local --docker`: each attempt runs in its pipeline's image, as ECS would start it.

The executor stays the same; only the attempt's argv changes, from the job's command to
`docker run ... IMAGE COMMAND`. The container shares the host network (so the loopback
emulator and Batch endpoint are reachable), mounts the scratch root at the same path, and is
limited to the job's vCPUs and memory by Docker itself.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from labbatch.config import DEMO_IMAGE

DEMO_TAG = "labbatch-demo:local"
# Only what a job's container needs: the runner contract, Batch's own variables, and AWS access.
PASSED_PREFIXES = ("LABBATCH_", "AWS_")


class DockerUnavailable(RuntimeError):
    pass


def engine_available() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0


def build_demo_image(containers_dir: Path) -> str:
    """Build the demo pipelines' image from containers/ (what CDK builds as an asset in AWS)."""
    result = subprocess.run(["docker", "build", "-t", DEMO_TAG, str(containers_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DockerUnavailable(f"docker build of {containers_dir} failed: {last}")
    return DEMO_TAG


@dataclass(frozen=True)
class DockerRunner:
    # Image names as job definitions give them -> what to run locally ("demo" -> the local build).
    images: dict[str, str] = field(default_factory=lambda: {DEMO_IMAGE: DEMO_TAG})

    def argv(self, *, command: list[str], env: dict[str, str], image: str, vcpus: int, memory_mib: int,
             scratch: Path, name: str) -> list[str]:
        passed = sorted((k, v) for k, v in env.items() if k.startswith(PASSED_PREFIXES))
        return [
            "docker", "run", "--rm", "--name", name, "--network", "host",
            "--cpus", str(vcpus), "--memory", f"{memory_mib}m",
            "--volume", f"{scratch}:{scratch}",
            *[arg for key, value in passed for arg in ("--env", f"{key}={value}")],
            self.images.get(image, image),
            *command,
        ]
