"""Batch's REST-JSON operations: requests checked as Batch checks them, answers in its shapes.

Shapes follow botocore's batch service model (`botocore/data/batch/2016-08-10`). Anything
Batch would refuse raises `BatchClientError`, which the HTTP layer turns into the
`ClientException` botocore raises as `ClientError`.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any, Callable

from labbatch_contract import batch_container
from labbatch.local.batch.calls import BatchClientError, SubmitRequest
from labbatch.local.batch.jobs import STATUSES, Job
from labbatch.local.batch.models import JobDefinition
from labbatch.local.batch.retry import RetryStrategy, RetryStrategyError, pattern_matches

if TYPE_CHECKING:
    from labbatch.local.batch.executor import LocalBatch

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MIN_ARRAY_SIZE, MAX_ARRAY_SIZE = 2, 10_000
MIN_TIMEOUT_SECONDS = 60
MAX_DESCRIBE_JOBS = 100
MAX_TAGS = 50
# What a registered definition keeps beyond image, command, environment and resources.
EXTRA_PROPERTIES = ("volumes", "mountPoints", "ulimits", "user", "linuxParameters", "readonlyRootFilesystem")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise BatchClientError(f"{where} must be {names}, got {type(value).__name__}")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    _expect(value, dict, where)
    for key, item in value.items():
        if not isinstance(item, str):
            raise BatchClientError(f"{where}.{key} must be a string")
    return dict(value)


def _positive_int(raw: Any, where: str) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise BatchClientError(f"{where} is {raw!r} (allowed: a whole number above 0 on EC2)") from None
    if value < 1:
        raise BatchClientError(f"{where} is {raw!r} (allowed: a whole number above 0 on EC2)")
    return value


def _page(items: list[Any], body: dict[str, Any], *, default: int, most: int) -> tuple[list[Any], str | None]:
    limit = body.get("maxResults") or default
    if not isinstance(limit, int) or not 1 <= limit <= most:
        raise BatchClientError(f"maxResults is {limit!r} (allowed: 1-{most})")
    start = 0
    token = body.get("nextToken")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise BatchClientError("nextToken is not one this endpoint gave") from None
    end = start + limit
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], next_token


class BatchApi:
    """Routes `/v1/<operation>` to the executor."""

    def __init__(self, batch: LocalBatch) -> None:
        self._batch = batch
        self._routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/v1/submitjob": self.submit_job,
            "/v1/describejobs": self.describe_jobs,
            "/v1/listjobs": self.list_jobs,
            "/v1/terminatejob": self.terminate_job,
            "/v1/canceljob": self.cancel_job,
            "/v1/describejobqueues": self.describe_job_queues,
            "/v1/describejobdefinitions": self.describe_job_definitions,
            "/v1/registerjobdefinition": self.register_job_definition,
            "/v1/describecomputeenvironments": self.describe_compute_environments,
            "/v1/updatejobqueue": self.update_job_queue,
            "/v1/updatecomputeenvironment": self.update_compute_environment,
        }

    def operation(self, path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        route = self._routes.get(path.rstrip("/").lower())
        if route is None:
            supported = ", ".join(sorted(self._routes))
            raise BatchClientError(f"{path} is not an operation LabBatch's local Batch serves (served: {supported})")
        return route

    # Jobs

    def job_tags(self, job_id: str) -> dict[str, str]:
        """A job's tags (its aws:ResourceTag keys for IAM); an array child's are its parent's."""
        found = self._batch.describe_jobs([job_id]) or self._batch.describe_jobs([job_id.split(":", 1)[0]])
        return dict(found[0].get("tags") or {}) if found else {}

    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._batch.submit(self._submit_request(body))
        return {"jobArn": job.job_arn, "jobName": job.name, "jobId": job.job_id}

    def _submit_request(self, body: dict[str, Any]) -> SubmitRequest:
        for required in ("jobName", "jobQueue", "jobDefinition"):
            if not body.get(required):
                raise BatchClientError(f"{required} is required")
        for unsupported in ("dependsOn", "nodeOverrides", "eksPropertiesOverride", "ecsPropertiesOverride",
                            "consumableResourcePropertiesOverride"):
            if body.get(unsupported):
                raise BatchClientError(f"{unsupported} is not supported by LabBatch's local Batch")
        name = _expect(body["jobName"], str, "jobName")
        if not JOB_NAME.match(name):
            raise BatchClientError(f"jobName {name!r} is not valid (allowed: up to 128 letters, digits, hyphens and "
                                   "underscores, starting with a letter or digit)")
        queue = self._batch.find_queue(_expect(body["jobQueue"], str, "jobQueue"))
        if queue is None:
            raise BatchClientError(f"JobQueue {body['jobQueue']} not found")
        if not queue.enabled:
            raise BatchClientError(f"JobQueue {body['jobQueue']} is DISABLED and does not accept jobs")
        definition = self._batch.find_definition(_expect(body["jobDefinition"], str, "jobDefinition"))
        if definition is None:
            raise BatchClientError(f"Job definition {body['jobDefinition']} does not exist or is not ACTIVE")

        overrides = _expect(body.get("containerOverrides") or {}, dict, "containerOverrides")
        for deprecated in ("vcpus", "memory"):  # Batch's older spelling of resourceRequirements
            if overrides.get(deprecated) is not None:
                _positive_int(overrides[deprecated], f"containerOverrides.{deprecated}")
        parameters = {**definition.parameters, **_string_map(body.get("parameters") or {}, "parameters")}
        try:
            # What the agent would start: the same translation the instance rehearsal's agent uses.
            container = batch_container.container_for(definition.request(), overrides=overrides,
                                                      parameters=parameters)
        except batch_container.JobDefinitionError as exc:
            raise BatchClientError(str(exc)) from None
        if container.gpus and not self._batch.gives_gpus:
            raise BatchClientError("GPU jobs cannot run in LabBatch's local mode here (no container engine with an "
                                   "NVIDIA runtime gives this machine's GPUs)")
        if container.vcpus != int(container.vcpus):
            raise BatchClientError(f"VCPU is {container.vcpus:g} (allowed: a whole number above 0 on EC2)")

        array_size = None
        if body.get("arrayProperties"):
            size = _expect(body["arrayProperties"], dict, "arrayProperties").get("size")
            if not isinstance(size, int) or isinstance(size, bool) or not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
                raise BatchClientError(f"arrayProperties.size is {size!r} (allowed: {MIN_ARRAY_SIZE}-{MAX_ARRAY_SIZE:,})")
            array_size = size

        retry = definition.retry
        if body.get("retryStrategy"):
            try:
                retry = RetryStrategy.from_batch(_expect(body["retryStrategy"], dict, "retryStrategy"))
            except RetryStrategyError as exc:
                raise BatchClientError(str(exc)) from None
        timeout_seconds = definition.timeout_seconds
        if body.get("timeout"):
            seconds = _expect(body["timeout"], dict, "timeout").get("attemptDurationSeconds")
            if seconds is not None:
                if not isinstance(seconds, int) or seconds < MIN_TIMEOUT_SECONDS:
                    raise BatchClientError(f"timeout.attemptDurationSeconds is {seconds!r} "
                                           f"(allowed: at least {MIN_TIMEOUT_SECONDS})")
                timeout_seconds = seconds
        tags = _string_map(body.get("tags") or {}, "tags")
        if len(tags) > MAX_TAGS:
            raise BatchClientError(f"tags has {len(tags)} entries (allowed: at most {MAX_TAGS})")
        return SubmitRequest(
            name=name, queue=queue, definition=definition,
            command=list(container.command), environment=dict(container.environment),
            vcpus=int(container.vcpus), memory_mib=container.memory_mib, array_size=array_size, retry=retry,
            timeout_seconds=timeout_seconds, parameters=parameters, tags=tags, container=container,
            propagate_tags=_expect(body.get("propagateTags", False), bool, "propagateTags"),
        )

    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = _expect(body.get("jobs"), list, "jobs")
        if len(ids) > MAX_DESCRIBE_JOBS:
            raise BatchClientError(f"jobs lists {len(ids)} ids (allowed: at most {MAX_DESCRIBE_JOBS})")
        return {"jobs": self._batch.describe_jobs([_expect(i, str, "jobs[]") for i in ids])}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        scopes = [key for key in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(key)]
        if len(scopes) != 1:
            raise BatchClientError("give exactly one of jobQueue, arrayJobId, multiNodeJobId")
        if body.get("multiNodeJobId"):
            raise BatchClientError("multi-node parallel jobs are not supported by LabBatch's local Batch")
        filters = _expect(body.get("filters") or [], list, "filters")
        status = body.get("jobStatus")
        if status is not None and status not in STATUSES:
            raise BatchClientError(f"jobStatus is {status!r} (allowed: {', '.join(STATUSES)})")
        # As in Batch: without filters and status only RUNNING jobs; with filters, every status.
        wanted_status = None if filters else (status or "RUNNING")
        if body.get("jobQueue"):
            queue = self._batch.find_queue(body["jobQueue"])
            if queue is None:
                raise BatchClientError(f"JobQueue {body['jobQueue']} not found")
            jobs = self._batch.queue_jobs(queue.name)
        else:
            jobs = self._batch.array_children(body["arrayJobId"])
            if jobs is None:
                raise BatchClientError(f"arrayJobId {body['arrayJobId']} is not an array job")
        matching = [job for job in jobs if (wanted_status is None or job.status == wanted_status)
                    and all(self._filter_matches(f, job) for f in filters)]
        page, next_token = _page(matching, body, default=100, most=1000)
        answer: dict[str, Any] = {"jobSummaryList": self._batch.summaries(page)}
        if next_token:
            answer["nextToken"] = next_token
        return answer

    def _filter_matches(self, shape: Any, job: Job) -> bool:
        _expect(shape, dict, "filters[]")
        name, values = shape.get("name"), shape.get("values") or []
        if len(values) != 1:
            raise BatchClientError(f"filter {name}: give exactly one value")
        value = values[0]
        if name == "JOB_NAME":
            return pattern_matches(value, job.name)
        if name == "JOB_DEFINITION":
            short = f"{job.definition.name}:{job.definition.revision}"
            return any(pattern_matches(value, candidate) for candidate in (job.definition_arn, short, job.definition.name))
        if name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
            try:
                moment = int(value)
            except ValueError:
                raise BatchClientError(f"filter {name}: {value!r} is not epoch milliseconds") from None
            return job.created_at < moment if name == "BEFORE_CREATED_AT" else job.created_at > moment
        raise BatchClientError(f"filter name {name!r} (allowed: JOB_NAME, JOB_DEFINITION, BEFORE_CREATED_AT, AFTER_CREATED_AT)")

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id, reason = self._stop_request(body)
        self._batch.terminate(job_id, reason)
        return {}

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id, reason = self._stop_request(body)
        self._batch.cancel(job_id, reason)
        return {}

    def _stop_request(self, body: dict[str, Any]) -> tuple[str, str]:
        job_id, reason = body.get("jobId"), body.get("reason")
        if not job_id or not isinstance(job_id, str):
            raise BatchClientError("jobId is required")
        if not reason or not isinstance(reason, str):
            raise BatchClientError("reason is required")
        if not self._batch.has_job(job_id):
            raise BatchClientError(f"Job {job_id} not found")
        return job_id, reason

    # Queues, definitions, environments

    def describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = _expect(body.get("jobQueues") or [], list, "jobQueues")
        queues = self._batch.queue_details(wanted)
        return self._paged("jobQueues", queues, body)

    def describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = _expect(body.get("jobDefinitions") or [], list, "jobDefinitions")
        definitions = self._batch.definition_details(wanted, name=body.get("jobDefinitionName"),
                                                     status=body.get("status"))
        return self._paged("jobDefinitions", definitions, body)

    def register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        """A container job definition on EC2, as LabBatch registers them (labbatch_contract.tes):
        image, command, environment, resources, log group, retry strategy and timeout."""
        name = _expect(body.get("jobDefinitionName") or "", str, "jobDefinitionName")
        if not JOB_NAME.match(name):
            raise BatchClientError(f"jobDefinitionName {name!r} is not valid")
        if body.get("type") != "container":
            raise BatchClientError(f"type is {body.get('type')!r}; LabBatch's local Batch registers container jobs only")
        container = _expect(body.get("containerProperties") or {}, dict, "containerProperties")
        try:
            checked = batch_container.container_for(body)  # refused here as Batch refuses it, not at the first job
        except batch_container.JobDefinitionError as exc:
            raise BatchClientError(str(exc)) from None
        if checked.vcpus != int(checked.vcpus):
            raise BatchClientError(f"VCPU is {checked.vcpus:g} (allowed: a whole number above 0 on EC2)")
        options = ((container.get("logConfiguration") or {}).get("options") or {})
        try:
            retry = RetryStrategy.from_batch(body["retryStrategy"]) if body.get("retryStrategy") else RetryStrategy()
            definition = JobDefinition(
                name=name, command=tuple(container["command"]), image=checked.image,
                environment=batch_container.environment_pairs(container.get("environment"),
                                                              "containerProperties.environment"),
                vcpus=int(checked.vcpus), memory_mib=checked.memory_mib,
                timeout_seconds=(body.get("timeout") or {}).get("attemptDurationSeconds"), retry=retry,
                parameters=_string_map(body.get("parameters") or {}, "parameters"),
                log_group=options.get("awslogs-group"), log_stream_prefix=options.get("awslogs-stream-prefix"),
                extra_properties={key: container[key] for key in EXTRA_PROPERTIES if container.get(key) is not None})
        except (RetryStrategyError, ValueError) as exc:
            raise BatchClientError(str(exc)) from None
        registered = self._batch.register_definition(definition)
        return {"jobDefinitionName": registered.name, "revision": registered.revision,
                "jobDefinitionArn": self._batch.arns.job_definition(registered.name, registered.revision)}

    def describe_compute_environments(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = _expect(body.get("computeEnvironments") or [], list, "computeEnvironments")
        return self._paged("computeEnvironments", self._batch.environment_details(wanted), body)

    # Administrators' switches: enabling and disabling, which is all local mode can change.

    def update_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        reference = _expect(body.get("jobQueue") or "", str, "jobQueue")
        queue = self._batch.find_queue(reference) if reference else None
        if queue is None:
            raise BatchClientError(f"JobQueue {reference} not found")
        self._unsupported_updates(body, ("jobQueue", "state"))
        if body.get("state") is not None:
            self._batch.set_queue_enabled(queue.name, self._enabled(body["state"]))
        return {"jobQueueName": queue.name, "jobQueueArn": self._batch.arns.job_queue(queue.name)}

    def update_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        reference = _expect(body.get("computeEnvironment") or "", str, "computeEnvironment")
        name = reference.split(":compute-environment/", 1)[-1]
        if not name or not self._batch.has_environment(name):
            raise BatchClientError(f"ComputeEnvironment {reference} not found")
        self._unsupported_updates(body, ("computeEnvironment", "state"))
        if body.get("state") is not None:
            self._batch.set_environment_enabled(name, self._enabled(body["state"]))
        return {"computeEnvironmentName": name, "computeEnvironmentArn": self._batch.arns.compute_environment(name)}

    @staticmethod
    def _enabled(state: Any) -> bool:
        if state not in ("ENABLED", "DISABLED"):
            raise BatchClientError(f"state is {state!r} (allowed: ENABLED, DISABLED)")
        return state == "ENABLED"

    @staticmethod
    def _unsupported_updates(body: dict[str, Any], supported: tuple[str, ...]) -> None:
        others = sorted(key for key, value in body.items() if key not in supported and value not in (None, [], {}))
        if others:
            raise BatchClientError(f"{', '.join(others)}: LabBatch's local Batch can only enable or disable "
                                   "(the lab file defines the rest; restart `labbatch local` after changing it)")

    @staticmethod
    def _paged(key: str, items: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        page, next_token = _page(items, body, default=100, most=100)
        answer: dict[str, Any] = {key: page}
        if next_token:
            answer["nextToken"] = next_token
        return answer
