"""Container engine, images and the extracted runner tree, shared by the container tests.

The images come from `make images` (containers/build_images.sh); these tests never build them.
Without an engine or an image the tests skip and say why, except under CI=true, where a
missing engine or image is a failure: .ci/run starts the engine and `make test` builds images.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labbatch.lab.batch_layout import RUNNER_LAUNCH as JOB_RUNNER_LAUNCH
from labbatch.lab.batch_layout import RUNNER_MOUNT  # noqa: F401  (the tests import it from here)
from labbatch.local.docker_runner import engine_answers
from labbatch.local.docker_runner import image_id as engine_image_id
from tests.genomics_data import BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE

DOCKER = os.environ.get("DOCKER", "docker")
BASE_IMAGE = "labbatch-base:bookworm"
RUNNER_IMAGE = "labbatch-runner:local"
DEMO_IMAGE = "labbatch-demo:local"
# BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE: stand-ins for the biocontainers images of
# labs/genomics-core.yaml, named in tests/genomics_data.py beside the data they run on.
IMAGES = (BASE_IMAGE, RUNNER_IMAGE, DEMO_IMAGE, BWA_IMAGE, SALMON_IMAGE, STAR_IMAGE)

# Where every job container gets the runner tree, read-only, and how its command starts the
# runner (the job shape's own constants), without the "--" that comes before a tool's argv.
RUNNER_LAUNCH = list(JOB_RUNNER_LAUNCH[:-1])

IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> None:
    """Skip, saying why; under CI a missing engine or image fails the test instead."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run starts the engine and `make test` builds the images)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, errors="replace", timeout=timeout, **kwargs)


def engine_available() -> bool:
    return engine_answers(DOCKER)


def image_id(image: str) -> str | None:
    return engine_image_id(DOCKER, image)


def image_path(image: str) -> str:
    """The PATH an image's config sets (what a container of it starts with)."""
    result = docker("image", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", image)
    for line in result.stdout.splitlines():
        if line.startswith("PATH="):
            return line.removeprefix("PATH=")
    raise AssertionError(f"{image} sets no PATH")


@pytest.fixture(scope="session")
def engine() -> str:
    if not engine_available():
        missing(f"no container engine answers ('{DOCKER} info' failed)")
    return DOCKER


@pytest.fixture(scope="session")
def images(engine: str) -> dict[str, str]:
    """Image name -> id, for every image `make images` builds."""
    ids = {image: image_id(image) for image in IMAGES}
    absent = [image for image, found in ids.items() if found is None]
    if absent:
        missing(f"image(s) {', '.join(absent)} not built (run `make images`)")
    return ids  # type: ignore[return-value]


@pytest.fixture(scope="session")
def runner_root(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner image's root filesystem, extracted once per image id, as instances do at boot.

    Shared by the xdist workers of one run (their base temp dirs share a parent), under a lock.
    """
    short = images[RUNNER_IMAGE].removeprefix("sha256:")[:12]
    shared = tmp_path_factory.getbasetemp().parent
    root = shared / f"runner-root-{short}"
    with open(shared / f"runner-root-{short}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".extracted").exists():
            partial = shared / f"runner-root-{short}.part"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            created = docker("create", RUNNER_IMAGE)
            assert created.returncode == 0, created.stderr
            container = created.stdout.strip()
            try:
                # What an instance does at boot; tar keeps the tree's relative links, modes, owners.
                exported = subprocess.Popen([DOCKER, "export", container], stdout=subprocess.PIPE)
                untar = subprocess.run(["tar", "-x", "-C", str(partial)], stdin=exported.stdout,
                                       capture_output=True, text=True, timeout=300)
                assert exported.wait() == 0 and untar.returncode == 0, untar.stderr
            finally:
                docker("rm", container)
            (partial / ".extracted").touch()
            partial.rename(root)
    return root


def run_in(image: str, argv: list[str], *, runner_root: Path | None = None, volumes: dict[Path, str] | None = None,
           env: dict[str, str] | None = None, network: str = "none", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` one command; with runner_root, the tree mounted read-only as in a job."""
    args = ["run", "--rm", "--network", network]
    if runner_root is not None:
        args += ["--volume", f"{runner_root}:{RUNNER_MOUNT}:ro"]
    for host, container in (volumes or {}).items():
        args += ["--volume", f"{host}:{container}"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    return docker(*args, image, *argv, timeout=timeout)


@dataclass(frozen=True)
class S3:
    client: Any
    endpoint: str


@pytest.fixture(scope="session")
def moto_s3() -> Any:
    """A loopback moto S3 for runner jobs in containers on the host network."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="lab-data")
    client.create_bucket(Bucket="lab-results")
    yield S3(client, endpoint)
    server.stop()
