#!/usr/bin/env bash
# Builds labbatch-instance:rehearsal, a stand-in for an ECS-optimized AL2023 instance that the
# deploy rehearsal (tests/rehearsal, `make rehearse`) boots with systemd as PID 1:
#   - Debian bookworm minbase + systemd, cloud-init, docker.io, xfsprogs, util-linux, iproute2,
#     dbus, and docker-registry (a registry reachable as ECR is: localhost:5000 inside the
#     instance, holding a small stand-in runner image, localhost:5000/labbatch/runner:rehearsal);
#   - an ecs.service stand-in with amazon-ecs-init's ordering (Requires=docker.service,
#     After=docker.service cloud-final.service, Restart=on-failure) whose ExecStart records that
#     it started and whether the runner tree was complete then, and then runs the agent stand-in
#     the rehearsal mounts at /opt/labbatch-rehearsal (containers/instance/ecs_agent.py), which
#     starts jobs' containers from their job definitions as the ECS agent does;
#   - docker-credential-ecr-login: a stand-in for Amazon's ECR credential helper (records that
#     Docker asked it, answers a fixed credential the registry never checks);
#   - /etc/ecs/ecs.config, as the AMI has it.
# The rehearsal seeds cloud-init (NoCloud) and, for the AL2023 ordering, a docker.service
# drop-in itself: neither is baked in here.
#
# Cached like containers/build_images.sh: the image carries the hash of its inputs (this
# script, the mirror, the package list) in org.labbatch.inputs and is skipped when unchanged;
# the mmdebstrap tarball is kept under $LABBATCH_IMAGE_CACHE (default .cache/images).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${LABBATCH_IMAGE_CACHE:-$ROOT/.cache/images}
DOCKER=${DOCKER:-docker}
TAG=${LABBATCH_INSTANCE_IMAGE:-labbatch-instance:rehearsal}
LABEL=org.labbatch.inputs
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,cloud-init,docker.io,xfsprogs,util-linux,iproute2,dbus,docker-registry,procps
# The runner image stand-in: one marker file the rehearsal looks for in the unpacked tree.
STANDIN_REPOSITORY=labbatch/runner
STANDIN_TAG=rehearsal
STANDIN_MARKER=labbatch-runner-standin

say() { printf 'instance: %s\n' "$*" >&2; }
die() { printf 'instance: error: %s\n' "$*" >&2; exit 1; }

"$DOCKER" info >/dev/null 2>&1 || die "no container engine answers ('$DOCKER info' failed)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
mkdir -p "$CACHE"

# shellcheck source=../apt_sources.sh
. "$ROOT/containers/apt_sources.sh"
SOURCES=$(apt_sources)

started=$SECONDS
# Everything the image adds to Debian's packages, written into the tree by mmdebstrap's hook.
customize=$(cat <<'HOOK'
set -e
root=$1
mkdir -p "$root/etc/ecs" "$root/usr/local/libexec" "$root/usr/local/bin"
: > "$root/etc/ecs/ecs.config"
cat > "$root/etc/systemd/system/ecs.service" <<'UNIT'
# Stand-in for amazon-ecs-init's packaging/amazon-linux-ami/ecs.service: the same ordering.
[Unit]
Description=Amazon Elastic Container Service - container agent (LabBatch rehearsal stand-in)
Requires=docker.service
After=docker.service
After=cloud-final.service

[Service]
Type=simple
Restart=on-failure
RestartSec=10s
EnvironmentFile=-/etc/ecs/ecs.config
ExecStart=/usr/local/libexec/ecs-agent-standin

[Install]
WantedBy=multi-user.target
UNIT
cat > "$root/usr/local/libexec/ecs-agent-standin" <<'AGENT'
#!/bin/sh
# Records when it started and whether the runner tree (the stand-in's marker, or the real runner's
# Python) was complete at that moment; then runs the agent the rehearsal mounted, if it did.
if [ -e /opt/labbatch/runner/labbatch-runner-standin ] || [ -x /opt/labbatch/runner/usr/bin/python3.11 ]; then
    tree=complete
else
    tree=missing
fi
printf 'uptime=%s tree=%s\n' "$(cut -d' ' -f1 /proc/uptime)" "$tree" >> /run/ecs-agent-started
if [ -f /opt/labbatch-rehearsal/ecs_agent.py ]; then
    exec python3 /opt/labbatch-rehearsal/ecs_agent.py
fi
exec sleep infinity
AGENT
cat > "$root/usr/local/bin/docker-credential-ecr-login" <<'HELPER'
#!/bin/sh
# Stand-in for amazon-ecr-credential-helper: Docker calls `get` with the registry on stdin.
[ "$1" = get ] || exit 0
read -r server
echo "$server" >> /run/ecr-login-asked
printf '{"ServerURL":"%s","Username":"AWS","Secret":"rehearsal"}\n' "$server"
HELPER
chmod 755 "$root/usr/local/libexec/ecs-agent-standin" "$root/usr/local/bin/docker-credential-ecr-login"
ln -sf /etc/systemd/system/ecs.service "$root/etc/systemd/system/multi-user.target.wants/ecs.service"
# A container has no consoles to log in on, and no time to lose on them.
for unit in getty@tty1.service console-getty.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
HOOK
)
# The tarball's hash covers what mmdebstrap makes it from; the image's, this whole script too.
tarball_hash=$( { cat "$SOURCES" 2>/dev/null || echo "$SOURCES"; echo "$SUITE $PACKAGES"; echo "$customize"; } \
    | sha256sum | cut -c1-16)
hash=$( { echo "$tarball_hash"; cat "$0"; } | sha256sum | cut -c1-16)
if [ "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$TAG" 2>/dev/null || true)" = "$hash" ]; then
    say "$TAG is up to date ($hash)"; exit 0
fi
tarball=$CACHE/labbatch-instance-$tarball_hash.tar
if [ ! -s "$tarball" ]; then
    say "mmdebstrap $SUITE with $PACKAGES (about 1-2 min)"
    mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="$customize" \
        "$SUITE" "${tarball%.tar}.part.tar" "$SOURCES"
    mv "${tarball%.tar}.part.tar" "$tarball"
    find "$CACHE" -maxdepth 1 -name "labbatch-instance-*.tar" ! -name "*.part.tar" ! -name "$(basename "$tarball")" -delete
    say "mmdebstrap done in $((SECONDS - started)) s"
fi

# Import without the registry's content, then fill the registry: serve it from a container of
# that image on a loopback port (the host's Docker pushes to 127.0.0.0/8 over plain HTTP),
# push the stand-in runner image, and commit that container as the instance image.
stage=labbatch-instance-stage:$hash
"$DOCKER" import "$tarball" "$stage" >/dev/null
registry=labbatch-instance-registry-$$
standin=""
cleanup() {
    "$DOCKER" rm -f "$registry" >/dev/null 2>&1 || true
    [ -z "$standin" ] || "$DOCKER" rmi "$standin" >/dev/null 2>&1 || true
    "$DOCKER" rmi "$stage" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Debian's registry asks for htpasswd credentials; ECR's are the credential helper's business,
# and the stand-in helper answers any, so the instance's registry asks for none.
# cloud-final.service as cloud-init renders it for Amazon Linux: its template orders it
# After=multi-user.target (and Before=apt-daily.service) only for the ubuntu, debian and unknown
# variants (canonical/cloud-init systemd/cloud-final.service.tmpl, 22.2.2 to 24.x). Kept, it
# makes a cycle with ecs.service (WantedBy=multi-user.target, After=cloud-final.service) that
# systemd breaks by dropping one of the two start jobs at random.
"$DOCKER" run -d --name "$registry" -p 127.0.0.1::5000 "$stage" sh -c \
    "sed -i '/^auth:/,/^health:/{/^health:/!d}' /etc/docker/registry/config.yml &&
     sed -e '/^After=multi-user.target$/d' -e '/^Before=apt-daily.service$/d' \
         /lib/systemd/system/cloud-final.service > /etc/systemd/system/cloud-final.service &&
     exec /usr/bin/docker-registry serve /etc/docker/registry/config.yml" >/dev/null
port=$("$DOCKER" port "$registry" 5000/tcp | head -n1 | sed 's/.*://')
standin=127.0.0.1:$port/$STANDIN_REPOSITORY:$STANDIN_TAG
# A marker and a /bin/sh-less tree: what `docker create … /labbatch-never-runs` + export unpack.
standin_dir=$(mktemp -d)
printf 'LabBatch runner image stand-in for the instance rehearsal\n' > "$standin_dir/$STANDIN_MARKER"
tar -C "$standin_dir" -c "$STANDIN_MARKER" | "$DOCKER" import - "$standin" >/dev/null
rm -rf "$standin_dir"
for _ in $(seq 1 50); do
    "$DOCKER" push "$standin" >/dev/null 2>&1 && pushed=1 && break
    sleep 0.2
done
[ "${pushed:-}" = 1 ] || die "could not push $standin to the registry container"
"$DOCKER" stop "$registry" >/dev/null
"$DOCKER" commit --change "LABEL $LABEL=$hash" --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=docker' --change 'ENTRYPOINT []' \
    "$registry" "$TAG" >/dev/null
say "$TAG built in $((SECONDS - started)) s ($hash)"
