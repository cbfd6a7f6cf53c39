"""What is registered with local Batch: its compute environments, job queues and job definitions
(every revision), found by name or ARN as the Batch calls name them.

The executor holds one registry and takes its lock around every change; the capacity shares the
registry's `environments` dict, so a placement sees an environment disabled at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from labbatch.local.batch.models import ComputeEnvironment, JobDefinition, JobQueue, coerce


class Registry:
    def __init__(
        self,
        compute_environments: Iterable[ComputeEnvironment | Mapping[str, Any]],
        queues: Iterable[JobQueue | Mapping[str, Any]],
        job_definitions: Iterable[JobDefinition | Mapping[str, Any]],
    ) -> None:
        self.environments = {env.name: env for env in (coerce(ComputeEnvironment, e) for e in compute_environments)}
        self.queues = {queue.name: queue for queue in (coerce(JobQueue, q) for q in queues)}
        self.definitions: dict[str, dict[int, JobDefinition]] = {}
        for definition in (coerce(JobDefinition, d) for d in job_definitions):
            self.definitions.setdefault(definition.name, {})[definition.revision] = definition
        for queue in self.queues.values():
            unknown = [name for name in queue.compute_environments if name not in self.environments]
            if unknown:
                raise ValueError(f"job queue {queue.name!r}: unknown compute environment(s) {', '.join(unknown)}")

    def find_queue(self, reference: str) -> JobQueue | None:
        name = reference.split(":job-queue/", 1)[1] if reference.startswith("arn:") and ":job-queue/" in reference \
            else reference
        return self.queues.get(name)

    def find_definition(self, reference: str) -> JobDefinition | None:
        if reference.startswith("arn:"):
            if ":job-definition/" not in reference:
                return None
            reference = reference.split(":job-definition/", 1)[1]
        name, _, revision = reference.partition(":")
        revisions = self.definitions.get(name)
        if not revisions:
            return None
        if not revision:
            return revisions[max(revisions)]
        return revisions.get(int(revision)) if revision.isdigit() else None

    def register_definition(self, definition: JobDefinition) -> JobDefinition:
        revisions = self.definitions.setdefault(definition.name, {})
        registered = dataclasses.replace(definition, revision=max(revisions, default=0) + 1)
        revisions[registered.revision] = registered
        return registered

    def queues_named(self, wanted: list[str]) -> list[JobQueue]:
        """DescribeJobQueues' selection: the queues named (unknown ones left out), or all."""
        queues = [self.find_queue(ref) for ref in wanted] if wanted else list(self.queues.values())
        return [queue for queue in queues if queue is not None]

    def definitions_matching(self, wanted: list[str], name: str | None) -> list[JobDefinition]:
        """DescribeJobDefinitions' selection: the revisions named, or all, of one name if given."""
        if wanted:
            found = [self.find_definition(ref) for ref in wanted]
            definitions = [d for d in found if d is not None]
        else:
            definitions = [d for revisions in self.definitions.values() for d in revisions.values()]
        if name:
            definitions = [d for d in definitions if d.name == name]
        return definitions

    def environments_named(self, wanted: list[str]) -> list[ComputeEnvironment]:
        names = [ref.split(":compute-environment/", 1)[-1] for ref in wanted] if wanted else list(self.environments)
        return [self.environments[n] for n in names if n in self.environments]

    def set_queue_enabled(self, name: str, enabled: bool) -> None:
        self.queues[name] = dataclasses.replace(self.queues[name], enabled=enabled)

    def set_environment_enabled(self, name: str, enabled: bool) -> None:
        self.environments[name] = dataclasses.replace(self.environments[name], enabled=enabled)
