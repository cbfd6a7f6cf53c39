"""Local mode's container engine: each attempt runs in its job definition's image, as ECS runs it.

The job's shape is the one AWS gets (labbatch.lab.batch_layout): the tool's image runs unmodified,
its own ENTRYPOINT untouched, and the runner comes from outside it: the root filesystem of the
runner image (`labbatch-runner:local`) is extracted once per image id to
`~/.labbatch/runner-trees/<id>/` and bind-mounted read-only at RUNNER_MOUNT; the job definition's
command starts it through that tree's own loader and Python (RUNNER_LAUNCH).

Per attempt: `docker create` (never pulling: an image the engine lacks fails the job with a
reason naming it), `docker start`, `docker logs --follow` for its output, and at the end
`docker inspect` (exit code, OOM kill) and `docker rm --force --volumes`. What the container gets
is what the ECS agent gives it, from the same translation of the job definition
(labbatch_contract.batch_container): host network (which also reaches the loopback S3
emulator), vCPUs as CPU shares and memory as a hard limit, the definition's mounts with the
instance's paths mapped to this machine, and the definition's variables with Batch's own; plus
the emulator's endpoint and Region and, under strict IAM, the job role's container-credentials
endpoint as ECS gives it (never an AWS key).

Podman speaks the same commands; whichever of `docker` and `podman` answers first is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from labbatch_contract import batch_reasons
from labbatch_contract.references import CACHE_DIR_NAME
from labbatch_contract.local_state import labbatch_home
from labbatch_contract.batch_container import Container, Mount
from labbatch.lab.batch_layout import RUNNER_HOST_PATH, SCRATCH_MOUNT
from labbatch.lab.config import DEMO_IMAGE

ENGINES = ("docker", "podman")
DEMO_TAG = "labbatch-demo:local"
RUNNER_IMAGE = "labbatch-runner:local"
ENGINE_TIMEOUT_SECONDS = 60
OWNER_LABEL = "labbatch.local-pid"
# A runner tree no lab has started with for this long, and no container mounts, is removed.
PRUNE_AFTER_SECONDS = 24 * 3600
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class DockerUnavailable(RuntimeError):
    pass


def engine_answers(engine: str) -> bool:
    binary = shutil.which(engine)
    if not binary:
        return False
    try:
        return subprocess.run([binary, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_engine(candidates: Sequence[str] = ENGINES) -> str | None:
    """The first container engine that answers (`docker info` / `podman info`), or None."""
    return next((engine for engine in candidates if engine_answers(engine)), None)


def _run(engine: str, *args: str, timeout: float = ENGINE_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([engine, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# Where Podman (containers.conf's default cdi_spec_dirs) reads Container Device Interface specs;
# `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` writes the NVIDIA one there.
CDI_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
CDI_NVIDIA_KIND = "nvidia.com/gpu"


def uses_cdi(engine: str) -> bool:
    """Podman hands out GPUs as CDI devices (`--device nvidia.com/gpu=all`), Docker with `--gpus N`."""
    return Path(engine).name == "podman"


def nvidia_runtime(engine: str | None, *, cdi_dirs: Sequence[Path] = CDI_SPEC_DIRS) -> bool:
    """Whether the engine can hand a container GPUs: Docker lists an `nvidia` runtime (the NVIDIA
    container toolkit) in `docker info`; Podman has no such runtime, it needs a CDI spec of kind
    nvidia.com/gpu in its spec directories. Otherwise GPU jobs are refused at submission, never
    accepted to wait for a GPU this machine cannot give."""
    if engine is not None and uses_cdi(engine):
        return any(CDI_NVIDIA_KIND in _text(spec) for folder in cdi_dirs if folder.is_dir()
                   for spec in sorted(folder.iterdir()) if spec.suffix in (".yaml", ".yml", ".json"))
    if engine is None or Path(engine).name != "docker":
        return False
    try:
        answer = _run(engine, "info", "--format", "{{json .Runtimes}}")
    except (OSError, subprocess.SubprocessError):
        return False
    try:
        runtimes = json.loads(answer.stdout or "{}")
    except ValueError:
        return False
    return answer.returncode == 0 and isinstance(runtimes, dict) and "nvidia" in runtimes


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    """The engine's own error: its daemon's answer when it gave one (docker start ends with a
    summary line that names only the container), else its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if "Error response from daemon" in line:
            return line[line.index("Error response from daemon"):]
    return lines[-1] if lines else "no output"


def image_id(engine: str, reference: str) -> str | None:
    """The image's id if the engine holds it; None otherwise (never pulls)."""
    try:
        result = _run(engine, "image", "inspect", "--format", "{{.Id}}", reference)
    except subprocess.TimeoutExpired:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def runner_tree(engine: str, image: str = RUNNER_IMAGE, trees: Path | None = None) -> Path:
    """The runner image's root filesystem on the host, extracted once per image id."""
    found = image_id(engine, image)
    if found is None:
        raise DockerUnavailable(f"the runner image {image} is not in the local {engine} engine "
                                "(build it: make images)")
    trees = trees or Path(os.environ.get("LABBATCH_RUNNER_TREES") or labbatch_home() / "runner-trees")
    tree = trees / found.split(":", 1)[-1][:64]
    if (tree / ".complete").exists():
        (tree / ".complete").touch()  # last used: prune_runner_trees keeps it
        prune_runner_trees(engine, trees, keep=tree)
        return tree
    trees.mkdir(parents=True, exist_ok=True)
    created = _run(engine, "create", "--pull", "never", image, "/labbatch-runner-tree")
    if created.returncode != 0:
        raise DockerUnavailable(f"{engine} create {image} failed: {last_line(created.stderr)}")
    container = created.stdout.strip()
    partial = Path(tempfile.mkdtemp(prefix=f".{tree.name}-", dir=trees))
    try:
        with subprocess.Popen([engine, "export", container], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as export:
            # dev/ is the engine's own (device nodes); the tree never needs it.
            untar = subprocess.run(["tar", "-x", "-C", str(partial), "--no-same-owner", "--exclude=./dev",
                                    "--exclude=dev"], stdin=export.stdout, capture_output=True, text=True)
            export_err = export.stderr.read().decode(errors="replace") if export.stderr else ""
        if export.returncode != 0 or untar.returncode != 0:
            raise DockerUnavailable(f"extracting {image} failed: {last_line(export_err + untar.stderr)}")
        (partial / ".complete").write_text(found + "\n")
        try:
            partial.rename(tree)  # another process may have won the race: its tree is as good
        except OSError:
            pass
    finally:
        _run(engine, "rm", "--force", "--volumes", container)
        shutil.rmtree(partial, ignore_errors=True)
    if not (tree / ".complete").exists():
        raise DockerUnavailable(f"extracting {image} into {tree} failed")
    prune_runner_trees(engine, trees, keep=tree)
    return tree


def prune_runner_trees(engine: str, trees: Path, *, keep: Path, unused_seconds: float = PRUNE_AFTER_SECONDS) -> list[Path]:
    """Removes the trees of older runner images (each `make images` that changes the runner adds
    one): those not used for `unused_seconds` and mounted by no container the engine has. Returns
    what it removed. A tree it cannot judge (the engine does not answer) stays."""
    candidates = [path for path in trees.iterdir() if path.is_dir() and path != keep and not path.name.startswith(".")
                  and (path / ".complete").exists()
                  and time.time() - (path / ".complete").stat().st_mtime > unused_seconds]
    if not candidates:
        return []
    try:
        listed = _run(engine, "ps", "--all", "--quiet")
        ids = listed.stdout.split() if listed.returncode == 0 else None
        mounted = _run(engine, "inspect", "--format", "{{range .Mounts}}{{.Source}}\n{{end}}", *ids) if ids else None
    except subprocess.TimeoutExpired:
        return []
    if ids is None or (mounted is not None and mounted.returncode != 0):
        return []
    in_use = set(mounted.stdout.splitlines()) if mounted is not None else set()
    removed = []
    for path in candidates:
        if str(path) in in_use:
            continue
        # Renamed first, so a lab starting now never mounts a half-removed tree.
        doomed = path.with_name(f".removing-{path.name}")
        try:
            path.rename(doomed)
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def container_name(*parts: str) -> str:
    """An engine-safe container name from the attempt's identifiers."""
    name = "-".join(_NAME_UNSAFE.sub("-", part).strip("-") for part in parts if part)
    return name[:200]


def image_missing_reason(image: str, engine: str) -> str:
    return (f'{batch_reasons.CANNOT_PULL_CONTAINER}: image "{image}" is not present in the local container engine ({engine}) '
            f"and local mode never pulls; load it with {engine} load or {engine} build")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything one attempt's container needs; `create_argv` is the whole `docker create`."""
    engine: str
    name: str
    image: str  # as the engine knows it
    create_argv: list[str]
    scratch: Path  # the attempt's own scratch directory (mounted at /scratch), removed after it
    # Set: the container cannot be made here (the reason, Batch's CannotCreateContainerError form).
    refusal: str | None = None


@dataclass(frozen=True)
class ContainerRunner:
    engine: str
    runner_tree: Path
    # Image names as job definitions give them -> what to run locally ("demo" -> the local build).
    images: Mapping[str, str] = field(default_factory=lambda: {DEMO_IMAGE: DEMO_TAG})

    def local_image(self, image: str) -> str:
        return self.images.get(image, image)

    def spec(self, container: Container, *, scratch: Path, name: str, labels: Mapping[str, str] | None = None,
             reference_cache: Path | None = None) -> ContainerSpec:
        """`docker create` for what the agent would start (labbatch_contract.batch_container).

        The instance's paths a definition mounts are this machine's: the runner tree, and the
        attempt's own scratch directory for the scratch volume. A definition that mounts any
        other instance path is refused rather than handed a path of this machine.
        `reference_cache`: the "instance's" reference cache, shared by every attempt. On AWS it is a
        folder of the one scratch volume all jobs of an instance mount; here each attempt has its
        own scratch directory, so the shared cache is mounted into it at the same place."""
        host_paths = {RUNNER_HOST_PATH: str(self.runner_tree), SCRATCH_MOUNT: str(scratch)}
        local_image = self.local_image(container.image)
        strangers = sorted({m.source for m in container.mounts} - set(host_paths))
        container = container.with_environment({"LABBATCH_SCRATCH_DIR": SCRATCH_MOUNT})
        # Which `labbatch local` made it: one that was killed outright leaves containers that the
        # next start removes (remove_orphans).
        labels = {**(labels or {}), OWNER_LABEL: str(os.getpid())}
        cache = [Mount(str(reference_cache), f"{SCRATCH_MOUNT}/{CACHE_DIR_NAME}", False)] if reference_cache else []
        argv = [
            self.engine, "create", "--pull", "never", "--name", name,
            *container.create_options(host_paths=host_paths, extra_mounts=cache, cdi_gpus=uses_cdi(self.engine)),
            *[arg for key, value in sorted(labels.items()) for arg in ("--label", f"{key}={value}")],
            local_image,
            *container.command,
        ]
        refusal = None if not strangers else batch_reasons.container_error(
            batch_reasons.CANNOT_CREATE_CONTAINER,
            f"the job definition mounts {', '.join(strangers)} of the instance; LabBatch's local instance has "
            f"only {RUNNER_HOST_PATH} and {SCRATCH_MOUNT}")
        return ContainerSpec(engine=self.engine, name=name, image=local_image, create_argv=argv, scratch=scratch,
                             refusal=refusal)


def inspect_state(engine: str, name: str) -> dict | None:
    try:
        result = _run(engine, "inspect", "--format", "{{json .State}}", name)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None


def remove_container(engine: str, name: str) -> None:
    try:
        _run(engine, "rm", "--force", "--volumes", name)
    except subprocess.TimeoutExpired:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(engine: str) -> list[str]:
    """Removes the containers (and their anonymous volumes) of `labbatch local` processes that no
    longer exist; returns their names. Those of running ones are left alone."""
    try:
        listed = _run(engine, "ps", "--all", "--filter", f"label={OWNER_LABEL}",
                      "--format", f'{{{{.Names}}}} {{{{.Label "{OWNER_LABEL}"}}}}')
    except subprocess.TimeoutExpired:
        return []
    removed = []
    for line in listed.stdout.splitlines():
        name, _, owner = line.strip().partition(" ")
        if name and owner.isdigit() and not _alive(int(owner)):
            remove_container(engine, name)
            removed.append(name)
    return removed
