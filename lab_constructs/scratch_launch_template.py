"""The launch template every lab instance starts from: a gp3 scratch volume mounted at /scratch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from labbatch.lab.batch_layout import SCRATCH_MOUNT
from labbatch.lab.config import ScratchVolume
from labbatch_contract import boot_reasons
from labbatch_contract.references import CACHE_DIR_NAME

SCRATCH_DEVICE = "/dev/xvdb"
ROOT_DEVICE = "/dev/xvda"
ROOT_GIB = 30  # the ECS-optimized AL2023 image's own root size; images stay here, not on scratch
# The GPU image's root snapshot is larger (NVIDIA driver, CUDA libraries), and GPU job images
# (CUDA runtimes) are several GB each, so a GPU pool's root volume is bigger.
GPU_ROOT_GIB = 100

# <step>.failed: why a boot step failed; its failure handler also writes the reason to the console,
# where EC2's GetConsoleOutput (and so `labbatch why` and `labbatch doctor`) can read it.
BOOT_STATE_DIR = "/var/lib/labbatch/boot"


@dataclass(frozen=True)
class BootStep:
    """A boot step that must finish before the ECS agent starts, run as its own oneshot unit.

    The user data only writes it (/usr/local/sbin/labbatch-<name>, labbatch-<name>.service) and
    enables it without blocking. It never starts docker.service or ecs.service itself: on the
    ECS-optimized AMI both are ordered after cloud-final.service, which is still running while
    user data runs, so a synchronous start from user data waits for itself (AWS's ECS guide;
    containers/runner/README.md, "How an instance boots", has the sources and the rehearsal
    that reproduces it). The unit is ordered before ecs.service and required by it: if the step
    fails, the agent does not start, `<BOOT_STATE_DIR>/<name>.failed` says why, and so does one
    `labbatch-boot: FAILED <name>: <reason>` line on the console (boot_reasons.console_line).
    `script` is bash; it may call `labbatch_boot_failed "reason"` to fail with a reason.
    """
    name: str
    description: str
    script: str
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    timeout: str = "15min"

    @property
    def unit(self) -> str:
        return f"labbatch-{self.name}.service"


# The scratch volume is a boot step too, not a command in the user data: its failure then keeps
# the agent stopped with a reason (in user data it would only end cloud-final, after which the
# agent starts anyway), and the step runs again on every boot (the fstab line mounts it first,
# so it is idempotent). On Nitro instances the volume appears as an NVMe device; amazon-ec2-utils
# (on AL2023) links it back to its block-device name, and a custom AMI without those udev rules
# is matched on the volume's exact size instead. Docker's image storage stays on the root volume
# so that a full scratch never stops images from being pulled.
_MOUNT_SCRIPT = """\
set -euo pipefail
size_bytes=$(( {size_gib} * 1024 * 1024 * 1024 ))
dev=""
for i in $(seq 1 60); do
  if [ -e {device} ]; then dev=$(readlink -f {device}); break; fi
  root=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null || true)
  for d in $(lsblk -dbpno NAME,SIZE,TYPE | awk -v s="$size_bytes" '$2==s && $3=="disk" {{print $1}}'); do
    [ "$(basename "$d")" != "$root" ] && dev=$d
  done
  [ -n "$dev" ] && break
  sleep 1
done
if [ -z "$dev" ]; then labbatch_boot_failed "scratch volume {device} ({size_gib} GiB) not found"; fi
if ! mountpoint -q {mount}; then
  blkid "$dev" >/dev/null 2>&1 || mkfs.xfs -q "$dev"
  mkdir -p {mount}
  mount -o noatime "$dev" {mount}
fi
chmod 1777 {mount}
# By the filesystem's UUID: NVMe names follow discovery order, which may change between boots.
uuid=$(blkid -s UUID -o value "$dev")
grep -q ' {mount} xfs ' /etc/fstab || echo "UUID=$uuid {mount} xfs defaults,noatime,nofail 0 2" >> /etc/fstab
# The instance's reference cache (labbatch_runner/refcache.py): each reference object (a job's
# parameters and shared inputs, their folders and companions) is downloaded here once, keyed by
# its ETag, and shared by every job the instance runs; least recently used entries are evicted
# only when a job needs the space, never while a job uses them. It lives on this volume, so the
# volume bounds it, and admission counts a job's reference data against it.
mkdir -p {mount}/{cache}
chmod 1777 {mount}/{cache}
"""

# Every step's ExecStopPost: a failure the step did not explain itself (set -e, a timeout, a
# kill) still leaves a reason. systemd gives ExecStopPost SERVICE_RESULT and EXIT_STATUS.
_RESULT_SCRIPT = """\
#!/bin/sh
# labbatch-boot-result STEP: after labbatch-STEP.service stops, keep a reason if it failed.
state={state}
[ "$SERVICE_RESULT" = success ] && exit 0
mkdir -p "$state"
[ -s "$state/$1.failed" ] || echo "labbatch-$1.service failed ($SERVICE_RESULT, exit status ${{EXIT_STATUS:-none}}); see journalctl -u labbatch-$1.service" > "$state/$1.failed"
# The same reason, one line, on the console: EC2's GetConsoleOutput returns it without the agent
# (`labbatch why` and `labbatch doctor` read it there; labbatch_contract/boot_reasons.py).
reason=$(head -c {max_reason} "$state/$1.failed" | tr '\\n' ' ')
[ -c /dev/console ] && printf '{console_format}' "$1" "$reason" 2>/dev/null >/dev/console
exit 0
"""

_STEP_PREAMBLE = """\
#!/bin/bash
# LabBatch boot step {name}, run by {unit} (written by the launch template's user data).
labbatch_boot_failed() {{
  mkdir -p {state}
  printf '%s\\n' "$1" > {state}/{name}.failed
  echo "labbatch: $1" >&2
  exit 1
}}
rm -f {state}/{name}.failed
"""

_UNIT = """\
[Unit]
Description={description}
{ordering}Before=ecs.service

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec={timeout}
ExecStart=/usr/local/sbin/labbatch-{name}
ExecStopPost=/usr/local/sbin/labbatch-boot-result {name}

[Install]
RequiredBy=ecs.service
"""


def _write(path: str, text: str, mode: str) -> str:
    """Shell that writes `text` to `path` verbatim (a quoted here-document expands nothing)."""
    assert "\nLABBATCH_EOF\n" not in f"\n{text}\n"
    return f"cat > {path} <<'LABBATCH_EOF'\n{text}LABBATCH_EOF\nchmod {mode} {path}"


def boot_commands(steps: Sequence[BootStep]) -> list[str]:
    """User-data commands that install `steps` as units and enable them without blocking."""
    commands = [f"mkdir -p {BOOT_STATE_DIR} /usr/local/sbin",
                _write("/usr/local/sbin/labbatch-boot-result", _RESULT_SCRIPT.format(
                    state=BOOT_STATE_DIR, max_reason=boot_reasons.MAX_REASON_CHARS,
                    console_format=boot_reasons.console_format()), "755")]
    for step in steps:
        ordering = "".join(f"{key}={unit}\n" for key, units in (("After", step.after), ("Requires", step.requires))
                           for unit in units)
        commands += [
            _write(f"/usr/local/sbin/labbatch-{step.name}",
                   _STEP_PREAMBLE.format(name=step.name, unit=step.unit, state=BOOT_STATE_DIR) + step.script, "755"),
            _write(f"/etc/systemd/system/{step.unit}",
                   _UNIT.format(description=step.description, ordering=ordering, timeout=step.timeout,
                                name=step.name), "644"),
        ]
    # `enable` reloads systemd and makes ecs.service require each step; `--now --no-block` queues
    # the starts and returns at once, so cloud-final ends and the ordering does the rest.
    commands.append("systemctl enable --now --no-block " + " ".join(step.unit for step in steps))
    return commands


class ScratchLaunchTemplate(Construct):
    """Exposes `launch_template`; its `latest_version_number` is what compute environments pin."""

    def __init__(self, scope: Construct, construct_id: str, *, scratch: ScratchVolume,
                 custom_ami: bool, gpu: bool = False, kms_key: kms.IKey | None = None,
                 boot_steps: Sequence[BootStep] = ()) -> None:
        """`boot_steps`: units run after the scratch volume is mounted, before the ECS agent starts."""
        super().__init__(scope, construct_id)

        scratch_step = BootStep(
            name="scratch", description="LabBatch scratch volume at " + SCRATCH_MOUNT, timeout="5min",
            script=_MOUNT_SCRIPT.format(size_gib=scratch.size_gib, device=SCRATCH_DEVICE, mount=SCRATCH_MOUNT,
                                        cache=CACHE_DIR_NAME))
        steps = [scratch_step] + [
            BootStep(step.name, step.description, step.script, after=(*step.after, scratch_step.unit),
                     requires=(*step.requires, scratch_step.unit), timeout=step.timeout)
            for step in boot_steps]
        script = ec2.UserData.for_linux()
        script.add_commands(
            "set -euo pipefail",
            # Let ECS drain a spot instance on its two-minute interruption notice.
            "grep -qx ECS_ENABLE_SPOT_INSTANCE_DRAINING=true /etc/ecs/ecs.config 2>/dev/null"
            " || echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config",
            *boot_commands(steps))
        # AWS Batch merges its own user data into ours, which it can only do with MIME multi-part.
        user_data = ec2.MultipartUserData()
        user_data.add_user_data_part(script, ec2.MultipartBody.SHELL_SCRIPT, True)

        block_devices = [ec2.BlockDevice(
            device_name=SCRATCH_DEVICE,
            volume=ec2.BlockDeviceVolume.ebs(
                scratch.size_gib, volume_type=ec2.EbsDeviceVolumeType.GP3, iops=scratch.iops,
                throughput=scratch.throughput_mibps, encrypted=True, kms_key=kms_key, delete_on_termination=True),
        )]
        if not custom_ami:
            # A custom AMI may name its root device differently; only the known image gets its
            # root volume re-declared, to have it encrypted.
            block_devices.append(ec2.BlockDevice(
                device_name=ROOT_DEVICE,
                volume=ec2.BlockDeviceVolume.ebs(GPU_ROOT_GIB if gpu else ROOT_GIB, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                 encrypted=True, kms_key=kms_key, delete_on_termination=True)))

        self.launch_template = ec2.LaunchTemplate(
            self, "Resource",
            block_devices=block_devices,
            user_data=user_data,
            require_imdsv2=True,
            # One hop: a bridged container cannot reach the instance metadata. Batch starts ECS-EC2
            # jobs with host networking (its only mode there), which this does not stop: a job can
            # read the metadata, the instance role's credentials included (docs/security.md).
            http_put_response_hop_limit=1,
        )
