"""A Batch job definition (+ SubmitJob's overrides and parameters) as the container ECS starts.

One translation for everything that starts a LabBatch job's container from a job definition:
local mode's engine (labbatch/local) and the instance rehearsal's ECS agent stand-in
(tests/rehearsal) both call it, so that what local mode runs cannot drift from what a deploy's
job definitions make the agent run. It reads the definition in either spelling: the Batch API's
(`containerProperties`, camelCase, as RegisterJobDefinition takes and DescribeJobDefinitions
gives) or CloudFormation's (`ContainerProperties`, PascalCase, as the synthesized template holds).

What the ECS agent gives a Batch job's container on EC2 (AWS Batch and ECS documentation):
- the definition's image and command, `Ref::name` replaced by the job's parameters (SubmitJob's
  over the definition's defaults; a name neither gives stays as written, as Batch leaves it);
- the definition's environment with SubmitJob's overrides, plus Batch's own `AWS_BATCH_JOB_ID`,
  `AWS_BATCH_JOB_ATTEMPT`, `AWS_BATCH_JOB_ARRAY_INDEX` (array children), `AWS_BATCH_CE_NAME`,
  `AWS_BATCH_JQ_NAME` (names starting with AWS_BATCH are reserved for Batch);
- VCPU as CPU shares (1,024 per vCPU: ECS's container `cpu` maps to Docker's CpuShares, a
  weight, not a cap), MEMORY as the hard memory limit; no swap unless `linuxParameters.maxSwap`
  asks (the ECS-optimized AMI has no swap space);
- the definition's host volumes at their mount points, ulimits, user, `readonlyRootFilesystem`,
  `linuxParameters` (init process, shared memory, tmpfs, devices, swappiness);
- the host's network: simple jobs on ECS-EC2 support only `host` networking (AWS Batch user
  guide, "Networking modes for AWS Batch jobs").
LabBatch never runs privileged containers (nothing it runs needs one; a definition asking is refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

RESERVED_ENV_PREFIX = "AWS_BATCH"
CPU_SHARES_PER_VCPU = 1024
NETWORK_MODE = "host"
_REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")
# Maps whose keys are data, not field names: left as written when CloudFormation's spelling is read.
_DATA_MAPS = frozenset({"options", "parameters", "tags"})


class JobDefinitionError(ValueError):
    """The definition or the overrides ask for something Batch (or LabBatch) would refuse."""


@dataclass(frozen=True)
class JobContext:
    """Who the container is: the job, its attempt, and where Batch placed it."""
    job_id: str
    attempt: int
    compute_environment: str
    job_queue: str
    array_index: int | None = None


@dataclass(frozen=True)
class Mount:
    source: str  # the instance's path (the volume's host.sourcePath)
    target: str
    read_only: bool


@dataclass(frozen=True)
class Container:
    """What the agent starts; `create_options` spells it for `docker create`/`podman create`."""
    image: str
    command: tuple[str, ...]
    environment: dict[str, str]
    vcpus: float
    memory_mib: int
    gpus: int = 0
    mounts: tuple[Mount, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()
    user: str | None = None
    readonly_root: bool = False
    init_process: bool = False
    shared_memory_mib: int | None = None
    max_swap_mib: int | None = None
    swappiness: int | None = None
    tmpfs: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    devices: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    network_mode: str = NETWORK_MODE

    def with_environment(self, extra: Mapping[str, str]) -> Container:
        return replace(self, environment={**self.environment, **extra})

    def create_options(self, *, host_paths: Mapping[str, str] | None = None,
                       extra_mounts: Sequence[Mount] = (), cdi_gpus: bool = False) -> list[str]:
        """`docker create` options (without the image and command). `host_paths` maps an
        instance's path to where it is on this machine (local mode's runner tree and per-attempt
        scratch); `extra_mounts` adds what only this machine needs, each named by its caller.
        `cdi_gpus`: the engine takes GPUs as CDI devices (Podman), not `--gpus N` (Docker)."""
        memory = self.memory_mib
        swap = memory + self.max_swap_mib if self.max_swap_mib is not None else memory
        options = ["--network", self.network_mode,
                   "--cpu-shares", str(max(2, round(self.vcpus * CPU_SHARES_PER_VCPU))),
                   "--memory", f"{memory}m", "--memory-swap", f"{swap}m"]
        if self.swappiness is not None:
            options += ["--memory-swappiness", str(self.swappiness)]
        for mount in (*self.mounts, *extra_mounts):
            source = (host_paths or {}).get(mount.source, mount.source)
            options += ["--volume", f"{source}:{mount.target}{':ro' if mount.read_only else ''}"]
        for name, soft, hard in self.ulimits:
            options += ["--ulimit", f"{name}={soft}:{hard}"]
        if self.user:
            options += ["--user", self.user]
        if self.readonly_root:
            options.append("--read-only")
        if self.init_process:
            options.append("--init")
        if self.shared_memory_mib is not None:
            options += ["--shm-size", f"{self.shared_memory_mib}m"]
        for path, size, mount_options in self.tmpfs:
            options += ["--tmpfs", f"{path}:" + ",".join((f"size={size}m", *mount_options))]
        for host, inside, permissions in self.devices:
            options += ["--device", f"{host}:{inside}" + (f":{''.join(p[0] for p in permissions).lower()}"
                                                           if permissions else "")]
        if self.gpus:
            # CDI names GPUs one by one or all together; a count would need this machine's GPU list,
            # so a local GPU job under Podman sees every GPU of the machine.
            options += ["--device", "nvidia.com/gpu=all"] if cdi_gpus else ["--gpus", str(self.gpus)]
        for name, value in sorted(self.environment.items()):
            options += ["--env", f"{name}={value}"]
        return options


# --- reading a definition ---------------------------------------------------------------------

def camel_case(node: Any, *, data: bool = False) -> Any:
    """CloudFormation's PascalCase keys in Batch's API spelling (`MountPoints` -> `mountPoints`);
    values, and the keys of data maps (log options, parameters, tags), stay as written."""
    if isinstance(node, list):
        return [camel_case(item) for item in node]
    if not isinstance(node, dict):
        return node
    if data:
        return dict(node)
    # CloudFormation's intrinsics (`Ref`, `Fn::Sub`) keep their names: they are not fields.
    return {(key if key == "Ref" or key.startswith("Fn::") else key[:1].lower() + key[1:]):
            camel_case(value, data=key.lower() in _DATA_MAPS) for key, value in node.items()}


def definition_from_template(properties: Mapping[str, Any]) -> dict[str, Any]:
    """An `AWS::Batch::JobDefinition`'s Properties as RegisterJobDefinition's request."""
    return camel_case(dict(properties))


def substitute_parameters(command: Sequence[str], parameters: Mapping[str, str]) -> list[str]:
    """Batch's `Ref::name` placeholders; unknown names stay as they are, as in Batch."""
    return [_REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), arg) for arg in command]


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise JobDefinitionError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobDefinitionError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _number(raw: Any, where: str, *, whole: bool = True, least: float = 1) -> Any:
    try:
        value = int(str(raw)) if whole else float(str(raw))
    except ValueError:
        raise JobDefinitionError(f"{where} is {raw!r} (allowed: a {'whole ' if whole else ''}number)") from None
    if value < least:
        raise JobDefinitionError(f"{where} is {raw!r} (allowed: at least {least:g})")
    return value


def environment_pairs(pairs: Any, where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for position, pair in enumerate(_list(pairs, where)):
        at = f"{where}[{position}]"
        pair = _dict(pair, at)
        name, value = pair.get("name"), pair.get("value", "")
        if not isinstance(name, str) or not name:
            raise JobDefinitionError(f"{at}.name is required")
        if not isinstance(value, str):
            raise JobDefinitionError(f"{at}.value must be a string")
        if name.startswith(RESERVED_ENV_PREFIX):
            raise JobDefinitionError(f"{at}.name {name!r}: names starting with {RESERVED_ENV_PREFIX} are reserved")
        found[name] = value
    return found


def resources(properties: Mapping[str, Any], where: str) -> dict[str, Any]:
    """VCPU, MEMORY and GPU from `resourceRequirements`, else the deprecated `vcpus`/`memory`."""
    found: dict[str, Any] = {}
    if properties.get("vcpus") is not None:
        found["VCPU"] = _number(properties["vcpus"], f"{where}.vcpus")
    if properties.get("memory") is not None:
        found["MEMORY"] = _number(properties["memory"], f"{where}.memory", least=4)
    for position, requirement in enumerate(_list(properties.get("resourceRequirements"), f"{where}.resourceRequirements")):
        at = f"{where}.resourceRequirements[{position}]"
        requirement = _dict(requirement, at)
        kind, value = requirement.get("type"), requirement.get("value")
        if kind == "VCPU":
            found[kind] = _number(value, f"{at}.value", whole=False, least=0.25)
        elif kind == "MEMORY":
            found[kind] = _number(value, f"{at}.value", least=4)
        elif kind == "GPU":
            found[kind] = _number(value, f"{at}.value", least=0)
        else:
            raise JobDefinitionError(f"{at}.type is {kind!r} (allowed: VCPU, MEMORY, GPU)")
    return found


def _mounts(properties: Mapping[str, Any]) -> tuple[Mount, ...]:
    volumes: dict[str, str | None] = {}
    for position, volume in enumerate(_list(properties.get("volumes"), "containerProperties.volumes")):
        volume = _dict(volume, f"containerProperties.volumes[{position}]")
        name = volume.get("name")
        if not isinstance(name, str) or not name:
            raise JobDefinitionError(f"containerProperties.volumes[{position}].name is required")
        if volume.get("efsVolumeConfiguration"):
            raise JobDefinitionError(f"containerProperties.volumes[{position}] ({name}): EFS volumes are not run "
                                     "by LabBatch (its jobs use the instance's scratch volume)")
        volumes[name] = (volume.get("host") or {}).get("sourcePath")
    mounts = []
    for position, point in enumerate(_list(properties.get("mountPoints"), "containerProperties.mountPoints")):
        at = f"containerProperties.mountPoints[{position}]"
        point = _dict(point, at)
        name, target = point.get("sourceVolume"), point.get("containerPath")
        if name not in volumes:
            raise JobDefinitionError(f"{at}.sourceVolume {name!r} names no volume of the definition "
                                     f"(volumes: {', '.join(volumes) or 'none'})")
        if not isinstance(target, str) or not target.startswith("/"):
            raise JobDefinitionError(f"{at}.containerPath {target!r} must be an absolute path")
        source = volumes[name]
        if not source:
            # ECS gives a volume without a host path a Docker volume of its own; no LabBatch job uses one.
            raise JobDefinitionError(f"{at}: volume {name!r} has no host.sourcePath (LabBatch mounts host paths only)")
        mounts.append(Mount(source=source, target=target, read_only=bool(point.get("readOnly", False))))
    return tuple(mounts)


def _ulimit(value: Any, where: str) -> tuple[str, int, int]:
    value = _dict(value, where)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise JobDefinitionError(f"{where}.name is required")
    soft = _number(value.get("softLimit"), f"{where}.softLimit", least=0)
    hard = _number(value.get("hardLimit"), f"{where}.hardLimit", least=0)
    if soft > hard:
        raise JobDefinitionError(f"{where}: softLimit {soft} is above hardLimit {hard}")
    return name, soft, hard


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise JobDefinitionError(f"{where} {value!r} must be an absolute path")
    return value


def _tmpfs(value: Any, where: str) -> tuple[str, int, tuple[str, ...]]:
    value = _dict(value, where)
    return (_path(value.get("containerPath"), f"{where}.containerPath"), _number(value.get("size"), f"{where}.size"),
            tuple(str(option) for option in _list(value.get("mountOptions"), f"{where}.mountOptions")))


def _device(value: Any, where: str) -> tuple[str, str, tuple[str, ...]]:
    value = _dict(value, where)
    host = _path(value.get("hostPath"), f"{where}.hostPath")
    permissions = tuple(_list(value.get("permissions"), f"{where}.permissions"))
    unknown = [p for p in permissions if p not in ("READ", "WRITE", "MKNOD")]
    if unknown:
        raise JobDefinitionError(f"{where}.permissions {unknown} (allowed: READ, WRITE, MKNOD)")
    return host, _path(value.get("containerPath") or host, f"{where}.containerPath"), permissions


def _linux(properties: Mapping[str, Any]) -> dict[str, Any]:
    linux = _dict(properties.get("linuxParameters"), "containerProperties.linuxParameters")
    tmpfs = tuple(_tmpfs(t, f"containerProperties.linuxParameters.tmpfs[{position}]")
                  for position, t in enumerate(_list(linux.get("tmpfs"), "containerProperties.linuxParameters.tmpfs")))
    devices = tuple(_device(d, f"containerProperties.linuxParameters.devices[{position}]")
                    for position, d in enumerate(_list(linux.get("devices"), "containerProperties.linuxParameters.devices")))
    return {
        "init_process": bool(linux.get("initProcessEnabled", False)),
        "shared_memory_mib": (None if linux.get("sharedMemorySize") is None
                              else _number(linux["sharedMemorySize"], "linuxParameters.sharedMemorySize")),
        "max_swap_mib": (None if linux.get("maxSwap") is None
                         else _number(linux["maxSwap"], "linuxParameters.maxSwap", least=0)),
        "swappiness": (None if linux.get("swappiness") is None
                       else _number(linux["swappiness"], "linuxParameters.swappiness", least=0)),
        "tmpfs": tmpfs, "devices": devices,
    }


def container_for(definition: Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None,
                  parameters: Mapping[str, str] | None = None) -> Container:
    """The container a job of `definition` (RegisterJobDefinition's shape) runs, with SubmitJob's
    `containerOverrides` and `parameters` applied. Raises JobDefinitionError naming the field."""
    properties = _dict(definition.get("containerProperties"), "containerProperties")
    if not properties:
        raise JobDefinitionError("containerProperties is required (LabBatch runs container jobs on EC2)")
    if properties.get("privileged"):
        raise JobDefinitionError("containerProperties.privileged: LabBatch never runs privileged containers")
    image = properties.get("image")
    if not isinstance(image, str) or not image:
        raise JobDefinitionError("containerProperties.image is required")
    overrides = _dict(overrides, "containerOverrides")
    command = _list(overrides.get("command") or properties.get("command"), "command")
    if not command or not all(isinstance(arg, str) for arg in command):
        raise JobDefinitionError("command must be a non-empty list of strings")
    merged_parameters = {**_dict(definition.get("parameters"), "parameters"), **(parameters or {})}
    environment = {**environment_pairs(properties.get("environment"), "containerProperties.environment"),
                   **environment_pairs(overrides.get("environment"), "containerOverrides.environment")}
    needs = {**resources(properties, "containerProperties"), **resources(overrides, "containerOverrides")}
    if "VCPU" not in needs or "MEMORY" not in needs:
        raise JobDefinitionError("the definition must ask for VCPU and MEMORY (resourceRequirements)")
    ulimits = tuple(_ulimit(u, f"containerProperties.ulimits[{position}]")
                    for position, u in enumerate(_list(properties.get("ulimits"), "containerProperties.ulimits")))
    return Container(
        image=image, command=tuple(substitute_parameters(command, merged_parameters)), environment=environment,
        vcpus=float(needs["VCPU"]), memory_mib=int(needs["MEMORY"]), gpus=int(needs.get("GPU", 0)),
        mounts=_mounts(properties), ulimits=ulimits, user=properties.get("user") or None,
        readonly_root=bool(properties.get("readonlyRootFilesystem", False)),
        **_linux(properties))


def batch_environment(context: JobContext) -> dict[str, str]:
    """The variables Batch adds to every job's container."""
    env = {"AWS_BATCH_JOB_ID": context.job_id, "AWS_BATCH_JOB_ATTEMPT": str(context.attempt),
           "AWS_BATCH_CE_NAME": context.compute_environment, "AWS_BATCH_JQ_NAME": context.job_queue}
    if context.array_index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(context.array_index)
    return env
