"""How one attempt of a placed job will run: its command, environment, working directory and
limits, and where it runs (on this machine, in a /tmp of its own, or in a container of the job
definition's image), as the AttemptSpec that attempt.py starts.

Here is what the ECS agent and the instance give a job in AWS: Batch's AWS_BATCH_* variables,
the scratch volume, the reference cache, the log stream, the container's name and labels.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Mapping

from labbatch.lab.batch_layout import RUNNER_COMMAND, on_host
from labbatch_contract.references import CACHE_DIR_NAME
from labbatch_contract import batch_container, runner_env
from labbatch.local.batch.attempt import AttemptSpec, base_environment
from labbatch.local.batch.jobs import Job
from labbatch.local.batch.models import ComputeEnvironment
from labbatch.local.batch.private_tmp import RUNNER_SCRATCH
from labbatch.local.batch.spot import SpotInterruptions
from labbatch.local.docker_runner import ContainerRunner, container_name


class AttemptPlanner:
    """`extra_env`: the launcher's variables every job gets; `container_runner`: None runs each
    command on this machine (the host runner in place of the mounted one), else in a container."""

    def __init__(self, *, scratch_root: Path, extra_env: Mapping[str, str], kill_grace_seconds: float,
                 container_runner: ContainerRunner | None, spot: SpotInterruptions) -> None:
        self._scratch_root = scratch_root
        self._extra_env = dict(extra_env)
        self._kill_grace = kill_grace_seconds
        self._container_runner = container_runner
        self._spot = spot

    def _reference_cache(self) -> Path:
        """The reference cache that every container attempt mounts (labbatch_runner.refcache)."""
        cache = self._scratch_root / CACHE_DIR_NAME
        if not cache.exists():
            cache.mkdir(parents=True, exist_ok=True)
            cache.chmod(0o777)  # whatever user the image runs as keeps its references there
        return cache

    def spec(self, job: Job, environment: ComputeEnvironment) -> AttemptSpec:
        attempt_number = len(job.attempts) + 1
        task_id = uuid.uuid4().hex
        prefix = job.definition.log_stream_prefix or job.definition.name
        env = base_environment()
        env.update(self._extra_env)
        env.update(job.environment)
        env.update({
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt_number),
            "AWS_BATCH_CE_NAME": environment.name,
            "AWS_BATCH_JQ_NAME": job.queue_name,
            # The scratch volume's mount point in AWS; here the executor's own directory.
            runner_env.SCRATCH_DIR: str(self._scratch_root),
        })
        if job.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
        reclaim_after, instance_id = self._spot.draw(environment)
        argv = on_host(job.command)
        if argv[:1] == [RUNNER_COMMAND[0]] and (installed := Path(sys.executable).parent / RUNNER_COMMAND[0]).exists():
            # This install's runner, whatever PATH puts first: the tools a job runs follow PATH's
            # order (a workflow engine's env may come first), the runner must not.
            argv = [str(installed), *argv[1:]]
        container = private_tmp = None
        if self._container_runner is None and runner_env.TES_TASK in job.environment:
            # A TES task names absolute paths: on the host it gets a /tmp of its own, here on scratch.
            private_tmp = self._scratch_root / "attempts" / task_id
            env[runner_env.SCRATCH_DIR] = RUNNER_SCRATCH
            env.pop("TMPDIR", None)  # the host's may lie under the /tmp the namespace replaces
        if self._container_runner is not None:
            argv = list(job.command)
            # Findable from the ledger's job id (or Batch's), the array index and the attempt.
            name = container_name("labbatch", job.environment.get(runner_env.JOB_ID) or job.job_id.split(":")[0],
                                  "" if job.array_index is None else str(job.array_index),
                                  f"a{attempt_number}", task_id[:8])
            planned = job.container or batch_container.container_for(job.definition.request())
            context = batch_container.JobContext(job_id=job.job_id, attempt=attempt_number,
                                                 compute_environment=environment.name, job_queue=job.queue_name,
                                                 array_index=job.array_index)
            # What the ECS agent adds on an instance: Batch's variables; and what only this
            # machine needs: the emulator's endpoint, Region and credentials (AWS_* of the launcher).
            agent_env = {**{k: v for k, v in self._extra_env.items() if k.startswith("AWS_")},
                         **batch_container.batch_environment(context)}
            container = self._container_runner.spec(
                planned.with_environment(agent_env), scratch=self._scratch_root / "attempts" / task_id, name=name,
                reference_cache=None if runner_env.TES_TASK in job.environment else self._reference_cache(),
                labels={"labbatch.job-id": job.environment.get(runner_env.JOB_ID, ""),
                        "labbatch.batch-job-id": job.job_id, "labbatch.attempt": str(attempt_number),
                        "labbatch.log-stream": f"{prefix}/default/{task_id}"})
        return AttemptSpec(
            argv=argv, env=env, cwd=self._scratch_root, memory_mib=job.memory_mib, container=container,
            private_tmp=private_tmp,
            log_stream_name=f"{prefix}/default/{task_id}", timeout_seconds=job.timeout_seconds,
            reclaim_after_seconds=reclaim_after, reclaim_instance_id=instance_id,
            kill_grace_seconds=self._kill_grace,
        )
