"""Can this job run here? Every check a submission passes before anything is written.

A refusal is an ApiError naming the field as the caller wrote it (`samples[3].inputs[0]`),
what was asked, what the lab allows and what to change. Nothing here writes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from api_errors import refused
from labbatch_contract.settings import LabSettings, PipelineSettings
from input_objects import S3Object, object_sizes, parse_lab_uri
from job_models import SubmitJobRequest

GIB = 1024**3
# Every distinct object is HEADed inside the API call, 32 at a time; this keeps the worst
# case within API Gateway's 29 s timeout. Bigger runs: split into several submissions.
MAX_DISTINCT_OBJECTS = 20_000
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
    vcpus: int
    memory_mib: int
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
    job_queue = _configured_queue(request, settings)
    vcpus, memory_mib = _resources(request, pipeline, settings)
    _declared_parameters(request.parameters, pipeline, request.pipeline, "parameters")
    defaults = {name: value for name, value in pipeline.parameters.items() if value is not None}
    job_parameters = {**defaults, **request.parameters}

    samples = request.samples or []
    if not samples and not request.inputs:
        raise refused("missing_inputs", "inputs: a job without samples needs at least one input", field="inputs")
    _unique_sample_names(request)
    _shared_inputs_meaningful(request, pipeline)

    # Each unit is what one Batch job (or array child) stages: its field and (field, uri) pairs.
    units: list[tuple[str, list[tuple[str, str]]]] = []
    shared = [(f"inputs[{i}]", uri) for i, uri in enumerate(request.inputs)]
    resolved: list[ResolvedSample] = []
    if not samples:
        _required_parameters(job_parameters, pipeline, request.pipeline, "parameters")
        units.append(("inputs", shared + _s3_parameter_values(job_parameters, {}, "")))
    for index, sample in enumerate(samples):
        prefix = f"samples[{index}]"
        _declared_parameters(sample.parameters, pipeline, request.pipeline, f"{prefix}.parameters")
        merged = {**job_parameters, **sample.parameters}
        _required_parameters(merged, pipeline, request.pipeline, f"{prefix}.parameters")
        own = [(f"{prefix}.inputs[{i}]", uri) for i, uri in enumerate(sample.inputs)]
        units.append((prefix, shared + own + _s3_parameter_values(merged, sample.parameters, prefix)))
        resolved.append(ResolvedSample(sample.name, list(sample.inputs), merged))

    objects = _lab_objects(units, settings)
    sizes = object_sizes(s3_client, objects)
    input_bytes, scratch_needed, worst_field = _largest_scratch_need(units, sizes, settings, pipeline)
    _scratch_fits(scratch_needed, input_bytes, worst_field, pipeline, settings)

    single = resolved[0] if len(resolved) == 1 else None
    return AdmittedJob(
        pipeline_name=request.pipeline,
        pipeline=pipeline,
        queue=request.queue,
        job_queue=job_queue,
        vcpus=vcpus,
        memory_mib=memory_mib,
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


def _configured_queue(request: SubmitJobRequest, settings: LabSettings) -> str:
    job_queue = settings.queues.get(request.queue)
    if job_queue is None:
        raise refused(
            "unknown_queue",
            f"queue: lab {settings.lab} has no {request.queue!r} queue; use one of {', '.join(sorted(settings.queues))}",
            field="queue",
            allowed=sorted(settings.queues),
        )
    return job_queue


def _resources(request: SubmitJobRequest, pipeline: PipelineSettings, settings: LabSettings) -> tuple[int, int]:
    vcpus = request.vcpus if request.vcpus is not None else pipeline.vcpus
    memory_mib = request.memory_mib if request.memory_mib is not None else pipeline.memory_mib
    default = f" (the {request.pipeline} default)"
    check_resources(vcpus, memory_mib, request.queue, settings,
                    vcpus_origin="" if request.vcpus is not None else default,
                    memory_origin="" if request.memory_mib is not None else default)
    return vcpus, memory_mib


def check_resources(vcpus: int, memory_mib: int, queue: str, settings: LabSettings, *,
                    vcpus_field: str = "vcpus", memory_field: str = "memory_mib",
                    vcpus_origin: str = "", memory_origin: str = "") -> None:
    """What any job may ask for on this lab (POST /jobs, and TES tasks' resources, which name
    their own fields): refused with the limit, whose limit it is, and what to ask for instead."""
    limits = settings.limits
    if vcpus > limits.max_vcpus:
        where = (f"this local machine ({limits.max_vcpus}; the lab's instances give {limits.lab_max_vcpus})"
                 if limits.lab_max_vcpus else f"this lab's instances ({limits.max_vcpus})")
        raise refused(
            "vcpus_too_many",
            f"{vcpus_field}: {vcpus}{vcpus_origin} is more than a job can get on {where}; "
            f"ask for {limits.max_vcpus} or fewer",
            field=vcpus_field,
            asked=vcpus,
            available=settings.limits.max_vcpus,
        )
    queue_max = settings.queue_max_vcpus.get(queue)
    if queue_max is not None and vcpus > queue_max:
        raise refused(
            "vcpus_too_many",
            f"{vcpus_field}: {vcpus}{vcpus_origin} is more than the whole {queue} queue may run ({queue_max}); "
            f"ask for {queue_max} or fewer, or use another queue",
            field=vcpus_field,
            asked=vcpus,
            available=queue_max,
        )
    if memory_mib > settings.limits.max_memory_mib:
        where = (f"this local machine can give a job ({limits.max_memory_mib} MiB; the lab's instances give "
                 f"{limits.lab_max_memory_mib} MiB)" if limits.lab_max_memory_mib else
                 f"ECS can give a job on this lab's instances ({limits.max_memory_mib} MiB, after the agent's "
                 "reserved memory)")
        raise refused(
            "memory_too_large",
            f"{memory_field}: {memory_mib}{memory_origin} is more than {where}; ask for {limits.max_memory_mib} or less",
            field=memory_field,
            asked=memory_mib,
            available=settings.limits.max_memory_mib,
        )


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


def _s3_parameter_values(
    merged: dict[str, str], sample_given: dict[str, str], sample_field: str
) -> list[tuple[str, str]]:
    """Parameters whose value is an s3:// URI are inputs too (the runner stages them),
    named by where the value came from: the sample, or the job (or its default)."""
    return [
        (f"{sample_field}.parameters.{key}" if key in sample_given else f"parameters.{key}", value)
        for key, value in merged.items()
        if value.startswith(S3_URI_PREFIX)
    ]


def _lab_objects(units: list[tuple[str, list[tuple[str, str]]]], settings: LabSettings) -> dict[S3Object, str]:
    allowed = (settings.buckets.inputs, settings.buckets.references)
    objects: dict[S3Object, str] = {}
    for _, staged in units:
        for field, uri in staged:
            obj = parse_lab_uri(uri, field, allowed)
            objects.setdefault(obj, field)
            if len(objects) > MAX_DISTINCT_OBJECTS:
                raise refused(
                    "too_many_inputs",
                    f"{field}: a submission may name at most {MAX_DISTINCT_OBJECTS:,} distinct objects; "
                    "split the samples over several submissions",
                    field=field,
                    limit=MAX_DISTINCT_OBJECTS,
                )
    return objects


def _largest_scratch_need(units, sizes: dict[S3Object, int], settings: LabSettings, pipeline: PipelineSettings):
    allowed = (settings.buckets.inputs, settings.buckets.references)
    worst = (0, 0, "inputs")
    for unit_field, staged in units:
        distinct = {parse_lab_uri(uri, field, allowed) for field, uri in staged}
        input_bytes = sum(sizes[obj] for obj in distinct)
        needed = math.ceil(input_bytes * pipeline.disk_factor)
        if needed > worst[1]:
            worst = (input_bytes, needed, unit_field)
    return worst


def _scratch_fits(needed: int, input_bytes: int, field: str, pipeline: PipelineSettings, settings: LabSettings) -> None:
    available = settings.scratch_gib * GIB
    if needed <= available:
        return
    where = "its inputs" if field == "inputs" else f"{field}'s inputs"
    raise refused(
        "scratch_too_small",
        f"{field}: this job needs about {needed / GIB:.1f} GiB of scratch ({where}: {input_bytes / GIB:.1f} GiB "
        f"x disk factor {pipeline.disk_factor:g}) but the lab's scratch volume has {settings.scratch_gib} GiB. "
        "Split the inputs over samples (each array child has its own scratch) or ask for a larger scratch volume.",
        field=field,
        needed_gib=round(needed / GIB, 2),
        available_gib=settings.scratch_gib,
        input_gib=round(input_bytes / GIB, 2),
        disk_factor=pipeline.disk_factor,
    )
