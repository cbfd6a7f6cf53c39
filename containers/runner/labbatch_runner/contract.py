"""The job definition's side of the contract: environment and argv in, a `JobContract` out.

Everything here is checked before any byte is downloaded, so that a mistake in a job
definition or a submission costs seconds, not a stage-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from labbatch_contract import references, runner_env
from labbatch_contract.outcome import ExitCode

from .errors import RunnerError
from .s3client import describe_client_error
from .s3uri import S3Uri

JOB_ID = runner_env.JOB_ID
INPUTS = runner_env.INPUTS
SHARED_INPUTS = runner_env.SHARED_INPUTS
PARAMETERS = runner_env.PARAMETERS
OUTPUT_PREFIX = runner_env.OUTPUT_PREFIX
SAMPLES_URI = runner_env.SAMPLES_URI
SCRATCH_DIR = runner_env.SCRATCH_DIR
ARRAY_INDEX = runner_env.ARRAY_INDEX
ATTEMPT = runner_env.ATTEMPT

DEFAULT_SCRATCH_DIR = "/scratch"


@dataclass(frozen=True)
class JobContract:
    job_id: str
    command: list[str]
    inputs: list[S3Uri]  # this job's (or array child's) own: {input}, {inputs}
    parameters: dict[str, str]
    output_prefix: S3Uri
    scratch_dir: Path
    attempt: int | None
    array_index: int | None = None
    sample: str | None = None
    samples_uri: S3Uri | None = None
    staged_parameters: dict[str, S3Uri] = field(default_factory=dict)
    # What every sample of an array request shares: {shared_input}, {shared_inputs}.
    shared_inputs: list[S3Uri] = field(default_factory=list)
    # The pipeline's companion patterns: inputs, shared_inputs or param:NAME -> patterns.
    secondary_files: dict[str, list[str]] = field(default_factory=dict)
    # The pipeline's disk factor: the room its tool needs is its own inputs x this.
    disk_factor: float = 1.0

    @property
    def is_array_child(self) -> bool:
        return self.samples_uri is not None


def _contract_error(message: str) -> RunnerError:
    return RunnerError(ExitCode.CONTRACT, message)


def parse_command(argv: list[str]) -> list[str]:
    command = argv[1:] if argv[:1] == ["--"] else list(argv)
    if not command:
        raise _contract_error("no pipeline command: expected `labbatch-runner -- <tool> [args...]`")
    return command


def _json_env(environ: Mapping[str, str], name: str, expected: type, default: Any) -> Any:
    raw = environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise _contract_error(f"{name} is not set")
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _contract_error(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, expected):
        raise _contract_error(f"{name} must be a JSON {expected.__name__}, got {type(value).__name__}")
    return value


def _parse_inputs(values: list[Any], where: str) -> list[S3Uri]:
    uris = []
    for position, value in enumerate(values):
        try:
            uri = S3Uri.parse(value)
        except ValueError as exc:
            raise _contract_error(f"{where}[{position}]: {exc}") from None
        if not uri.key or uri.key == "/":
            raise _contract_error(f"{where}[{position}]: {value!r} names a bucket, not an object or a folder")
        uris.append(uri)
    return uris


def _parse_parameters(values: dict[str, Any], where: str) -> dict[str, str]:
    for name, value in values.items():
        if not isinstance(value, str):
            raise _contract_error(f"{where}.{name} must be a string, got {type(value).__name__}")
    return dict(values)


def _staged_parameters(parameters: dict[str, str], where: str) -> dict[str, S3Uri]:
    staged = {}
    for name, value in parameters.items():
        if value.startswith("s3://"):
            staged[name] = _parse_inputs([value], f"{where}.{name}")[0]
    return staged


def _disk_factor(environ: Mapping[str, str]) -> float:
    raw = environ.get(runner_env.DISK_FACTOR) or "1"
    try:
        value = float(raw)
    except ValueError:
        raise _contract_error(f"{runner_env.DISK_FACTOR} must be a number, got {raw!r}") from None
    if not 1 <= value <= 1000:
        raise _contract_error(f"{runner_env.DISK_FACTOR} must be between 1 and 1000, got {value:g}")
    return value


def _secondary_files(environ: Mapping[str, str]) -> dict[str, list[str]]:
    name = runner_env.SECONDARY_FILES
    value = _json_env(environ, name, dict, {})
    for key, patterns in value.items():
        if not isinstance(patterns, list):
            raise _contract_error(f"{name}.{key} must be a JSON array of patterns")
        for pattern in patterns:
            try:
                references.parse_pattern(pattern)
            except references.PatternError as exc:
                raise _contract_error(f"{name}.{key}: {exc}") from None
    return value


def _parse_output_prefix(environ: Mapping[str, str]) -> S3Uri:
    raw = environ.get(OUTPUT_PREFIX)
    if not raw:
        raise _contract_error(f"{OUTPUT_PREFIX} is not set")
    try:
        prefix = S3Uri.parse(raw)
    except ValueError as exc:
        raise _contract_error(f"{OUTPUT_PREFIX}: {exc}") from None
    # A bare bucket or a prefix without the trailing slash would let this job's keys run into
    # another job's (s3://b/job-1 is a prefix of s3://b/job-12/...).
    if not prefix.key or not prefix.key.endswith("/"):
        raise _contract_error(f"{OUTPUT_PREFIX}: {raw!r} must name a prefix ending in '/' below the bucket")
    return prefix


def _optional_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _contract_error(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise _contract_error(f"{name} must not be negative, got {value}")
    return value


def read_contract(argv: list[str], environ: Mapping[str, str]) -> JobContract:
    """Reads everything but an array child's sample, which lives in S3 (see `select_sample`)."""
    command = parse_command(argv)
    job_id = environ.get(JOB_ID, "").strip()
    if not job_id:
        raise _contract_error(f"{JOB_ID} is not set")
    output_prefix = _parse_output_prefix(environ)
    samples_raw = environ.get(SAMPLES_URI) or None
    parameters = _parse_parameters(_json_env(environ, PARAMETERS, dict, {}), PARAMETERS)
    contract = JobContract(
        job_id=job_id,
        command=command,
        # An array child's inputs come from its sample, so the job-level list may be absent.
        inputs=_parse_inputs(_json_env(environ, INPUTS, list, [] if samples_raw else None), INPUTS),
        shared_inputs=_parse_inputs(_json_env(environ, SHARED_INPUTS, list, []), SHARED_INPUTS),
        parameters=parameters,
        output_prefix=output_prefix,
        scratch_dir=Path(environ.get(SCRATCH_DIR) or DEFAULT_SCRATCH_DIR),
        attempt=_optional_int(environ, ATTEMPT),
        staged_parameters=_staged_parameters(parameters, PARAMETERS),
        secondary_files=_secondary_files(environ),
        disk_factor=_disk_factor(environ),
    )
    if samples_raw is None:
        return contract
    try:
        samples_uri = S3Uri.parse(samples_raw)
    except ValueError as exc:
        raise _contract_error(f"{SAMPLES_URI}: {exc}") from None
    array_index = _optional_int(environ, ARRAY_INDEX)
    if array_index is None:
        raise _contract_error(f"{SAMPLES_URI} is set but {ARRAY_INDEX} is not: only array children get a sample list")
    return replace(contract, samples_uri=samples_uri, array_index=array_index)


def publishable_prefix(environ: Mapping[str, str]) -> S3Uri | None:
    """Where a broken contract can still leave its manifest: only a plain job's own prefix.

    An array child whose sample cannot be read does not know its own prefix, and writing at
    the parent's prefix would let thousands of children overwrite one another.
    """
    if environ.get(SAMPLES_URI):
        return None
    try:
        return _parse_output_prefix(environ)
    except RunnerError:
        return None


def _valid_sample_name(name: Any) -> bool:
    # The name becomes one path segment of the output prefix: it must not climb or split it.
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and name.isprintable()
        and len(name) <= 255
    )


def select_sample(contract: JobContract, sample_list: Any) -> JobContract:
    """An array child's contract: its sample's inputs, overlaid parameters, own output prefix."""
    where = str(contract.samples_uri)
    if not isinstance(sample_list, list):
        raise _contract_error(f"sample list {where} must be a JSON array")
    index = contract.array_index
    assert index is not None
    if index >= len(sample_list):
        raise _contract_error(f"{ARRAY_INDEX}={index} but sample list {where} has {len(sample_list)} samples")
    sample = sample_list[index]
    at = f"sample list {where}[{index}]"
    if not isinstance(sample, dict):
        raise _contract_error(f"{at} must be an object")
    name = sample.get("name")
    if not _valid_sample_name(name):
        raise _contract_error(f"{at}.name must be a non-empty path segment without '/', got {name!r}")
    inputs = sample.get("inputs", [])
    if not isinstance(inputs, list):
        raise _contract_error(f"{at}.inputs must be a JSON array")
    overlay = sample.get("parameters") or {}
    if not isinstance(overlay, dict):
        raise _contract_error(f"{at}.parameters must be a JSON object")
    parameters = {**contract.parameters, **_parse_parameters(overlay, f"{at}.parameters")}
    return replace(
        contract,
        sample=name,
        inputs=_parse_inputs(inputs, f"{at}.inputs"),
        parameters=parameters,
        staged_parameters=_staged_parameters(parameters, PARAMETERS),
        output_prefix=contract.output_prefix.join(name + "/"),
    )


def load_sample_list(s3: Any, uri: S3Uri) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    except ClientError as exc:
        raise _contract_error(f"sample list {uri}: {describe_client_error(exc)}") from None
    except BotoCoreError as exc:
        raise _contract_error(f"sample list {uri}: {exc}") from None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _contract_error(f"sample list {uri} is not valid JSON: {exc}") from None

