"""The instance rehearsal, first slice of #24 item 1: boot the synthesized launch template's user
data in a stand-in for an ECS-optimized AL2023 instance (tests/rehearsal/instance.py) and check
what AWS would do with it: cloud-init's final stage ends, /scratch is mounted, the runner tree
is complete before the ECS agent starts, and with no registry the agent stays stopped and the
reason is kept, on disk and on the instance's console (where `labbatch why` reads it). The boot design before this (tests/rehearsal/old_boot.py) hangs in cloud-final.

Four instances boot side by side (a few seconds each); the whole module takes about a minute,
bounded by HANG_BOUND (how long the old design is watched) and the runner tree's three tries.
"""

from __future__ import annotations

import time

import pytest

from labbatch_contract import boot_reasons
from tests.rehearsal.instance import (BATCH_CLUSTER, STANDIN_MARKER, STANDIN_RUNNER_IMAGE, UNREACHABLE_RUNNER_IMAGE,
                                      Instance, launch_template_user_data, multipart_user_data, shell_parts,
                                      with_batch_part)
from tests.rehearsal.old_boot import OLD_USER_DATA_SCRIPT

# Bounds, counted from `docker start`. A boot here reaches the end of cloud-final in 2-5 s and
# starts the agent about a second later; the bounds leave room for a busy 2-core CI machine.
CLOUD_FINAL_BOUND = 60.0
# The old design is declared hung if cloud-final has not ended this long after start, with its
# user data blocked in `systemctl start docker` and docker's start job waiting.
HANG_BOUND = 45.0
# Three pulls 10 and 20 s apart, then the unit fails.
FAILED_TREE_BOUND = 120.0

pytestmark = [pytest.mark.usefixtures("instance_image"), pytest.mark.xdist_group("rehearsal")]

NEW = "rehearsal-new"                    # the launch template's user data, docker after cloud-final
NEW_DEBIAN_ORDER = "rehearsal-unordered"  # the same, docker.service as Debian orders it
OLD = "rehearsal-old"                    # the old boot design, docker after cloud-final
UNREACHABLE = "rehearsal-noregistry"     # the launch template's user data, no registry answers


@pytest.fixture(scope="module")
def instances(example_compute):
    """All four instances, started together; every one removed (container, loop device, files)
    however the tests end."""
    template, scratch_gib = example_compute
    ours = launch_template_user_data(template, STANDIN_RUNNER_IMAGE)
    specs = {
        # Batch's part merged in after the template's parts on one, before them on the other.
        NEW: (with_batch_part(ours, first=False), True),
        NEW_DEBIAN_ORDER: (with_batch_part(ours, first=True), False),
        OLD: (multipart_user_data(OLD_USER_DATA_SCRIPT.replace("{IMAGE_URI}", STANDIN_RUNNER_IMAGE)), True),
        UNREACHABLE: (launch_template_user_data(template, UNREACHABLE_RUNNER_IMAGE), True),
    }
    started: dict[str, Instance] = {}
    try:
        for name, (user_data, docker_after_cloud_final) in specs.items():
            started[name] = Instance(name, user_data, scratch_gib=scratch_gib,
                                     docker_after_cloud_final=docker_after_cloud_final).start()
        yield started
    finally:
        for instance in started.values():
            instance.remove()


def since_boot(instance: Instance, unit: str, prop: str = "ActiveEnterTimestampMonotonic") -> float | None:
    return instance.seconds_since_boot(instance.unit(unit, prop)[prop])


def test_the_rehearsal_boots_the_launch_templates_own_user_data(example_compute):
    template, _ = example_compute
    document = launch_template_user_data(template, STANDIN_RUNNER_IMAGE)
    script, = shell_parts(document)
    assert f'image="{STANDIN_RUNNER_IMAGE}"' in script and ".dkr.ecr." not in script
    assert "systemctl enable --now --no-block" in script


@pytest.mark.parametrize("name", [NEW, NEW_DEBIAN_ORDER])
def test_cloud_final_ends_within_the_bound_whether_or_not_docker_waits_for_it(instances, name):
    instance = instances[name]
    ended = instance.wait_for(lambda: instance.cloud_final() == "done", CLOUD_FINAL_BOUND)
    assert ended is not None, f"cloud-final still running after {CLOUD_FINAL_BOUND} s:\n{instance.diagnostics()}"
    assert instance.unit("cloud-final.service", "Result")["Result"] == "success", instance.diagnostics()
    assert "status: done" in instance.sh("cloud-init status").stdout
    ended_after = since_boot(instance, "cloud-final.service")  # systemd's own record, however late we look
    assert ended_after is not None and ended_after < CLOUD_FINAL_BOUND, ended_after


def test_the_old_boot_design_hangs_in_cloud_final_when_docker_waits_for_it(instances):
    """The user data's synchronous `systemctl start docker` waits for docker.service, which waits
    for cloud-final.service, which waits for the user data: no instance would ever join."""
    instance = instances[OLD]
    ended = instance.wait_for(lambda: instance.cloud_final() == "done", HANG_BOUND)
    assert ended is None, "the old design's cloud-final ended: no deadlock to show"
    assert instance.unit("cloud-final.service", "ActiveState")["ActiveState"] == "activating"
    jobs = instance.sh("systemctl list-jobs --no-legend --no-pager").stdout
    assert any(line.split()[1:4] == ["docker.service", "start", "waiting"] for line in jobs.splitlines()), jobs
    assert instance.sh("pgrep -fx 'systemctl start docker'").returncode == 0, instance.diagnostics()
    assert instance.unit("ecs.service", "ActiveState")["ActiveState"] != "active"
    instance.remove()  # stop the hung instance now; the fixture's finalizer is a no-op for it


def test_scratch_is_mounted_as_xfs_with_its_fstab_line(instances):
    instance = instances[NEW]
    assert instance.wait_for(lambda: instance.unit("labbatch-scratch.service", "ActiveState")["ActiveState"]
                             == "active", CLOUD_FINAL_BOUND) is not None, instance.diagnostics()
    found = instance.sh("findmnt -no SOURCE,FSTYPE /scratch").stdout.split()
    assert found == ["/dev/xvdb", "xfs"], found
    uuid = instance.sh("blkid -s UUID -o value /dev/xvdb").stdout.strip()
    fstab = instance.sh("cat /etc/fstab").stdout.splitlines()
    assert uuid and fstab.count(f"UUID={uuid} /scratch xfs defaults,noatime,nofail 0 2") == 1, fstab
    assert instance.sh("stat -c %a /scratch /scratch/labbatch-cache").stdout.split() == ["1777", "1777"]


@pytest.mark.parametrize("name", [NEW, NEW_DEBIAN_ORDER])
def test_the_agent_gets_batchs_cluster_and_ours_settings_whichever_part_runs_first(instances, name):
    """Batch merges its own part (ECS_CLUSTER) into the user data: neither part may clobber the
    other's ecs.config lines, or the instance joins no compute environment."""
    instance = instances[name]
    assert instance.wait_for(lambda: instance.cloud_final() == "done", CLOUD_FINAL_BOUND) is not None
    config = instance.sh("cat /etc/ecs/ecs.config").stdout.splitlines()
    assert config.count(f"ECS_CLUSTER={BATCH_CLUSTER}") == 1, config
    assert config.count("ECS_ENABLE_SPOT_INSTANCE_DRAINING=true") == 1, config


@pytest.mark.parametrize("name", [NEW, NEW_DEBIAN_ORDER])
def test_the_runner_tree_is_complete_before_the_ecs_agent_starts(instances, name):
    instance = instances[name]
    started = instance.wait_for(lambda: instance.unit("ecs.service", "ActiveState")["ActiveState"] == "active",
                                CLOUD_FINAL_BOUND)
    assert started is not None, f"the agent did not start:\n{instance.diagnostics()}"
    # What the agent stand-in saw when it started, and what systemd recorded.
    assert instance.sh("cat /run/ecs-agent-started").stdout.split()[-1] == "tree=complete"
    assert instance.sh(f"test -f /opt/labbatch/runner/{STANDIN_MARKER}").returncode == 0
    tree_done = since_boot(instance, "labbatch-runner-tree.service")
    agent_started = since_boot(instance, "ecs.service", "ExecMainStartTimestampMonotonic")
    cloud_final = since_boot(instance, "cloud-final.service")
    assert tree_done is not None and agent_started is not None and cloud_final is not None
    assert tree_done <= agent_started, (tree_done, agent_started)
    assert cloud_final <= agent_started, (cloud_final, agent_started)
    # Docker pulled through the (stand-in) ECR credential helper, as the instance role would.
    assert instance.sh("cat /run/ecr-login-asked").stdout.split() == ["localhost:5000"]
    assert not instance.sh("ls /var/lib/labbatch/boot").stdout.strip()  # no failure recorded
    assert not boot_reasons.failures_in(instance.console())  # and none on the console
    print(f"{name}: cloud-final ended {cloud_final:.1f} s, tree {tree_done:.1f} s, agent {agent_started:.1f} s after boot")


def test_with_no_registry_the_agent_stays_stopped_and_the_reason_is_kept(instances):
    instance = instances[UNREACHABLE]
    failed = instance.wait_for(
        lambda: instance.unit("labbatch-runner-tree.service", "ActiveState")["ActiveState"] == "failed",
        FAILED_TREE_BOUND)
    assert failed is not None, instance.diagnostics()
    assert instance.cloud_final() == "done"  # the boot itself did not hang
    time.sleep(2)  # anything that would start the agent after the failure has had its chance
    agent = instance.unit("ecs.service", "ActiveState", "ExecMainStartTimestampMonotonic")
    assert agent["ActiveState"] == "inactive" and agent["ExecMainStartTimestampMonotonic"] == "0", agent
    assert instance.sh("test -e /run/ecs-agent-started").returncode != 0
    journal = instance.sh("journalctl -b --no-pager -o cat -u ecs.service").stdout
    assert "Dependency failed for ecs.service" in journal, journal
    reason = instance.sh("cat /var/lib/labbatch/boot/runner-tree.failed").stdout
    assert reason.startswith(f"could not install the runner tree from {UNREACHABLE_RUNNER_IMAGE} (3 tries):"), reason
    assert "connection refused" in reason, reason
    # The same reason on the console, where EC2's GetConsoleOutput finds it with no agent running,
    # in the words `labbatch why` and `labbatch doctor` parse (labbatch_contract/boot_reasons.py).
    console = instance.console()
    found = boot_reasons.failures_in(console)
    assert [failure.step for failure in found] == ["runner-tree"], console[-3000:]
    assert found[0].reason == " ".join(reason.split()), (found[0].reason, reason)
    print("console:", next(line for line in console.splitlines() if boot_reasons.CONSOLE_PREFIX in line))
    assert instance.sh("test -e /opt/labbatch/runner").returncode != 0  # no half tree either


def test_a_reboot_keeps_scratch_and_the_tree_and_starts_the_agent_again(instances):
    """Last in the module: it restarts the instance the others looked at. User data does not run
    again (cloud-init runs it once per instance); the boot units do, and find their work done."""
    instance = instances[NEW]
    assert instance.wait_for(lambda: instance.unit("ecs.service", "ActiveState")["ActiveState"] == "active",
                             CLOUD_FINAL_BOUND) is not None, instance.diagnostics()
    instance.sh("touch /scratch/kept-across-reboot")
    instance.reboot()
    started = instance.wait_for(lambda: instance.unit("ecs.service", "ActiveState")["ActiveState"] == "active",
                                CLOUD_FINAL_BOUND)
    assert started is not None, f"the agent did not start after the reboot:\n{instance.diagnostics()}"
    assert instance.sh("findmnt -no FSTYPE /scratch").stdout.strip() == "xfs"
    assert instance.sh("test -f /scratch/kept-across-reboot").returncode == 0  # the same volume, not a new one
    assert instance.sh("cat /run/ecs-agent-started").stdout.split()[-1] == "tree=complete"
    assert len(instance.sh("grep ' /scratch xfs ' /etc/fstab").stdout.splitlines()) == 1
    config = instance.sh("cat /etc/ecs/ecs.config").stdout.splitlines()
    assert config.count(f"ECS_CLUSTER={BATCH_CLUSTER}") == 1, config  # user data did not run twice
    assert not instance.sh("ls /var/lib/labbatch/boot").stdout.strip()
