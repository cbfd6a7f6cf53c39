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

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

# The compute model lives in its own module; its names stay importable from here.
from labbatch.lab.compute_config import (AMI_RE, BATCH_MAX_VCPUS, DEFAULT_POOL, GP3_IOPS, GP3_IOPS_PER_GIB,  # noqa: F401
                                     GP3_SIZE_GIB, GP3_THROUGHPUT_MIBPS, GP3_THROUGHPUT_PER_IOPS, MAX_GPUS,
                                     MAX_POOL_NAME, POOL_FIELDS, POOL_NAME_RE, Compute, Pool, ScratchVolume,
                                     pipeline_pool_problems, pools_for)
from labbatch.lab.config_base import FieldPath, FieldProblems  # noqa: F401
from labbatch.lab.config_base import Strict as _Strict
from labbatch.lab.config_base import allowed as _allowed
from labbatch_contract import names, references, runner_env
from labbatch_contract.settings import RecoverySettings

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)

BATCH_ATTEMPTS = (1, 10)

# `\Z`, not `$` (which also matches before a trailing newline, so "lab\n" would pass), and
# re.ASCII where AWS allows ASCII only (in Python, \d and \w match any script's digits and letters).
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
PIPELINE_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
PARAMETER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")
ACCOUNT_RE = re.compile(r"^\d{12}\Z", re.ASCII)
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d\Z", re.ASCII)
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
        problems += pipeline_pool_problems(fields["compute"].pool_map, fields["pipelines"])
    return problems
