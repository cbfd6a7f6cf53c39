"""The instance rehearsal's ECS agent stand-in: starts Batch jobs' containers as the agent does.

Runs inside the rehearsal instance (ecs.service's ExecStart, after the runner tree is in place)
on the instance's own Python, with LabBatch's contract package mounted beside it. The rehearsal
hands it tasks as Batch would place them on this instance: one JSON file per attempt in
`<spool>/tasks/` holding the registered job definition (RegisterJobDefinition's shape, read from
the synthesized template), SubmitJob's `containerOverrides` and `parameters`, the job context
(job id, attempt, array index, compute environment, queue) and what the agent itself adds
(credentials, endpoints). It translates them with labbatch_contract.batch_container, the very
translation local mode uses, pulls the image through the instance's registry and credential
helper as ECS does, creates, starts and waits for the container, and writes
`<spool>/results/<task>.json` (plus the container's output as `<task>.log`).

A file `<spool>/drain` is the two-minute spot interruption notice with
ECS_ENABLE_SPOT_INSTANCE_DRAINING: every running task is stopped as ECS stops it (SIGTERM, then
SIGKILL after ECS_CONTAINER_STOP_TIMEOUT, 30 s by default) and reported as Batch reports a job
whose host went away.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labbatch_contract import batch_container  # noqa: E402  (mounted beside this file)

SPOOL = Path(os.environ.get("LABBATCH_REHEARSAL_SPOOL", "/var/lib/ecs/rehearsal"))
STOP_TIMEOUT = int(os.environ.get("ECS_CONTAINER_STOP_TIMEOUT", "30s").rstrip("s") or 30)
OUT_OF_MEMORY = "OutOfMemoryError: Container killed due to memory usage"


def docker(*args: str, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class Agent:
    def __init__(self, spool: Path) -> None:
        self.spool = spool
        (spool / "tasks").mkdir(parents=True, exist_ok=True)
        (spool / "results").mkdir(parents=True, exist_ok=True)
        self.running: dict[str, str] = {}  # task id -> container name
        self.drained = False
        self.lock = threading.Lock()

    def serve(self) -> None:
        (self.spool / "agent-ready").write_text(f"{time.time()}\n")
        seen: set[str] = set()
        while True:
            for path in sorted((self.spool / "tasks").glob("*.json")):
                if path.stem not in seen:
                    seen.add(path.stem)
                    threading.Thread(target=self.run_task, args=(path,), daemon=True).start()
            if (self.spool / "drain").exists() and not self.drained:
                self.drained = True
                threading.Thread(target=self.drain, daemon=True).start()
            time.sleep(0.2)

    def finish(self, task_id: str, result: dict) -> None:
        partial = self.spool / "results" / f".{task_id}.json"
        partial.write_text(json.dumps(result, indent=1))
        partial.rename(self.spool / "results" / f"{task_id}.json")

    def run_task(self, path: Path) -> None:
        task_id = path.stem
        try:
            task = json.loads(path.read_text())
            self.finish(task_id, self.start_and_wait(task_id, task))
        except Exception as exc:  # noqa: BLE001 - every task gets a result, whatever broke
            self.finish(task_id, {"started": False, "reason": f"agent: {type(exc).__name__}: {exc}"})

    def start_and_wait(self, task_id: str, task: dict) -> dict:
        try:
            container = batch_container.container_for(task["definition"], overrides=task.get("overrides"),
                                                      parameters=task.get("parameters"))
        except batch_container.JobDefinitionError as exc:
            return {"started": False, "reason": f"ClientException: {exc}"}
        context = batch_container.JobContext(**task["context"])
        container = container.with_environment({**task.get("agent_environment", {}),
                                                **batch_container.batch_environment(context)})
        pulled = docker("pull", "--quiet", container.image)
        if pulled.returncode != 0:
            return {"started": False, "reason": f"CannotPullContainerError: {last_line(pulled.stderr)}"}
        name = f"ecs-{task_id}"
        argv = ["create", "--name", name, *container.create_options(), container.image, *container.command]
        created = docker(*argv)
        if created.returncode != 0:
            return {"started": False, "reason": f"CannotCreateContainerError: {last_line(created.stderr)}",
                    "create": argv}
        with self.lock:
            self.running[task_id] = name
            drained = self.drained
        started = docker("start", name)
        if started.returncode != 0 or drained:
            docker("rm", "--force", name)
            return {"started": False, "reason": f"CannotStartContainerError: {last_line(started.stderr)}",
                    "create": argv}
        docker("wait", name, timeout=None)
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout or "{}")
        logs = docker("logs", name)
        (self.spool / "results" / f"{task_id}.log").write_text(logs.stdout + logs.stderr)
        docker("rm", "--force", "--volumes", name)
        with self.lock:
            self.running.pop(task_id, None)
            reclaimed = self.drained
        result = {"started": True, "exit_code": state.get("ExitCode"), "oom_killed": bool(state.get("OOMKilled")),
                  "reason": OUT_OF_MEMORY if state.get("OOMKilled") else None, "create": argv}
        if reclaimed:
            result["status_reason"] = f"Host EC2 (instance {os.uname().nodename}) terminated."
        return result

    def drain(self) -> None:
        with self.lock:
            names = list(self.running.values())
        for name in names:
            docker("stop", "--time", str(STOP_TIMEOUT), name)


if __name__ == "__main__":
    Agent(SPOOL).serve()
