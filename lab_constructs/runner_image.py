"""LabBatch's runner as a tree of files on every instance, so that any tool image runs unmodified.

The runner image is built from containers/runner at deploy (an image asset: synth only stages
the directory, it never needs Docker) and pushed to the CDK asset repository. At boot each
instance pulls it with its instance role, unpacks its root filesystem into RUNNER_HOST_PATH,
and every job definition mounts that tree read-only (labbatch/lab/batch_layout.py, JOB_MOUNTS).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import SymlinkFollowMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from labbatch.lab.batch_layout import RUNNER_HOST_PATH
from labbatch.lab.instance_types import Architecture
from lab_constructs.scratch_launch_template import BootStep

RUNNER_DIR = Path(__file__).resolve().parent.parent / "containers" / "runner"
_PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}

# A boot step (scratch_launch_template.BootStep): the launch template's user data installs it
# as the oneshot unit labbatch-runner-tree.service, ordered after docker.service and before
# ecs.service, which requires it; nothing here starts Docker or the agent, so it cannot deadlock
# on the ECS-optimized AMI, where both wait for cloud-init's final stage (containers/runner/README.md,
# "How an instance boots"). The AMI (built from AL2023 minimal) has no AWS CLI: Amazon's ECR
# credential helper, from the AL2023 repository (reachable through the lab's S3 gateway
# endpoint), lets Docker pull with the instance role. The tree is unpacked beside its final place
# and renamed into it, so a half-unpacked tree is never mounted. If any of it fails, the unit
# fails and ecs.service, which requires it, does not start: jobs wait (and `labbatch why` says
# why) instead of failing one after another on an instance that cannot run them.
_INSTALL_SCRIPT = """\
labbatch_runner_tree() {{
  local image="{image_uri}" tree="{host_path}"
  local registry="${{image%%/*}}"
  command -v docker-credential-ecr-login >/dev/null || dnf install -y -q amazon-ecr-credential-helper
  mkdir -p /root/.docker
  printf '{{"credHelpers": {{"%s": "ecr-login"}}}}\\n' "$registry" > /root/.docker/config.json
  docker pull --quiet "$image"
  local container
  container=$(docker create "$image" /labbatch-never-runs)
  rm -rf "$tree.new"
  mkdir -p "$tree.new"
  docker export "$container" | tar -x -C "$tree.new"
  docker rm -f "$container" >/dev/null
  docker image rm "$image" >/dev/null || true
  rm -rf "$tree"
  mv "$tree.new" "$tree"
  chmod -R a+rX,go-w "$tree"
}}
# Not `if ! labbatch_runner_tree`: bash ignores -e inside a function called as a condition.
# Three tries, 10 and 20 s apart: a passing throttle or mirror hiccup must not idle the instance.
errors=$(mktemp)
for attempt in 1 2 3; do
  ( set -euo pipefail; labbatch_runner_tree ) 2>"$errors"
  runner_tree_status=$?
  cat "$errors" >&2
  [ "$runner_tree_status" -eq 0 ] && break
  [ "$attempt" -lt 3 ] && sleep $(( attempt * 10 ))
done
if [ "$runner_tree_status" -ne 0 ]; then
  labbatch_boot_failed "could not install the runner tree from {image_uri} (3 tries): $(tail -n 3 "$errors" | tr '\\n' ' ')"
fi
rm -f "$errors"
"""


class RunnerImage(Construct):
    """Exposes `asset` (the runner image) and `boot_step`, the unit that unpacks it at boot."""

    def __init__(self, scope: Construct, construct_id: str, *, architecture: Architecture) -> None:
        super().__init__(scope, construct_id)
        # containers/runner/labbatch_contract links to the contract package: staged as a copy.
        self.asset = ecr_assets.DockerImageAsset(
            self, "Image", directory=str(RUNNER_DIR), platform=_PLATFORMS[architecture],
            follow_symlinks=SymlinkFollowMode.ALWAYS,
            exclude=["**/__pycache__", "**/*.egg-info", "**/.pytest_cache"])
        self.boot_step = BootStep(
            name="runner-tree", description="LabBatch runner tree (unpacked from the runner image)",
            script=_INSTALL_SCRIPT.format(image_uri=self.asset.image_uri, host_path=RUNNER_HOST_PATH),
            after=("docker.service",), requires=("docker.service",))
