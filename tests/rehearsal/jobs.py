"""Jobs on the rehearsal instance: what Batch would place there, handed to its ECS agent stand-in.

- `registry_storage`: the instance's registry filled with the real images (the runner image the
  boot unpacks, the tool images jobs pull), pushed once per set of image ids (cached).
- `S3Server`: a moto S3 on the Docker bridge's gateway address, which the instance's jobs reach
  as an instance reaches S3 through its VPC endpoint (host networking, as Batch gives EC2 jobs).
- `Submitter`: SubmitJob requests built by the job API's own admission and request code
  (lambda/labbatch_api), so the overrides the agent applies are the ones a deployed API sends.
- `Spool`: the agent's task and result files (containers/instance/ecs_agent.py).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from labbatch_contract.batch_container import definition_from_template
from tests.rehearsal.instance import IMAGE, ROOT, run

REGISTRY_ROOT = "/var/lib/docker-registry"  # Debian's docker-registry config (rootdirectory)
CACHE = ROOT / ".cache" / "rehearsal-registry"


def image_ids(images: dict[str, str]) -> dict[str, str]:
    return {name: run("docker", "image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
            for name, tag in images.items()}


def registry_storage(images: dict[str, str]) -> Path:
    """A registry root holding `localhost:5000/<name>` for each `name -> local tag` (cached by the
    images' ids and the instance image's)."""
    ids = image_ids({**images, "instance": IMAGE})
    key = hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()[:16]
    storage = CACHE / key
    if (storage / ".complete").exists():
        return storage
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.iterdir():  # earlier images' registries: one set is enough
        if old.name != key:
            run("rm", "-rf", str(old), check=False)
    storage.mkdir(exist_ok=True)
    name = f"labbatch-rehearsal-registry-{uuid.uuid4().hex[:8]}"
    run("docker", "run", "-d", "--name", name, "-p", "127.0.0.1::5000", "-v", f"{storage}:{REGISTRY_ROOT}",
        IMAGE, "/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml")
    try:
        port = run("docker", "port", name, "5000/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        for repository, tag in images.items():
            remote = f"127.0.0.1:{port}/{repository}"
            run("docker", "tag", tag, remote)
            for attempt in range(50):  # the registry takes a moment to listen
                pushed = run("docker", "push", remote, check=False, timeout=600)
                if pushed.returncode == 0:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"could not push {tag}: {pushed.stderr[-500:]}")
            run("docker", "rmi", remote, check=False)
    finally:
        run("docker", "rm", "-f", name, check=False)
    (storage / ".complete").write_text(json.dumps(ids) + "\n")
    return storage


def bridge_gateway() -> str:
    return run("docker", "network", "inspect", "bridge", "--format",
               "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tasks").mkdir(parents=True, exist_ok=True)
        (root / "results").mkdir(parents=True, exist_ok=True)

    def hand(self, body: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex[:12]
        partial = self.root / f".{task_id}.json"
        partial.write_text(json.dumps(body))
        partial.rename(self.root / "tasks" / f"{task_id}.json")
        return task_id

    def result(self, task_id: str, timeout: float) -> dict[str, Any]:
        path = self.root / "results" / f"{task_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id}: no result within {timeout} s")
            time.sleep(0.5)
        result = json.loads(path.read_text())
        log = path.with_suffix(".log")
        result["log"] = log.read_text() if log.exists() else ""
        return result

    def drain(self) -> None:
        (self.root / "drain").write_text("spot interruption notice\n")


def deployed_definitions(compute_template: dict, images: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each synthesized job definition as RegisterJobDefinition's request, its image what the
    deploy would give it: a CDK asset (the demo image) or a lab's image name, mapped by `images`
    (`"demo"` for the asset) onto the instance's registry."""
    found = {}
    for resource in compute_template["Resources"].values():
        if resource["Type"] != "AWS::Batch::JobDefinition":
            continue
        request = definition_from_template(resource["Properties"])
        image = request["containerProperties"]["image"]
        key = "demo" if isinstance(image, dict) and ".dkr.ecr." in image.get("Fn::Sub", "") else image
        if key in images:
            request["containerProperties"]["image"] = images[key]
            found[request["jobDefinitionName"]] = request
    return found


def agent_environment(endpoint: str) -> dict[str, str]:
    """What the agent gives every job besides Batch's variables: the S3 endpoint stand-in and the
    job role's credentials (as environment keys until the credentials endpoint stands in)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def wait_for_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.5)
    return False

