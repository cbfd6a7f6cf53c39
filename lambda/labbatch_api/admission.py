"""Can this job run here? Every check a submission passes before anything is written.

A refusal is an ApiError naming the field as the caller wrote it (`samples[3].inputs[0]`),
what was asked, what the lab allows and what to change. Nothing here writes anything.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from labbatch_api.errors import refused
from labbatch_contract import placement
from labbatch_contract.settings import DEFAULT_POOL, LabSettings, PipelineSettings, PoolSettings
from labbatch_api.input_objects import HEAD_THREADS, S3Object, list_prefix, object_sizes, parse_lab_prefix, parse_lab_uri, probe_sizes
from labbatch_contract import references
from labbatch_api.job_models import SubmitJobRequest

GIB = 1024**3
# Every distinct object is HEADed inside the API call, 32 at a time; this keeps the worst
# case within API Gateway's 29 s timeout. Bigger runs: split into several submissions.
MAX_DISTINCT_OBJECTS = 20_000
# Objects one folder may hold (a STAR index has about 20, a kallisto or salmon index about 30);
# the same bound as a TES DIRECTORY input's.
MAX_FOLDER_OBJECTS = 10_000
S3_URI_PREFIX = "s3://"


@dataclass(frozen=True)
class ResolvedSample:
    name: str
    # The sample's own inputs only: what its {input}/{inputs} name. The request's shared inputs
    # travel once, in the job's environment, and reach the tool as {shared_input(s)}.
    inputs: list[str]
    parameters: dict[str, str]  # complete: defaults < job parameters < sample parameters

    def as_json(self) -> dict:
        return {"name": self.name, "inputs": self.inputs, "parameters": self.parameters}


@dataclass(frozen=True)
class AdmittedJob:
    pipeline_name: str
    pipeline: PipelineSettings
    queue: str
    job_queue: str
    pool: str  # the instance pool it was placed on (labbatch_contract.placement)
    vcpus: int
    memory_mib: int
    gpus: int
    name: str | None
    inputs: list[str]  # the job's own inputs ({input}/{inputs}); empty for an array job
    shared_inputs: list[str]  # with samples: the request's top-level inputs ({shared_input(s)})
    parameters: dict[str, str]
    # Two or more samples: an array job, one child per sample.
    array_samples: list[ResolvedSample] | None
    # Exactly one sample: a plain job whose outputs go under <output_prefix><sample name>/,
    # where an array child of the same sample would put them.
    single_sample: str | None
    input_bytes: int  # the largest any one Batch job (or array child) stages
    scratch_needed_bytes: int


def admit(request: SubmitJobRequest, settings: LabSettings, s3_client) -> AdmittedJob:
    pipeline = _known_pipeline(request, settings)
    if request.queue is None:
        request = request.model_copy(update={"queue": pipeline.default_queue})
    vcpus, memory_mib, gpus = _resources(request, pipeline, settings)
    _declared_parameters(request.parameters, pipeline, request.pipeline, "parameters")
    defaults = {name: value for name, value in pipeline.parameters.items() if value is not None}
    job_parameters = {**defaults, **request.parameters}

    samples = request.samples or []
    if not samples and not request.inputs:
        raise refused("missing_inputs", "inputs: a job without samples needs at least one input", field="inputs")
    _unique_sample_names(request)
    _shared_inputs_meaningful(request, pipeline)

    # Each unit is what one Batch job (or array child) stages: its field and what it names.
    units: list[tuple[str, list[Staged]]] = []
    companions = pipeline.secondary_files
    # With samples, top-level inputs are shared by every child: reference data, like parameters.
    top = _named(request.inputs, "inputs", reference=bool(samples),
                 patterns=companions.get(references.SHARED_INPUTS_KEY if samples else references.INPUTS_KEY, []))
    resolved: list[ResolvedSample] = []
    if not samples:
        _required_parameters(job_parameters, pipeline, request.pipeline, "parameters")
        units.append(("inputs", top + _s3_parameter_values(job_parameters, {}, "", companions)))
    for index, sample in enumerate(samples):
        prefix = f"samples[{index}]"
        _declared_parameters(sample.parameters, pipeline, request.pipeline, f"{prefix}.parameters")
        merged = {**job_parameters, **sample.parameters}
        _required_parameters(merged, pipeline, request.pipeline, f"{prefix}.parameters")
        own = _named(sample.inputs, f"{prefix}.inputs", reference=False,
                     patterns=companions.get(references.INPUTS_KEY, []))
        units.append((prefix, top + own + _s3_parameter_values(merged, sample.parameters, prefix, companions)))
        resolved.append(ResolvedSample(sample.name, list(sample.inputs), merged))

    sizes = _sizes(units, settings, s3_client, request.pipeline)
    input_bytes, scratch_needed, worst = _largest_scratch_need(units, sizes, pipeline)
    need = placement.Need(vcpus, memory_mib, gpus, request.queue, scratch_needed / GIB)
    placed = placement.place(placement.candidates(settings.pool_map(), request.pool or pipeline.pool), need)
    if isinstance(placed, placement.Unplaceable):
        if placed.limit != placement.SCRATCH:  # cannot happen: _resources placed it without scratch
            raise AssertionError(f"placement changed its mind about {placed.limit}")
        _scratch_refused(scratch_needed, input_bytes, worst, pipeline, placed)
    pool_name, pool = placed

    single = resolved[0] if len(resolved) == 1 else None
    return AdmittedJob(
        pipeline_name=request.pipeline,
        pipeline=pipeline,
        queue=request.queue,
        job_queue=pool.queues[request.queue],
        pool=pool_name,
        vcpus=vcpus,
        memory_mib=memory_mib,
        gpus=gpus,
        name=request.name,
        inputs=single.inputs if single else ([] if samples else list(request.inputs)),
        shared_inputs=list(request.inputs) if samples else [],
        parameters=single.parameters if single else job_parameters,
        array_samples=resolved if len(resolved) >= 2 else None,
        single_sample=single.name if single else None,
        input_bytes=input_bytes,
        scratch_needed_bytes=scratch_needed,
    )


def _shared_inputs_meaningful(request: SubmitJobRequest, pipeline: PipelineSettings) -> None:
    """Refuse a request whose inputs the pipeline would not use the way the caller means them.

    With samples, top-level inputs are shared by every sample and reach the tool only through
    {shared_input}/{shared_inputs}; each sample's {input} is always its own. Staging shared
    inputs that the command never names (or running a command that needs them without any)
    would give plausible results for the wrong data, so neither is accepted.
    """
    name = request.pipeline
    if request.samples and request.inputs and pipeline.shared_inputs == "none":
        raise refused(
            "shared_inputs_unused",
            f"inputs: with samples, top-level inputs are shared by every sample, and pipeline {name!r} "
            "does not use shared inputs (its command has no {shared_input} or {shared_inputs}); each "
            "sample's {input} is its own. Put the inputs into each sample, or pass a shared file as a "
            "parameter if the pipeline has one.",
            field="inputs",
            pipeline=name,
        )
    if pipeline.shared_inputs == "required" and not (request.samples and request.inputs):
        what = "samples and top-level inputs" if not request.samples else "top-level inputs"
        raise refused(
            "shared_inputs_missing",
            f"inputs: pipeline {name!r} runs each sample against a shared input ({{shared_input}} in its "
            f"command); send {what}: the shared file(s) in inputs and each sample's own in samples[].inputs.",
            field="inputs",
            pipeline=name,
        )


def _known_pipeline(request: SubmitJobRequest, settings: LabSettings) -> PipelineSettings:
    pipeline = settings.pipelines.get(request.pipeline)
    if pipeline is None:
        known = sorted(settings.pipelines)
        raise refused(
            "unknown_pipeline",
            f"pipeline: {request.pipeline!r} is not a pipeline of lab {settings.lab}; known: {', '.join(known)}",
            field="pipeline",
            allowed=known,
        )
    return pipeline


def _resources(request: SubmitJobRequest, pipeline: PipelineSettings, settings: LabSettings) -> tuple[int, int, int]:
    vcpus = request.vcpus if request.vcpus is not None else pipeline.vcpus
    memory_mib = request.memory_mib if request.memory_mib is not None else pipeline.memory_mib
    gpus = request.gpus if request.gpus is not None else pipeline.gpus
    if gpus < pipeline.gpus:
        raise refused("gpus_too_few", f"gpus: pipeline {request.pipeline} needs {pipeline.gpus} (the lab file says "
                      f"so); ask for {pipeline.gpus} or more, or leave gpus out", field="gpus", asked=gpus,
                      minimum=pipeline.gpus)
    default = f" (the {request.pipeline} default)"
    _pool_allowed(request, pipeline, settings)
    # Placed once without scratch, before any S3 call: a job no pool can hold is refused at once.
    place_job(vcpus, memory_mib, request.queue, settings, gpus=gpus, pool=request.pool or pipeline.pool,
              vcpus_origin="" if request.vcpus is not None else default,
              memory_origin="" if request.memory_mib is not None else default,
              gpus_origin="" if request.gpus is not None else f" (pipeline {request.pipeline})")
    return vcpus, memory_mib, gpus


def _pool_allowed(request: SubmitJobRequest, pipeline: PipelineSettings, settings: LabSettings) -> None:
    if request.pool is None:
        return
    pools = sorted(settings.pool_map())
    if request.pool not in pools:
        raise refused("unknown_pool", f"pool: lab {settings.lab} has no pool {request.pool!r}; its pools: "
                      f"{', '.join(pools)}", field="pool", allowed=pools)
    if pipeline.pool is not None and request.pool != pipeline.pool:
        raise refused("pool_not_allowed", f"pool: pipeline {request.pipeline} runs only on pool {pipeline.pool!r} "
                      "(the lab file names it); leave pool out", field="pool", allowed=[pipeline.pool])


def place_job(vcpus: int, memory_mib: int, queue: str, settings: LabSettings, *, gpus: int = 0,
              pool: str | None = None, scratch_bytes: int = 0, vcpus_field: str = "vcpus",
              memory_field: str = "memory_mib", vcpus_origin: str = "", memory_origin: str = "",
              gpus_origin: str = "", scratch_field: str = "inputs") -> tuple[str, PoolSettings]:
    """The pool any job goes to (POST /jobs, array jobs, and TES tasks, which name their own
    fields), or a refusal with the limit, whose limit it is, and what to ask for instead."""
    pools = settings.pool_map()
    need = placement.Need(vcpus, memory_mib, gpus, queue, scratch_bytes / GIB)
    placed = placement.place(placement.candidates(pools, pool), need)
    if not isinstance(placed, placement.Unplaceable):
        return placed
    limit, name, closest = placed.limit, placed.pool, placed.settings
    limits = closest.limits
    # A one-pool lab speaks of "this lab's instances", as it always did; with pools, of the pool's.
    instances = "this lab's instances" if len(pools) == 1 else f"pool {name}'s instances"
    details = {"pool": name} if len(pools) > 1 else {}
    if limit == placement.GPUS:
        if limits.lab_max_gpus:
            message = (f"gpus: {gpus}{gpus_origin} cannot run here: this machine has no GPU (its container engine "
                       "gives none: no nvidia runtime in Docker, no nvidia.com/gpu CDI spec for Podman; the lab's pool "
                       f"{name} gives {limits.lab_max_gpus} GPU{'s' if limits.lab_max_gpus > 1 else ''} in AWS)")
        elif not any(p.limits.max_gpus for p in pools.values()):
            message = f"gpus: {gpus}{gpus_origin} asked, but no pool of lab {settings.lab} has GPUs"
        else:
            message = (f"gpus: {gpus}{gpus_origin} is more than a job can get on {instances} ({limits.max_gpus}); "
                       f"ask for {limits.max_gpus} or fewer")
        raise refused("gpus_too_many", message, field="gpus", asked=gpus, available=limits.max_gpus, **details)
    if limit == placement.VCPUS:
        where = (f"this local machine ({limits.max_vcpus}; the lab's instances give {limits.lab_max_vcpus})"
                 if limits.lab_max_vcpus else f"{instances} ({limits.max_vcpus})")
        raise refused(
            "vcpus_too_many",
            f"{vcpus_field}: {vcpus}{vcpus_origin} is more than a job can get on {where}; "
            f"ask for {limits.max_vcpus} or fewer",
            field=vcpus_field, asked=vcpus, available=limits.max_vcpus, **details)
    if limit == placement.MEMORY:
        where = (f"this local machine can give a job ({limits.max_memory_mib} MiB; the lab's instances give "
                 f"{limits.lab_max_memory_mib} MiB)" if limits.lab_max_memory_mib else
                 f"ECS can give a job on {instances} ({limits.max_memory_mib} MiB, after the agent's "
                 "reserved memory)")
        raise refused(
            "memory_too_large",
            f"{memory_field}: {memory_mib}{memory_origin} is more than {where}; ask for {limits.max_memory_mib} or less",
            field=memory_field, asked=memory_mib, available=limits.max_memory_mib, **details)
    if limit == placement.QUEUE:
        whose = f"lab {settings.lab}" if len(pools) == 1 else f"pool {name} of lab {settings.lab}"
        raise refused(
            "unknown_queue",
            f"queue: {whose} has no {queue!r} queue; use one of {', '.join(sorted(closest.queues))}",
            field="queue", allowed=sorted(closest.queues), **details)
    if limit == placement.QUEUE_VCPUS:
        queue_max = closest.queue_max_vcpus.get(queue, 0)
        whose = f"the whole {queue} queue" if len(pools) == 1 else f"pool {name}'s whole {queue} queue"
        raise refused(
            "vcpus_too_many",
            f"{vcpus_field}: {vcpus}{vcpus_origin} is more than {whose} may run ({queue_max}); "
            f"ask for {queue_max} or fewer, or use another queue",
            field=vcpus_field, asked=vcpus, available=queue_max, **details)
    if limit == placement.SHAPE:
        gpu_part = f" and {gpus} GPUs" if gpus else ""
        raise refused(
            "no_instance_holds",
            f"{memory_field}: {vcpus} vCPUs and {memory_mib} MiB{gpu_part} together fit no single instance type of "
            f"pool {name} (each of its types is smaller in one of them); ask for fewer vCPUs or less memory",
            field=memory_field, asked={"vcpus": vcpus, "memory_mib": memory_mib, "gpus": gpus}, **details)
    raise refused(
        "scratch_too_small",
        f"{scratch_field}: this job needs about {scratch_bytes / GIB:.1f} GiB of scratch, more than {instances} "
        f"have ({closest.scratch_gib} GiB)",
        field=scratch_field, needed_gib=round(scratch_bytes / GIB, 2), available_gib=closest.scratch_gib, **details)


def _declared_parameters(given: dict[str, str], pipeline: PipelineSettings, name: str, field: str) -> None:
    for key in given:
        if key not in pipeline.parameters:
            allowed = sorted(pipeline.parameters)
            raise refused(
                "unknown_parameter",
                f"{field}.{key}: pipeline {name} takes no parameter {key!r}"
                + (f"; it takes {', '.join(allowed)}" if allowed else "; it takes none"),
                field=f"{field}.{key}",
                allowed=allowed,
            )


def _required_parameters(resolved: dict[str, str], pipeline: PipelineSettings, name: str, field: str) -> None:
    for key, default in pipeline.parameters.items():
        if default is None and key not in resolved:
            raise refused(
                "missing_parameter",
                f"{field}.{key}: pipeline {name} requires parameter {key!r}",
                field=f"{field}.{key}",
            )


def _unique_sample_names(request: SubmitJobRequest) -> None:
    first_seen: dict[str, int] = {}
    for index, sample in enumerate(request.samples or []):
        if sample.name in first_seen:
            raise refused(
                "duplicate_sample_name",
                f"samples[{index}].name: {sample.name!r} is already the name of samples[{first_seen[sample.name]}]; "
                "each sample writes under its own name, so names must be unique",
                field=f"samples[{index}].name",
            )
        first_seen[sample.name] = index


@dataclass(frozen=True)
class Staged:
    """One value a job stages: a file or a folder (`s3://bucket/prefix/`), or a companion of a file."""

    field: str  # where the caller wrote it
    uri: str
    # A parameter's or shared input's data: kept in each instance's reference cache, so it is
    # counted once against scratch, not times the disk factor (which is for a job's own inputs).
    reference: bool
    pattern: str | None = None  # the companion pattern that named it, for a companion
    required: bool = True


def _with_companions(field: str, uri: str, reference: bool, patterns: list[str]) -> list[Staged]:
    staged = [Staged(field, uri, reference)]
    if not patterns:
        return staged
    if references.is_folder_uri(uri):
        raise refused("secondary_files_on_folder", f"{field}: {uri!r} is a folder, and the pipeline's "
                      f"secondary_files name companions of a file here ({', '.join(patterns)}); name the main "
                      "file instead", field=field, uri=uri)
    bucket, _, key = uri[len(S3_URI_PREFIX):].partition("/")
    for text in patterns:
        pattern = references.parse_pattern(text)
        companion = f"s3://{bucket}/{references.companion_key(key, pattern)}"
        if companion != uri:
            staged.append(Staged(field, companion, reference, pattern.text, pattern.required))
    return staged


def _named(uris: list[str], field: str, *, reference: bool, patterns: list[str]) -> list[Staged]:
    return [item for i, uri in enumerate(uris) for item in _with_companions(f"{field}[{i}]", uri, reference, patterns)]


def _s3_parameter_values(merged: dict[str, str], sample_given: dict[str, str], sample_field: str,
                         companions: dict[str, list[str]]) -> list[Staged]:
    """Parameters whose value is an s3:// URI are inputs too (the runner stages them),
    named by where the value came from: the sample, or the job (or its default)."""
    return [
        item
        for key, value in merged.items()
        if value.startswith(S3_URI_PREFIX)
        for item in _with_companions(f"{sample_field}.parameters.{key}" if key in sample_given else f"parameters.{key}",
                                     value, True, companions.get(references.parameter_key(key), []))
    ]


def _sizes(units: list[tuple[str, list[Staged]]], settings: LabSettings, s3_client,
           pipeline_name: str) -> dict[str, list[tuple[S3Object, int]]]:
    """Every staged value's objects and their sizes: a file is one object, a folder every object
    under it, a missing optional companion none. Refuses the first value that cannot be staged."""
    allowed = (settings.buckets.inputs, settings.buckets.references)
    files: dict[S3Object, str] = {}
    companions: dict[S3Object, Staged] = {}
    folders: dict[str, tuple[S3Object, str]] = {}
    for _, staged in units:
        for item in staged:
            if references.is_folder_uri(item.uri):
                if item.uri not in folders:
                    folders[item.uri] = (parse_lab_prefix(item.uri, item.field, allowed), item.field)
            elif item.pattern is None:
                files.setdefault(parse_lab_uri(item.uri, item.field, allowed), item.field)
            else:
                obj = parse_lab_uri(item.uri, item.field, allowed)
                if obj not in companions or (item.required and not companions[obj].required):
                    companions[obj] = item  # required if any pattern that names it requires it
            _within_object_limit(len(files) + len(companions) + len(folders), item.field)
    counted = len(files) + len(companions)
    sizes: dict[str, list[tuple[S3Object, int]]] = {}
    # Listed side by side, as HEADs are: hundreds of per-sample folders must fit API Gateway's 29 s.
    with ThreadPoolExecutor(max_workers=max(1, min(HEAD_THREADS, len(folders)))) as pool:
        listings = pool.map(lambda spec: list_prefix(s3_client, spec[0], spec[1], most=MAX_FOLDER_OBJECTS),
                            folders.values())
        for (uri, (_, field)), found in zip(folders.items(), listings):
            counted += len(found)
            _within_object_limit(counted, field)
            sizes[uri] = [(obj, size) for _, obj, size in found]
    sizes.update((obj.uri, [(obj, size)]) for obj, size in object_sizes(s3_client, files).items())
    probed = probe_sizes(s3_client, {obj: item.field for obj, item in companions.items()})
    for obj, item in companions.items():
        size = probed[obj]
        if size is None and item.required:
            raise refused(
                "companion_missing",
                f"{item.field}: {obj.uri} does not exist; pipeline {pipeline_name} needs it beside {item.field}'s "
                f"file (secondary file {item.pattern!r}). Upload it there, or leave out the value.",
                field=item.field, uri=obj.uri, pattern=item.pattern)
        sizes[obj.uri] = [] if size is None else [(obj, size)]
    return sizes


def _within_object_limit(count: int, field: str) -> None:
    if count > MAX_DISTINCT_OBJECTS:
        raise refused(
            "too_many_inputs",
            f"{field}: a submission may name at most {MAX_DISTINCT_OBJECTS:,} distinct objects (a folder's objects "
            "and companions count); split the samples over several submissions",
            field=field,
            limit=MAX_DISTINCT_OBJECTS,
        )


def _largest_scratch_need(units: list[tuple[str, list[Staged]]], sizes: dict[str, list[tuple[S3Object, int]]],
                          pipeline: PipelineSettings) -> tuple[int, int, ScratchUse]:
    worst = ScratchUse("inputs", 0, 0)
    worst_needed = 0
    for unit_field, staged in units:
        own: dict[S3Object, int] = {}
        shared: dict[S3Object, int] = {}
        for item in staged:
            (shared if item.reference else own).update(sizes[item.uri])
        for obj in own.keys() & shared.keys():
            del shared[obj]  # the job downloads it as its own input anyway
        use = ScratchUse(unit_field, sum(own.values()), sum(shared.values()))
        needed = math.ceil(use.own_bytes * pipeline.disk_factor) + use.reference_bytes
        if needed > worst_needed or worst_needed == 0:
            worst, worst_needed = use, needed
    return worst.own_bytes + worst.reference_bytes, worst_needed, worst


@dataclass(frozen=True)
class ScratchUse:
    field: str
    own_bytes: int
    reference_bytes: int


def _scratch_refused(needed: int, input_bytes: int, use: ScratchUse, pipeline: PipelineSettings,
                     placed: placement.Unplaceable) -> None:
    scratch_gib = placed.settings.scratch_gib
    volume = "the lab's scratch volume" if placed.pool == DEFAULT_POOL else f"pool {placed.pool}'s scratch volume"
    field = use.field
    where = "its inputs" if field == "inputs" else f"{field}'s inputs"
    references_part = (f" + {use.reference_bytes / GIB:.1f} GiB of reference data (parameters and shared inputs, "
                       "kept once per instance)") if use.reference_bytes else ""
    raise refused(
        "scratch_too_small",
        f"{field}: this job needs about {needed / GIB:.1f} GiB of scratch ({where}: {use.own_bytes / GIB:.1f} GiB "
        f"x disk factor {pipeline.disk_factor:g}{references_part}) but {volume} has "
        f"{scratch_gib} GiB. "
        "Split the inputs over samples (each array child has its own scratch) or ask for a larger scratch volume.",
        field=field,
        needed_gib=round(needed / GIB, 2),
        available_gib=scratch_gib,
        input_gib=round(input_bytes / GIB, 2),
        reference_gib=round(use.reference_bytes / GIB, 2),
        disk_factor=pipeline.disk_factor,
    )
