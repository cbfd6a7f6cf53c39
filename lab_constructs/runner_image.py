"""LabBatch's runner as a tree of files on every instance, so that any tool image runs unmodified.

The runner image is built from containers/runner at deploy (an image asset: synth only stages
the directory, it never needs Docker) and pushed to the CDK asset repository. At boot each
instance pulls it with its instance role, unpacks its root filesystem into RUNNER_HOST_PATH,
and every job definition mounts that tree read-only (labbatch/batch_layout.py, JOB_MOUNTS).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import SymlinkFollowMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from labbatch.batch_layout import RUNNER_HOST_PATH
from labbatch.instance_types import Architecture

RUNNER_DIR = Path(__file__).resolve().parent.parent / "containers" / "runner"
_PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}

# Runs from the launch template's user data, after the scratch volume is mounted and before the
# ECS agent starts (the ECS-optimized AMI starts it after cloud-init's final stage), so no job
# can start on an instance without the tree. The AMI (built from AL2023 minimal) has no AWS
# CLI: Amazon's ECR credential helper, from the AL2023 repository (reachable through the lab's S3
# gateway endpoint), lets Docker pull with the instance role. The tree is unpacked beside its
# final place and renamed into it, so a half-unpacked tree is never mounted. If any of it fails,
# the ECS agent is kept from starting: jobs wait (and `labbatch why` says why) instead of
# failing one after another on an instance that cannot run them.
_INSTALL_SCRIPT = """\
labbatch_runner_tree() {{
  local image="{image_uri}" tree="{host_path}"
  local registry="${{image%%/*}}"
  command -v docker-credential-ecr-login >/dev/null || dnf install -y -q amazon-ecr-credential-helper
  mkdir -p /root/.docker
  printf '{{"credHelpers": {{"%s": "ecr-login"}}}}\\n' "$registry" > /root/.docker/config.json
  systemctl start docker
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
set +e
for attempt in 1 2 3; do
  ( set -euo pipefail; labbatch_runner_tree )
  runner_tree_status=$?
  [ "$runner_tree_status" -eq 0 ] && break
  [ "$attempt" -lt 3 ] && sleep $(( attempt * 10 ))
done
set -e
if [ "$runner_tree_status" -ne 0 ]; then
  echo "labbatch: could not install the runner tree from {image_uri}; keeping the ECS agent stopped" >&2
  systemctl mask --now ecs.service || true
  exit 1
fi
"""


class RunnerImage(Construct):
    """Exposes `asset` (the runner image) and `install_script`, the boot step that unpacks it."""

    def __init__(self, scope: Construct, construct_id: str, *, architecture: Architecture) -> None:
        super().__init__(scope, construct_id)
        # containers/runner/labbatch_contract links to the contract package: staged as a copy.
        self.asset = ecr_assets.DockerImageAsset(
            self, "Image", directory=str(RUNNER_DIR), platform=_PLATFORMS[architecture],
            follow_symlinks=SymlinkFollowMode.ALWAYS,
            exclude=["**/__pycache__", "**/*.egg-info", "**/.pytest_cache"])
        self.install_script = _INSTALL_SCRIPT.format(image_uri=self.asset.image_uri, host_path=RUNNER_HOST_PATH)
