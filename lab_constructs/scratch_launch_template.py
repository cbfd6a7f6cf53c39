"""The launch template every lab instance starts from: a gp3 scratch volume mounted at /scratch."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from labbatch.batch_layout import SCRATCH_MOUNT
from labbatch.config import ScratchVolume
from labbatch_contract.references import CACHE_DIR_NAME

SCRATCH_DEVICE = "/dev/xvdb"
ROOT_DEVICE = "/dev/xvda"
ROOT_GIB = 30  # the ECS-optimized AL2023 image's own root size; images stay here, not on scratch

# Runs before the ECS agent starts. On Nitro instances the volume appears as an NVMe device;
# amazon-ec2-utils (on AL2023) links it back to its block-device name, and a custom AMI without
# those udev rules is matched on the volume's exact size instead. Docker's image storage stays
# on the root volume so that a full scratch never stops images from being pulled.
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
if [ -z "$dev" ]; then echo "labbatch: scratch volume {device} ({size_gib} GiB) not found" >&2; exit 1; fi
blkid "$dev" >/dev/null 2>&1 || mkfs.xfs -q "$dev"
mkdir -p {mount}
mount -o noatime "$dev" {mount}
chmod 1777 {mount}
echo "$dev {mount} xfs defaults,noatime,nofail 0 2" >> /etc/fstab
# The instance's reference cache (labbatch_runner/refcache.py): each reference object (a job's
# parameters and shared inputs, their folders and companions) is downloaded here once, keyed by
# its ETag, and shared by every job the instance runs; least recently used entries are evicted
# only when a job needs the space, never while a job uses them. It lives on this volume, so the
# volume bounds it, and admission counts a job's reference data against it.
mkdir -p {mount}/{cache}
chmod 1777 {mount}/{cache}
# Let ECS drain a spot instance on its two-minute interruption notice.
echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config
"""


class ScratchLaunchTemplate(Construct):
    """Exposes `launch_template`; its `latest_version_number` is what compute environments pin."""

    def __init__(self, scope: Construct, construct_id: str, *, scratch: ScratchVolume,
                 custom_ami: bool, kms_key: kms.IKey | None = None, boot_steps: Sequence[str] = ()) -> None:
        """`boot_steps`: shell run after the scratch volume is mounted, before the ECS agent starts."""
        super().__init__(scope, construct_id)

        script = ec2.UserData.for_linux()
        script.add_commands(_MOUNT_SCRIPT.format(
            size_gib=scratch.size_gib, device=SCRATCH_DEVICE, mount=SCRATCH_MOUNT, cache=CACHE_DIR_NAME),
            *boot_steps)
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
                volume=ec2.BlockDeviceVolume.ebs(ROOT_GIB, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                 encrypted=True, kms_key=kms_key, delete_on_termination=True)))

        self.launch_template = ec2.LaunchTemplate(
            self, "Resource",
            block_devices=block_devices,
            user_data=user_data,
            require_imdsv2=True,
            # One hop: the host (ECS agent, Docker) reaches the instance metadata, job containers
            # do not, so a job can use only its own job role, never the instance role.
            http_put_response_hop_limit=1,
        )
