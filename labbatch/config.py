"""The lab configuration model: one YAML file per lab, validated before anything is built.

Limits are today's AWS figures (gp3 up to 65,536 GiB, 80,000 IOPS and 2,000 MiB/s; Batch
arrays of 2-10,000 jobs; 50 compute environments and 50 job queues per account and Region),
not the older ones many docs still quote. Every field error names what is allowed, so a platform engineer can fix
a file from the message alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)

from labbatch import instance_types
from labbatch_contract import names, references, runner_env
from labbatch_contract.settings import RecoverySettings

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)

GP3_SIZE_GIB = (1, 65_536)
GP3_IOPS = (3_000, 80_000)
GP3_THROUGHPUT_MIBPS = (125, 2_000)
GP3_IOPS_PER_GIB = 500
GP3_THROUGHPUT_PER_IOPS = 0.25
BATCH_ATTEMPTS = (1, 10)
BATCH_MAX_VCPUS = 100_000

# `\Z`, not `$` (which also matches before a trailing newline, so "lab\n" would pass), and
# re.ASCII where AWS allows ASCII only (in Python, \d and \w match any script's digits and letters).
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
PIPELINE_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
PARAMETER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")
ACCOUNT_RE = re.compile(r"^\d{12}\Z", re.ASCII)
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d\Z", re.ASCII)
AMI_RE = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?\Z")
PRINCIPAL_RE = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)\Z", re.ASCII)
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+\Z")
# Tag keys and values may use any script's letters (AWS allows UTF-8 letters), never control characters.
TAG_RE = re.compile(r"^[\w .:/=+\-@]*\Z")
# A single name is valid too (Docker Hub's official images, e.g. `ubuntu:24.04`, and images only
# a local engine holds, e.g. `labbatch-bwa:local`), as Batch's job definitions accept it.
IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})?\Z", re.ASCII)
# AWS allows 50 tags per resource; LabBatch adds its own `labbatch:lab` to every one.
MAX_TAGS = 49
RESERVED_TAG_PREFIXES = ("aws:", "labbatch:")

# The image LabBatch builds from containers/ (runner + demo tools).
DEMO_IMAGE = "demo"
MAX_LAB_NAME = 15  # keeps labbatch-<lab>-references-<account>-<region> within 63 characters
MAX_PIPELINE_NAME = 40


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _allowed(text: str) -> dict:
    return {"allowed": text}


FieldPath = tuple[str, ...]


class FieldProblems(ValueError):
    """Problems found by a validator that spans fields, each with the path of the field at fault
    below the validated value, so that the loader names `pipelines.align.memory_mib` rather than
    the model that checked it (pydantic would place them all at the validator's own field)."""

    def __init__(self, problems: list[tuple[FieldPath, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(path)}: {problem}" if path else problem
                                   for path, problem in problems))


class ScratchVolume(_Strict):
    size_gib: int = Field(100, ge=GP3_SIZE_GIB[0], le=GP3_SIZE_GIB[1],
                          json_schema_extra=_allowed(f"{GP3_SIZE_GIB[0]}-{GP3_SIZE_GIB[1]:,} GiB (gp3)"))
    iops: int = Field(3_000, ge=GP3_IOPS[0], le=GP3_IOPS[1],
                      json_schema_extra=_allowed(f"{GP3_IOPS[0]:,}-{GP3_IOPS[1]:,} (gp3)"))
    throughput_mibps: int = Field(125, ge=GP3_THROUGHPUT_MIBPS[0], le=GP3_THROUGHPUT_MIBPS[1],
                                  json_schema_extra=_allowed(
                                      f"{GP3_THROUGHPUT_MIBPS[0]}-{GP3_THROUGHPUT_MIBPS[1]:,} MiB/s (gp3)"))

    @model_validator(mode="after")
    def _gp3_ratios(self) -> ScratchVolume:
        problems = []
        if self.iops > self.size_gib * GP3_IOPS_PER_GIB:
            problems.append(
                f"iops {self.iops:,} is more than {GP3_IOPS_PER_GIB} per GiB of a {self.size_gib} GiB volume "
                f"(allowed: at most {self.size_gib * GP3_IOPS_PER_GIB:,}; raise size_gib or lower iops)")
        if self.throughput_mibps > self.iops * GP3_THROUGHPUT_PER_IOPS:
            problems.append(
                f"throughput_mibps {self.throughput_mibps} is more than {GP3_THROUGHPUT_PER_IOPS} MiB/s per IOPS "
                f"(allowed: at most {int(self.iops * GP3_THROUGHPUT_PER_IOPS)} with {self.iops:,} iops)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
MAX_POOL_NAME = 20
DEFAULT_POOL = "default"
MAX_GPUS = 8  # the most any type in the GPU table has
# The fields of one pool; in the legacy `compute:` block they describe the one pool `default`.
POOL_FIELDS = ("instance_types", "ami_id", "scratch", "on_demand_max_vcpus", "spot_max_vcpus",
               "spot_allocation_strategy", "gpu")


def _instance_types_allowed() -> str:
    return ("sizes large..16xlarge of " + ", ".join(instance_types.known_families())
            + ", or whole families; GPU pools: " + ", ".join(instance_types.known_gpu_families()))


class Pool(_Strict):
    """One instance pool: its own compute environments (spot, on-demand), queues and launch template."""

    instance_types: list[str] = Field(
        default_factory=lambda: ["m6i.large", "m6i.xlarge", "m6i.2xlarge"], min_length=1,
        json_schema_extra=_allowed(_instance_types_allowed()))
    ami_id: str | None = Field(None, json_schema_extra=_allowed(
        "an AMI id (ami-xxxxxxxx); leave out for the ECS-optimized Amazon Linux 2023 image (its GPU image "
        "in a gpu pool)"))
    scratch: ScratchVolume = ScratchVolume()
    on_demand_max_vcpus: int = Field(16, ge=0, le=BATCH_MAX_VCPUS,
                                     json_schema_extra=_allowed(f"0-{BATCH_MAX_VCPUS:,}"))
    spot_max_vcpus: int = Field(64, ge=0, le=BATCH_MAX_VCPUS,
                                json_schema_extra=_allowed(f"0-{BATCH_MAX_VCPUS:,}"))
    # Only these two spot strategies let Batch update a compute environment in place, which is
    # what carries a new launch template or AMI to running environments on the next deploy.
    spot_allocation_strategy: Literal["SPOT_PRICE_CAPACITY_OPTIMIZED", "SPOT_CAPACITY_OPTIMIZED"] = \
        "SPOT_PRICE_CAPACITY_OPTIMIZED"
    # GPU instances start from the ECS-optimized AL2023 GPU image (NVIDIA driver and container
    # toolkit), which the ECS agent needs to hand a job its GPUs.
    gpu: bool = Field(False, json_schema_extra=_allowed("true (GPU instance types, the ECS GPU image) or false"))

    @field_validator("instance_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if not instance_types.is_known(t)]
        if unknown:
            raise ValueError(f"unknown instance type(s) {', '.join(unknown)} (allowed: {_instance_types_allowed()})")
        if len(set(value)) != len(value):
            raise ValueError("instance types listed twice")
        arches = {t.architecture for t in instance_types.expand(value)}
        if len(arches) > 1:
            raise ValueError("instance types mix x86_64 and arm64 (allowed: one architecture per pool, "
                             "since a compute environment runs one AMI)")
        return value

    @field_validator("ami_id")
    @classmethod
    def _ami(cls, value: str | None) -> str | None:
        if value is not None and not AMI_RE.match(value):
            raise ValueError(f"{value!r} is not an AMI id (allowed: ami- followed by 8 or 17 hex digits)")
        return value

    @model_validator(mode="after")
    def _pool_checks(self) -> Pool:
        problems = []
        if self.on_demand_max_vcpus == 0 and self.spot_max_vcpus == 0:
            problems.append(((), "on_demand_max_vcpus and spot_max_vcpus are both 0: no job could ever run "
                                 "(allowed: at least one above 0)"))
        types = instance_types.expand(self.instance_types)
        if self.gpu:
            cpu_only = sorted({t.family if t.family in self.instance_types else t.name for t in types if not t.gpus})
            if cpu_only:
                problems.append((("instance_types",), f"{', '.join(cpu_only)} have no GPU, and this pool is gpu: true "
                                 f"(allowed: {', '.join(instance_types.known_gpu_families())} types)"))
        else:
            with_gpu = sorted({t.family if t.family in self.instance_types else t.name for t in types if t.gpus})
            if with_gpu:
                problems.append((("instance_types",), f"{', '.join(with_gpu)} are GPU types, which need the GPU image "
                                 "(allowed: set gpu: true on this pool, or use CPU types)"))
        if problems:
            raise FieldProblems(problems)
        return self

    @property
    def architecture(self) -> instance_types.Architecture:
        return instance_types.expand(self.instance_types)[0].architecture

    @property
    def job_limits(self) -> dict[str, int]:
        """What one job can get on this pool's instances (instance_types.py says why memory is less)."""
        max_vcpus, max_mem = instance_types.job_limits(self.instance_types)
        max_gpus, gpu_mem = instance_types.gpu_limits(self.instance_types)
        limits = {"max_vcpus": max_vcpus, "max_memory_mib": max_mem, "scratch_gib": self.scratch.size_gib}
        if max_gpus:
            limits.update(max_gpus=max_gpus, gpu_memory_mib=gpu_mem)
        return limits

    def holds(self, vcpus: int, memory_mib: int, gpus: int = 0) -> bool:
        return instance_types.fits_any(self.instance_types, vcpus, memory_mib, gpus)

    @property
    def queue_max_vcpus(self) -> dict[str, int]:
        # The spot queue falls back to on-demand, so it can use both environments.
        return {"spot": self.spot_max_vcpus + self.on_demand_max_vcpus, "on-demand": self.on_demand_max_vcpus}


class Compute(Pool):
    """The lab's compute: `pools`, or (the legacy form, still valid) one pool's fields, which
    then make the one pool `default`."""

    # A job that no compute environment can ever place blocks its queue; Batch cancels it after
    # these waits in RUNNABLE instead (10 minutes is Batch's floor, 24 hours its ceiling).
    cancel_unplaceable_after_minutes: int = Field(30, ge=10, le=1440, json_schema_extra=_allowed("10-1,440"))
    cancel_no_capacity_after_minutes: int = Field(360, ge=10, le=1440, json_schema_extra=_allowed("10-1,440"))
    pools: dict[str, Pool] | None = Field(None, min_length=1, json_schema_extra=_allowed(
        "pool name -> instance_types, ami_id, scratch, on_demand_max_vcpus, spot_max_vcpus, "
        "spot_allocation_strategy, gpu; leave out for one pool `default` from the fields above"))

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, value: dict[str, Pool] | None) -> dict[str, Pool] | None:
        bad = [n for n in value or {} if not POOL_NAME_RE.match(n) or len(n) > MAX_POOL_NAME]
        if bad:
            raise ValueError(f"pool name(s) {', '.join(map(repr, bad))} cannot name a job queue (allowed: lowercase "
                             f"letters, digits and single hyphens, starting with a letter, at most {MAX_POOL_NAME})")
        return value

    @model_validator(mode="after")
    def _pools_or_one_pool(self) -> Compute:
        if self.pools is None:
            return self
        problems: list[tuple[FieldPath, str]] = [
            ((name,), "is a pool's field, and compute has pools (allowed: set it in each pool under compute.pools)")
            for name in POOL_FIELDS if name in self.model_fields_set]
        # One runner tree per lab (lab_constructs/runner_image.py) is built for one architecture.
        arches = {name: pool.architecture for name, pool in self.pools.items()}
        if len(set(arches.values())) > 1:
            problems.append((("pools",), "pools mix architectures (" + ", ".join(f"{n}: {a}" for n, a in arches.items())
                             + "); allowed: one architecture per lab, since every instance mounts the same runner"))
        if problems:
            raise FieldProblems(problems)
        return self

    @property
    def pool_map(self) -> dict[str, Pool]:
        """Every pool by name, in the lab file's order; the legacy block is the one pool `default`."""
        if self.pools is not None:
            return dict(self.pools)
        return {DEFAULT_POOL: Pool(**{name: getattr(self, name) for name in POOL_FIELDS})}

    @property
    def architecture(self) -> instance_types.Architecture:
        return next(iter(self.pool_map.values())).architecture


_PLACEHOLDER = re.compile(runner_env.PLACEHOLDER_TOKEN)
# A pipeline's recovery switches are the same model in the lab file and in the settings the
# status updater reads.
Recovery = RecoverySettings


class Pipeline(_Strict):
    image: str = Field(json_schema_extra=_allowed(
        f"'{DEMO_IMAGE}' (the image built from containers/) or a registry image reference"))
    description: str = Field("", max_length=256)
    command: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(min_length=1, max_length=64)
    vcpus: int = Field(1, ge=1, le=192, json_schema_extra=_allowed("1-192"))
    memory_mib: int = Field(2048, ge=128, le=1_572_864, json_schema_extra=_allowed("128-1,572,864 MiB"))
    timeout_minutes: int = Field(60, ge=1, le=14 * 24 * 60, json_schema_extra=_allowed("1-20,160 (14 days)"))
    attempts: int = Field(3, ge=BATCH_ATTEMPTS[0], le=BATCH_ATTEMPTS[1],
                          json_schema_extra=_allowed(f"{BATCH_ATTEMPTS[0]}-{BATCH_ATTEMPTS[1]} (AWS Batch retry attempts)"))
    disk_factor: float = Field(3.0, ge=1.0, le=100.0, json_schema_extra=_allowed(
        "1-100: scratch needed = inputs' size x disk_factor"))
    parameters: dict[str, str | None] = Field(default_factory=dict, json_schema_extra=_allowed(
        "name -> default string, or null when the caller must give it"))
    default_queue: Literal["spot", "on-demand"] = "spot"
    # The pool its jobs run on; left out, each job goes to the cheapest pool that holds it.
    pool: str | None = Field(None, json_schema_extra=_allowed("a pool of compute.pools (or default), or leave out"))
    gpus: int = Field(0, ge=0, le=MAX_GPUS, json_schema_extra=_allowed(
        f"0-{MAX_GPUS}: GPUs per job (its jobs then run on a gpu pool)"))
    recovery: Recovery = Recovery()
    # Files that must travel with an input or parameter (an index beside its FASTA, a .bai beside
    # its BAM), in CWL's secondaryFiles notation: labbatch_contract.references.
    secondary_files: dict[str, list[str]] = Field(default_factory=dict, json_schema_extra=_allowed(
        "inputs, shared_inputs or param:NAME -> companion patterns: .bai (appended), ^.bai (replacing the "
        "extension), .fai? (optional)"))

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value != DEMO_IMAGE and not IMAGE_RE.match(value):
            raise ValueError(f"{value!r} is not an image reference (allowed: '{DEMO_IMAGE}' or "
                             "[registry/]repository[:tag|@sha256:digest], lowercase)")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        bad = [k for k in value if not PARAMETER_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"parameter name(s) {', '.join(map(repr, bad))} not allowed "
                             "(allowed: a letter, then letters, digits or _; at most 64)")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters_passed(cls, value: dict[str, str | None], info: ValidationInfo) -> dict[str, str | None]:
        # The runner hands a tool its parameters only through `{param:NAME}` in the command, so a
        # parameter no argument names would take a caller's value and silently drop it.
        command = info.data.get("command")
        if command is None:  # the command is wrong itself, and reported as such
            return value
        passed = {match.group(2) for argument in command for match in _PLACEHOLDER.finditer(argument)
                  if match.group(1) == "param"}
        unused = [name for name in value if name not in passed]
        if unused:
            raise FieldProblems([
                ((name,), f"declared, but the command never passes it (no argument has {{param:{name}}}), so a "
                          f"caller's value would be silently ignored (allowed: pass it in command as "
                          f"{{param:{name}}}, or remove the parameter)")
                for name in unused])
        return value

    @property
    def shared_inputs(self) -> Literal["none", "optional", "required"]:
        """How the command uses an array request's shared inputs (the runner's placeholders).

        `{input}`/`{inputs}` are always a job's (or array child's) own inputs; shared inputs reach
        the tool only through `{shared_input}` (the first) or `{shared_inputs}` (all of them).
        """
        used = {match.group(1) for argument in self.command for match in _PLACEHOLDER.finditer(argument)}
        if "shared_input" in used:
            return "required"
        if "shared_inputs" in used:
            return "optional"
        return "none"

    @model_validator(mode="after")
    def _secondary_files(self) -> Pipeline:
        problems = []
        for key, patterns in self.secondary_files.items():
            where = f"secondary_files.{key}"
            name = key[len(references.PARAMETER_KEY_PREFIX):] if key.startswith(references.PARAMETER_KEY_PREFIX) else None
            if key not in (references.INPUTS_KEY, references.SHARED_INPUTS_KEY) and name is None:
                problems.append(f"{where}: not something that is staged (allowed: {references.INPUTS_KEY}, "
                                f"{references.SHARED_INPUTS_KEY} or {references.PARAMETER_KEY_PREFIX}NAME)")
                continue
            if name is not None and name not in self.parameters:
                known = ", ".join(sorted(self.parameters)) or "none"
                problems.append(f"{where}: the pipeline has no parameter {name!r} (its parameters: {known})")
            if not patterns or len(patterns) > references.MAX_PATTERNS:
                problems.append(f"{where}: give 1-{references.MAX_PATTERNS} patterns")
            for pattern in patterns:
                try:
                    references.parse_pattern(pattern)
                except references.PatternError as exc:
                    problems.append(f"{where}: {exc}")
            if len(set(patterns)) != len(patterns):
                problems.append(f"{where}: a pattern is listed twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("command")
    @classmethod
    def _list_placeholders_whole(cls, value: list[str]) -> list[str]:
        for position, argument in enumerate(value):
            for match in _PLACEHOLDER.finditer(argument):
                if match.group(1) in runner_env.LIST_PLACEHOLDERS and argument != match.group(0):
                    raise ValueError(f"argument {position} {argument!r}: {match.group(0)} stands for several "
                                     "arguments, so it must be a whole argument (allowed: "
                                     f"{match.group(0)} alone in its list item)")
        return value


class Network(_Strict):
    mode: Literal["public", "private-nat", "existing"] = "public"
    vpc_cidr: str = Field("10.64.0.0/16", pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])$",
                          json_schema_extra=_allowed("an IPv4 CIDR from /16 to /24"))
    max_azs: int = Field(2, ge=1, le=6, json_schema_extra=_allowed("1-6"))
    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", json_schema_extra=_allowed("vpc-xxxxxxxx"))
    subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(default_factory=list)
    availability_zones: list[str] = Field(default_factory=list, json_schema_extra=_allowed(
        "the zones of subnet_ids, in the same order (mode existing only)"))

    @model_validator(mode="after")
    def _existing_needs_ids(self) -> Network:
        given = bool(self.vpc_id or self.subnet_ids or self.availability_zones)
        if self.mode == "existing":
            missing = [f for f in ("vpc_id", "subnet_ids", "availability_zones") if not getattr(self, f)]
            if missing:
                raise ValueError(f"mode existing needs {', '.join(missing)} "
                                 "(LabBatch never looks a VPC up at synth)")
            if len(self.subnet_ids) != len(self.availability_zones):
                raise ValueError(f"{len(self.subnet_ids)} subnet_ids but {len(self.availability_zones)} "
                                 "availability_zones (allowed: one zone per subnet, same order)")
        elif given:
            raise ValueError(f"vpc_id, subnet_ids and availability_zones are for mode existing, not {self.mode}")
        return self


class Storage(_Strict):
    work_expiry_days: int = Field(14, ge=1, le=3650, json_schema_extra=_allowed("1-3,650"))
    noncurrent_version_expiry_days: int = Field(30, ge=1, le=3650, json_schema_extra=_allowed("1-3,650"))
    abort_incomplete_multipart_days: int = Field(7, ge=1, le=365, json_schema_extra=_allowed("1-365"))
    access_log_expiry_days: int = Field(365, ge=1, le=3650, json_schema_extra=_allowed("1-3,650"))


class Api(_Strict):
    principals: list[str] = Field(default_factory=list, json_schema_extra=_allowed(
        "IAM ARNs (arn:aws:iam::<account>:role/..., user/..., root); empty: the lab's own account"))
    throttle_rate_per_second: int = Field(20, ge=1, le=10_000, json_schema_extra=_allowed("1-10,000"))
    throttle_burst: int = Field(40, ge=1, le=5_000, json_schema_extra=_allowed("1-5,000"))

    @field_validator("principals")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not PRINCIPAL_RE.match(p)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} not an IAM principal ARN "
                             "(allowed: arn:aws:iam::<12 digits>:root|role/NAME|user/NAME)")
        return value


class Budget(_Strict):
    monthly_usd: float = Field(100.0, gt=0, le=10_000_000, json_schema_extra=_allowed("above 0"))
    # Alert when actual spend passes these shares of the budget, and when the forecast passes 100%.
    alert_at_percent: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=lambda: [80, 100], min_length=1, max_length=5,
        json_schema_extra=_allowed("1-5 percentages of monthly_usd, 1-1,000"))


class Alerts(_Strict):
    emails: list[str] = Field(default_factory=list, max_length=20, json_schema_extra=_allowed(
        "email addresses subscribed to the lab's alert topic (each must confirm once)"))
    failed_jobs: bool = Field(True, json_schema_extra=_allowed("true or false: a message per job that fails "
                                                               "after its retries"))

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if not EMAIL_RE.match(e)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} not an email address")
        return value


class Tes(_Strict):
    allowed_images: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=20, json_schema_extra=_allowed(
            "image reference prefixes (e.g. quay.io/biocontainers/, snakemake/snakemake:) a GA4GH TES task may run; "
            "empty: the lab's TES endpoint is off"))
    # Engines poll every task they run (Snakemake up to 10 a second per workflow) and abort the
    # workflow on a 429, so the TES routes are throttled apart from, and above, api.throttle_*.
    throttle_rate_per_second: int = Field(100, ge=1, le=10_000, json_schema_extra=_allowed("1-10,000"))
    throttle_burst: int = Field(200, ge=1, le=5_000, json_schema_extra=_allowed("1-5,000"))
    # A task is a job: a spot reclaim, an OOM kill or a failure to start is recovered as a pipeline's.
    recovery: Recovery = Recovery()


class LocalMode(_Strict):
    """How `labbatch local` runs this lab on one machine. Deployed stacks never read it."""

    images: dict[str, str] = Field(default_factory=dict, max_length=50, json_schema_extra=_allowed(
        "image a pipeline names -> the local image that stands in for it (e.g. "
        "quay.io/biocontainers/bwa:0.7.18--he4a0461_1: labbatch-bwa:local); local mode never pulls"))
    # Pipelines asking more vCPUs or memory than this machine gives a job are scaled down to it
    # (their defaults and local job definitions); the lab file's figures stay what AWS gets.
    fit_to_machine: bool = Field(False, json_schema_extra=_allowed("true or false"))

    @field_validator("images")
    @classmethod
    def _image_references(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{image!r}" for pair in value.items() for image in pair
               if image != DEMO_IMAGE and not IMAGE_RE.match(image)]
        if bad:
            raise ValueError(f"{', '.join(bad)} not an image reference (allowed: '{DEMO_IMAGE}' or "
                             "[registry/]repository[:tag|@sha256:digest], lowercase)")
        return value


def _local_images_in_use(value: LocalMode, info: ValidationInfo) -> LocalMode:
    """A stand-in for an image no pipeline names is a typo (or a pipeline's image changed since)."""
    # No data: validated on its own (the loader re-reads the sound fields of a file with errors),
    # and no pipelines: they are wrong themselves. Either way, that is the problem to report.
    pipelines = (info.data or {}).get("pipelines")
    if pipelines is None:
        return value
    used = {p.image for p in pipelines.values()}
    unused = [image for image in value.images if image not in used]
    if unused:
        raise ValueError(f"images key(s) {', '.join(map(repr, unused))}: no pipeline uses that image (allowed: "
                         f"the images of this lab's pipelines: {', '.join(sorted(used))})")
    return value


class Lab(_Strict):
    name: str = Field(json_schema_extra=_allowed(
        f"lowercase letters, digits and single hyphens, starting with a letter, at most {MAX_LAB_NAME}"))
    account: str | None = Field(None, json_schema_extra=_allowed("12 digits, or leave out"))
    region: str | None = Field(None, json_schema_extra=_allowed("a Region code such as eu-west-1, or leave out"))
    availability_zones: list[str] = Field(default_factory=list, json_schema_extra=_allowed(
        "zones of region (required when account and region are both given, so synth needs no lookup)"))
    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]] = \
        Field(default_factory=dict)
    network: Network = Network()
    storage: Storage = Storage()
    compute: Compute = Compute()
    pipelines: dict[str, Pipeline] = Field(min_length=1)
    api: Api = Api()
    log_retention_days: int = Field(30, json_schema_extra=_allowed(", ".join(map(str, LOG_RETENTION_DAYS))))
    budget: Budget = Budget()
    alerts: Alerts = Alerts()
    # A CloudWatch dashboard costs $3/month, so it is opt-in.
    dashboard: bool = Field(False, json_schema_extra=_allowed("true or false ($3/month when true)"))
    # The compliance tier for regulated data. `managed` (SSE-S3, AWS-owned and AWS managed keys)
    # costs nothing while idle; `kms` gives the lab one customer-managed key ($1/month) that
    # encrypts every store, log group, topic, queue, Lambda environment and EBS volume.
    encryption: Literal["managed", "kms"] = Field("managed", json_schema_extra=_allowed(
        "managed (SSE-S3 and AWS managed keys, no fixed cost) or kms (one customer-managed key, $1/month)"))
    # A CloudTrail trail of the data events on the lab's buckets and ledger (who read what).
    audit: bool = Field(False, json_schema_extra=_allowed(
        "true or false: a CloudTrail data-event trail of the lab's buckets and ledger (needs encryption: kms)"))
    # The lab's GA4GH TES 1.1 endpoint (/ga4gh/tes/v1 on the job API) for workflow engines.
    tes: Tes = Tes()
    # Local mode only (`labbatch local`): local images standing in for the pipelines' own, and
    # pipelines scaled to this machine. After `pipelines`, which its check reads.
    local: Annotated[LocalMode, AfterValidator(_local_images_in_use)] = LocalMode()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LAB_NAME_RE.match(value) or len(value) > MAX_LAB_NAME:
            raise ValueError(
                f"{value!r} cannot name AWS resources (allowed: lowercase letters, digits and single "
                f"hyphens, starting with a letter, at most {MAX_LAB_NAME} characters so that bucket names "
                f"stay within {names.MAX_BUCKET_NAME})")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT_RE.match(value):
            raise ValueError(f"{value!r} is not an AWS account id (allowed: 12 digits, quoted in YAML)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION_RE.match(value):
            raise ValueError(f"{value!r} is not a Region code (allowed: e.g. us-east-1, eu-west-2)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [f"tag {k!r}: keys starting with {k[:k.index(':') + 1]!r} are reserved (allowed: any other prefix)"
                    for k in value if k.lower().startswith(RESERVED_TAG_PREFIXES)]
        if len(value) > MAX_TAGS:
            problems.append(f"{len(value)} tags (allowed: at most {MAX_TAGS}; AWS allows 50 and LabBatch adds one)")
        problems += [f"tag {k!r}: characters outside letters, digits, spaces and _ . : / = + - @"
                     for k, v in value.items() if not TAG_RE.match(k) or not TAG_RE.match(v)]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value} is not a CloudWatch Logs retention (allowed: {', '.join(map(str, LOG_RETENTION_DAYS))})")
        return value

    @field_validator("pipelines")
    @classmethod
    def _pipeline_names(cls, value: dict[str, Pipeline]) -> dict[str, Pipeline]:
        bad = [n for n in value if not PIPELINE_NAME_RE.match(n) or len(n) > MAX_PIPELINE_NAME]
        if bad:
            raise ValueError(f"pipeline name(s) {', '.join(map(repr, bad))} cannot name a job definition "
                             f"(allowed: lowercase letters, digits and single hyphens, at most {MAX_PIPELINE_NAME})")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Lab:
        problems = cross_field_problems(dict(self))
        if problems:
            raise FieldProblems(problems)
        return self

    # Derived facts: everyone (constructs, API settings, local mode) reads these, never recomputes them.

    @property
    def pools(self) -> dict[str, Pool]:
        return self.compute.pool_map

    def pools_for(self, pipeline: Pipeline) -> dict[str, Pool]:
        """The pools a pipeline's jobs may be placed on: its named pool, or every pool."""
        return pools_for(self.pools, pipeline)


def pools_for(pools: dict[str, Pool], pipeline: Pipeline) -> dict[str, Pool]:
    if pipeline.pool is not None:
        return {pipeline.pool: pools[pipeline.pool]} if pipeline.pool in pools else {}
    return dict(pools)


def cross_field_problems(fields: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
    """The rules that span Lab's fields, each problem with the path of the field at fault.

    `fields` maps Lab's field names to validated values and may lack some: a rule runs when every
    field it reads is there. `Lab` runs them on a whole valid lab; the loader, on the fields (and
    the single pipelines) that validated in a file that is wrong elsewhere, so that one pass
    reports every problem.
    """
    problems: list[tuple[FieldPath, str]] = []

    def have(*names: str) -> bool:
        return all(name in fields for name in names)

    if have("account", "region", "availability_zones", "network") and fields["account"] and fields["region"] \
            and not fields["availability_zones"] and fields["network"].mode != "existing":
        problems.append((("availability_zones",), "account and region are given, so availability_zones must list "
                         "the zones to use (CDK would otherwise look them up at synth, which needs credentials)"))
    if have("audit", "encryption") and fields["audit"] and fields["encryption"] != "kms":
        # The trail records who read regulated data; its log files are encrypted with the
        # lab's own key, which only `encryption: kms` creates.
        problems.append((("audit",), "true needs encryption: kms (allowed: audit false, or encryption kms)"))
    if have("availability_zones", "region") and fields["availability_zones"]:
        region = fields["region"]
        if not region:
            problems.append((("availability_zones",), "given without region (allowed: set region, or leave "
                             "availability_zones out)"))
        else:
            wrong_zone = [z for z in fields["availability_zones"] if not re.fullmatch(rf"{re.escape(region)}[a-z]", z)]
            if wrong_zone:
                problems.append((("availability_zones",), f"{', '.join(wrong_zone)} are not zones of {region} "
                                 f"(allowed: {region} followed by a letter, such as {region}a)"))
    if have("compute", "pipelines"):
        problems += _pipeline_pool_problems(fields["compute"].pool_map, fields["pipelines"])
    return problems


def _pipeline_pool_problems(pools: dict[str, Pool], pipelines: Mapping[str, Pipeline]) -> list[tuple[FieldPath, str]]:
    """Each pipeline's defaults must fit a pool it may be placed on: its named one, or any."""
    problems: list[tuple[FieldPath, str]] = []
    for pname, p in pipelines.items():
        if p.pool is not None and p.pool not in pools:
            problems.append((("pipelines", pname, "pool"), f"{p.pool!r} is not a pool of this lab "
                             f"(allowed: {', '.join(pools)})"))
            continue
        candidates = pools_for(pools, p)
        if p.gpus and not any(pool.gpu for pool in candidates.values()):
            where = f"pool {p.pool!r} has no GPUs" if p.pool else "the lab has no gpu: true pool"
            problems.append((("pipelines", pname, "gpus"), f"{p.gpus} GPUs asked, but {where} (allowed: 0, or "
                             "a pool with gpu: true)"))
            continue
        if not any(pool.holds(p.vcpus, p.memory_mib, p.gpus) for pool in candidates.values()):
            shapes = "; ".join(_pool_shape(name, pool) for name, pool in candidates.items())
            gpu_part = f", {p.gpus} GPUs" if p.gpus else ""
            max_vcpus = max(pool.job_limits["max_vcpus"] for pool in candidates.values())
            max_gpus = max(pool.job_limits.get("max_gpus", 0) for pool in candidates.values())
            at_fault = "vcpus" if p.vcpus > max_vcpus else "gpus" if p.gpus > max_gpus else "memory_mib"
            problems.append((
                ("pipelines", pname, at_fault),
                f"{p.vcpus} vCPUs and {p.memory_mib:,} MiB{gpu_part} fit no configured instance type "
                f"(allowed: at most, on one instance: {shapes}; memory being 95% of nominal since ECS registers "
                "less; add a bigger type or ask for less)"))
            continue
        queue_max = max(pool.queue_max_vcpus[p.default_queue] for pool in candidates.values()
                        if pool.holds(p.vcpus, p.memory_mib, p.gpus))
        if p.vcpus > queue_max:
            problems.append((("pipelines", pname, "vcpus"),
                             f"{p.vcpus} vCPUs exceed the {p.default_queue} queue's {queue_max} max vCPUs "
                             f"(allowed: at most {queue_max})"))
    return problems


def _pool_shape(name: str, pool: Pool) -> str:
    limits = pool.job_limits
    gpus = f", {limits['max_gpus']} GPUs" if limits.get("max_gpus") else ""
    where = f"pool {name}: " if name != DEFAULT_POOL else ""
    return (f"{where}{limits['max_vcpus']} vCPUs and {limits['max_memory_mib']:,} MiB{gpus} on one of "
            f"{', '.join(pool.instance_types)}")
