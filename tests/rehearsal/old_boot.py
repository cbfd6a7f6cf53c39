"""The boot design before the rehearsal (commit 78c04c3): the launch template's one shell part,
verbatim, with `{IMAGE_URI}` where the runner image's ECR URI was. Its runner-tree step runs
`systemctl start docker` synchronously from user data, the deadlock tests/rehearsal shows."""

OLD_USER_DATA_SCRIPT = r"""#!/bin/bash
set -euo pipefail
size_bytes=$(( 100 * 1024 * 1024 * 1024 ))
dev=""
for i in $(seq 1 60); do
  if [ -e /dev/xvdb ]; then dev=$(readlink -f /dev/xvdb); break; fi
  root=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null || true)
  for d in $(lsblk -dbpno NAME,SIZE,TYPE | awk -v s="$size_bytes" '$2==s && $3=="disk" {print $1}'); do
    [ "$(basename "$d")" != "$root" ] && dev=$d
  done
  [ -n "$dev" ] && break
  sleep 1
done
if [ -z "$dev" ]; then echo "labbatch: scratch volume /dev/xvdb (100 GiB) not found" >&2; exit 1; fi
blkid "$dev" >/dev/null 2>&1 || mkfs.xfs -q "$dev"
mkdir -p /scratch
mount -o noatime "$dev" /scratch
chmod 1777 /scratch
echo "$dev /scratch xfs defaults,noatime,nofail 0 2" >> /etc/fstab
# The instance's reference cache (labbatch_runner/refcache.py): each reference object (a job's
# parameters and shared inputs, their folders and companions) is downloaded here once, keyed by
# its ETag, and shared by every job the instance runs; least recently used entries are evicted
# only when a job needs the space, never while a job uses them. It lives on this volume, so the
# volume bounds it, and admission counts a job's reference data against it.
mkdir -p /scratch/labbatch-cache
chmod 1777 /scratch/labbatch-cache
# Let ECS drain a spot instance on its two-minute interruption notice.
echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config

labbatch_runner_tree() {
  local image="{IMAGE_URI}" tree="/opt/labbatch/runner"
  local registry="${image%%/*}"
  command -v docker-credential-ecr-login >/dev/null || dnf install -y -q amazon-ecr-credential-helper
  mkdir -p /root/.docker
  printf '{"credHelpers": {"%s": "ecr-login"}}\n' "$registry" > /root/.docker/config.json
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
}
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
  echo "labbatch: could not install the runner tree from {IMAGE_URI}; keeping the ECS agent stopped" >&2
  systemctl mask --now ecs.service || true
  exit 1
fi
"""
