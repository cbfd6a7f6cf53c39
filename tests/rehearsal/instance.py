"""The instance rehearsal's driver: boot the synthesized launch template's user data as AWS does.

An "instance" is a container of labbatch-instance:rehearsal (containers/instance/build.sh):
systemd as PID 1, Debian's cloud-init seeded through NoCloud with the launch template's exact
user data, an inner Docker, an ecs.service stand-in with amazon-ecs-init's ordering, and a
registry at localhost:5000 holding a stand-in runner image. It gets a scratch block device of
the lab's configured size (a sparse file on a loop device) at the launch template's device name.
The instance has a console, a terminal read back with `docker logs` (`console()`), as EC2's
GetConsoleOutput reads an instance's serial console. The container flags are the ones ../shared/design.md ("What AWS actually runs") found to run
systemd, cloud-init and an inner dockerd here without --privileged.
"""

from __future__ import annotations

import base64
import email
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "containers" / "instance" / "build.sh"
IMAGE = "labbatch-instance:rehearsal"
LABEL = "org.labbatch.rehearsal"
# Served by docker-registry inside the instance (build.sh pushed it there); Docker pulls from
# a loopback registry over plain HTTP, as it pulls from ECR over HTTPS.
STANDIN_RUNNER_IMAGE = "localhost:5000/labbatch/runner:rehearsal"
STANDIN_MARKER = "labbatch-runner-standin"  # the one file of that image
UNREACHABLE_RUNNER_IMAGE = "localhost:5999/labbatch/runner:rehearsal"  # nothing listens there
# Pseudo parameters a deploy would resolve: any account and Region do, the image is replaced.
PSEUDO = {"AWS::AccountId": "111122223333", "AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com",
          "AWS::Partition": "aws", "AWS::StackName": "LabBatch-example-Compute"}
# As the AL2023 ECS-optimized AMI orders Docker (AWS's ECS guide: the units of ECS and Docker
# wait for cloud-init); Debian's own docker.service is not ordered after cloud-final.
DOCKER_AFTER_CLOUD_FINAL = "[Unit]\nAfter=cloud-final.service\n"
RUN_FLAGS = ["--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
             "--security-opt", "apparmor=unconfined", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
             "--tmpfs", "/run", "--tmpfs", "/run/lock"]


def run(*args: str, timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, errors="replace", timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


# --- the launch template's user data, as EC2 hands it to cloud-init ----------------------------

def _resolve(node: Any, runner_image: str, replaced: list[str]) -> str:
    """Evaluate the intrinsics CDK puts in user data; the runner image URI becomes `runner_image`."""
    if isinstance(node, str):
        return node
    (function, argument), = node.items()
    if function == "Fn::Base64":
        return base64.b64encode(_resolve(argument, runner_image, replaced).encode()).decode()
    if function == "Fn::Join":
        separator, parts = argument
        return separator.join(_resolve(part, runner_image, replaced) for part in parts)
    if function == "Fn::Sub":
        text = argument if isinstance(argument, str) else argument[0]
        resolved = re.sub(r"\$\{([^}!]+)\}", lambda m: PSEUDO[m.group(1)], text)
        if ".dkr.ecr." in resolved:
            replaced.append(resolved)
            return runner_image
        return resolved
    if function == "Ref" and argument in PSEUDO:
        return PSEUDO[argument]
    raise ValueError(f"user data uses {function} {argument!r}: the rehearsal cannot resolve it")


def launch_template_user_data(compute_template: dict, runner_image: str) -> bytes:
    """The MIME document of the (single) launch template, with the runner image substituted."""
    templates = [r for r in compute_template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]
    assert len(templates) == 1, f"expected one launch template, found {len(templates)}"
    user_data = templates[0]["Properties"]["LaunchTemplateData"]["UserData"]
    replaced: list[str] = []
    encoded = _resolve(user_data, runner_image, replaced)
    assert replaced, "the user data names no ECR image: nothing to substitute the stand-in registry for"
    return base64.b64decode(encoded)


def shell_parts(document: bytes) -> list[str]:
    """The text/x-shellscript parts of a MIME user-data document, decoded."""
    message = email.message_from_bytes(document)
    return [part.get_payload(decode=True).decode() for part in message.walk()
            if part.get_content_type() == "text/x-shellscript"]


# What AWS Batch merges into a launch template's MIME user data so that the instance joins the
# compute environment's cluster (Batch user guide, "Launch template support": it merges only
# MIME multi-part user data). Its exact text is Batch's; its effect is this line.
BATCH_CLUSTER = "AWSBatch-labbatch-example-spot-rehearsal"
BATCH_PART = f"#!/bin/bash\necho ECS_CLUSTER={BATCH_CLUSTER} >> /etc/ecs/ecs.config\n"


def with_batch_part(document: bytes, *, first: bool) -> bytes:
    """The launch template's user data as an instance gets it once Batch has merged its part in,
    before or after the template's own parts."""
    parts = [part for part in email.message_from_bytes(document).walk() if not part.is_multipart()]
    batch = MIMEText(BATCH_PART, "x-shellscript", "utf-8")
    merged = MIMEMultipart()
    for part in ([batch, *parts] if first else [*parts, batch]):
        merged.attach(part)
    return merged.as_bytes()


def multipart_user_data(script: str) -> bytes:
    """A MIME multi-part user data with one shell part, shaped like the launch template's."""
    message = MIMEMultipart()
    message.attach(MIMEText(script, "x-shellscript", "utf-8"))
    return message.as_bytes()


# --- an instance --------------------------------------------------------------------------------

@dataclass
class Instance:
    """One booted instance; `remove()` (called by the fixtures, also on failure) undoes everything."""
    name: str
    user_data: bytes
    scratch_gib: int
    docker_after_cloud_final: bool = True
    scratch_device: str = "/dev/xvdb"
    image: str = IMAGE
    # More `docker run` volume arguments (`-v`, `host:container[:ro]`): the agent, its spool, a registry.
    volumes: list[str] = field(default_factory=list)
    workdir: Path = field(init=False)
    loop: str | None = field(default=None, init=False)
    container: str | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)

    def start(self) -> Instance:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"labbatch-{self.name}-"))
        try:
            disk = self.workdir / "scratch.img"
            with open(disk, "wb") as f:
                f.truncate(self.scratch_gib * 1024 ** 3)  # sparse: takes no space until written
            self.loop = run("losetup", "-f", "--show", str(disk)).stdout.strip()
            (self.workdir / "docker").mkdir()  # the inner Docker's data root (no overlay on overlay)
            seed = self.workdir / "seed"
            nocloud = seed / "var/lib/cloud/seed/nocloud"
            nocloud.mkdir(parents=True)
            (nocloud / "meta-data").write_text(f"instance-id: i-{self.name}\nlocal-hostname: {self.name}\n")
            (nocloud / "user-data").write_bytes(self.user_data)
            cfg = seed / "etc/cloud/cloud.cfg.d"
            cfg.mkdir(parents=True)
            # Only the NoCloud seed; and no locale to set (minbase has no `locales`; the AMI's is set).
            (cfg / "99-rehearsal-nocloud.cfg").write_text("datasource_list: [ NoCloud, None ]\nlocale: false\n")
            if self.docker_after_cloud_final:
                dropin = seed / "etc/systemd/system/docker.service.d"
                dropin.mkdir(parents=True)
                (dropin / "10-after-cloud-final.conf").write_text(DOCKER_AFTER_CLOUD_FINAL)
            # The seed, read-only, where cloud-init and systemd look (bind mounts: one `docker run`).
            mounts = ["-v", f"{nocloud}:/var/lib/cloud/seed/nocloud:ro",
                      "-v", f"{cfg / '99-rehearsal-nocloud.cfg'}:/etc/cloud/cloud.cfg.d/99-rehearsal-nocloud.cfg:ro"]
            if self.docker_after_cloud_final:
                mounts += ["-v", f"{dropin}:/etc/systemd/system/docker.service.d:ro"]
            self.container = f"labbatch-rehearsal-{self.name}-{os.getpid()}"
            self.started_at = time.monotonic()
            # `-t`: the instance gets a console (Docker binds a terminal at /dev/console), and
            # `docker logs` reads it back as EC2's GetConsoleOutput reads an instance's serial
            # console: systemd's status lines and whatever is written to /dev/console.
            run("docker", "run", "-d", "-t", "--name", self.container, "--hostname", self.name, "--label", f"{LABEL}=1",
                *RUN_FLAGS, "--device", f"{self.loop}:{self.scratch_device}",
                "-v", f"{self.workdir / 'docker'}:/var/lib/docker", *mounts,
                *[arg for volume in self.volumes for arg in ("-v", volume)], self.image, "/sbin/init")
        except BaseException:
            self.remove()
            raise
        return self

    def reboot(self) -> None:
        """`docker restart`: systemd stops everything and boots again on the same disk and devices."""
        assert self.container
        run("docker", "restart", "--time", "20", self.container, timeout=120)
        self.started_at = time.monotonic()

    def remove(self) -> None:
        if self.container:
            run("docker", "rm", "-f", "-v", self.container, check=False)
            self.container = None
        if self.loop:
            run("losetup", "-d", self.loop, check=False)
            self.loop = None
        if getattr(self, "workdir", None) and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- looking inside ---------------------------------------------------------------------

    def console(self) -> str:
        """What the instance's console has shown since it was created (its terminal, as
        `docker logs` keeps it), the rehearsal's GetConsoleOutput."""
        assert self.container
        return run("docker", "logs", self.container, timeout=30).stdout

    def sh(self, script: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        assert self.container
        return run("docker", "exec", self.container, "sh", "-c", script, timeout=timeout, check=check)

    def unit(self, unit: str, *properties: str) -> dict[str, str]:
        """systemd's properties of `unit`; a `docker exec` that fails (it does, now and then, on a
        busy machine) is tried again before this gives up."""
        for attempt in range(3):
            result = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties))
            found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
            if result.returncode == 0 and set(properties) <= set(found):
                return found
            time.sleep(1)
        raise RuntimeError(f"systemctl show {unit} failed ({result.returncode}): {result.stderr.strip()}")

    def seconds_since_boot(self, monotonic_usec: str) -> float | None:
        """A unit timestamp (CLOCK_MONOTONIC, µs) as seconds after PID 1 started; None if unset."""
        if not monotonic_usec or monotonic_usec == "0":
            return None
        boot = self.sh("systemctl show -p UserspaceTimestampMonotonic --value").stdout.strip()
        return (int(monotonic_usec) - int(boot)) / 1e6

    def cloud_final(self) -> str:
        """`done` (active or failed), or its state while it runs."""
        state = self.unit("cloud-final.service", "ActiveState")["ActiveState"] if self.container else ""
        return "done" if state in ("active", "failed") else state

    def wait_for(self, condition, bound: float, interval: float = 1.0) -> float | None:
        """Seconds since `start()` at which `condition()` was seen to hold (checked at least once,
        however late), or None if it did not hold within `bound`."""
        while True:
            try:
                if condition():
                    return time.monotonic() - self.started_at
            except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired):
                pass  # systemd is not answering yet
            if time.monotonic() - self.started_at >= bound:
                return None
            time.sleep(interval)

    def diagnostics(self) -> str:
        """What to print when an assertion fails: states, jobs, the journal's tail."""
        return self.sh("systemctl is-system-running; systemctl list-jobs --no-pager; "
                       "systemctl --failed --no-pager; cloud-init status --long; "
                       "journalctl -b --no-pager -o short-monotonic"
                       " | grep -v 'containerd\\[\\|dockerd\\[\\|docker-registry\\[' | tail -n 40", timeout=30).stdout


def build_image() -> None:
    """containers/instance/build.sh (cached: seconds when its inputs are unchanged)."""
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed:\n{result.stderr[-3000:]}")

