"""GA4GH TES tasks on the host executor (`labbatch local --no-containers`), through py-tes: each
task runs in a private mount namespace whose /tmp is its own, as Snakemake's tasks need (script at
/tmp/..., workdir /tmp, `mkdir /tmp/conda`), and a task path outside /tmp is refused by name.

Needs `unshare` (util-linux) that can mount here (root, or user namespaces): skips without,
fails under CI=true. The task's image is not used on the host, but must be one the lab allows.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import pytest
import tes

from labbatch.local.batch.private_tmp import unshare_prefix

from tests.e2e.conftest import start_local
from tests.e2e.test_tes_local import tes_labs_dir, wait
from tests.e2e.test_local_containers import BWA_TAG

# Snakemake's task shape: a script in /tmp that makes /tmp/conda (failing if it is there: a /tmp
# left by another task), reads a staged input and writes its outputs, all under /tmp.
SCRIPT = """set -euo pipefail
mkdir /tmp/conda
echo "$TASK_MARK" > /tmp/conda/{mark}
cd /tmp
mkdir out
if [ -e /tmp/{host_file} ]; then echo "host /tmp visible" > out/hidden.txt; else echo "host /tmp hidden" > out/hidden.txt; fi
sort -n /tmp/in-{mark}/numbers.txt | tail -n 1 > out/max.txt
ls -A /tmp/conda > out/conda.txt
"""


@pytest.fixture(scope="module")
def host_tes_lab(tmp_path_factory):
    prefix, why = unshare_prefix(os.environ.get("PATH", os.defpath))
    if prefix is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no private /tmp for host TES tasks here: {why}")
        pytest.skip(f"no private /tmp for host TES tasks here: {why}")
    tmp = tmp_path_factory.mktemp("tes-host")
    lab = start_local(tmp, labs_dir=tes_labs_dir(tmp), containers=False)
    assert lab.info["executor"] == "host"
    yield lab
    assert lab.stop() == 0


def client(lab) -> tes.HTTPClient:
    return tes.HTTPClient(lab.info["tes_endpoint"], token=lab.info["tes_token"], timeout=30)


def test_snakemake_shaped_tasks_each_get_a_fresh_private_tmp(host_tes_lab):
    mark = uuid.uuid4().hex
    host_file = f"labbatch-e2e-host-{mark}"
    script_path = f"/tmp/run-{mark}.sh"
    host_tmp = Path("/tmp") / host_file
    host_tmp.write_text("on the host\n")
    rng = random.Random(7)
    numbers = [rng.randint(1, 10**6) for _ in range(50)]
    numbers_uri = host_tes_lab.put("inputs", f"tes-host/{mark}/numbers.txt",
                                   "".join(f"{n}\n" for n in numbers).encode())
    results = host_tes_lab.info["buckets"]["results"]
    cli = client(host_tes_lab)
    try:
        for run in ("first", "second"):
            task_id = cli.create_task(tes.Task(
                name=f"tes-host-{run}",
                inputs=[tes.Input(content=SCRIPT.format(mark=mark, host_file=host_file), path=script_path),
                        tes.Input(url=numbers_uri, path=f"/tmp/in-{mark}/numbers.txt")],
                outputs=[tes.Output(url=f"s3://{results}/tes/host/{mark}/{run}/", path="/tmp/out/*.txt",
                                    path_prefix="/tmp/out/")],
                executors=[tes.Executor(image=BWA_TAG, command=["/bin/bash", script_path], workdir="/tmp",
                                        env={"TASK_MARK": run})]))
            done = wait(cli, task_id)
            assert done.state == "COMPLETE", done.logs

            def result(name: str) -> str:
                key = f"tes/host/{mark}/{run}/{name}"
                return host_tes_lab.s3().get_object(Bucket=results, Key=key)["Body"].read().decode()

            assert result("max.txt") == f"{max(numbers)}\n"
            assert result("hidden.txt") == "host /tmp hidden\n"
            assert result("conda.txt") == f"{mark}\n"  # nothing of the first run's /tmp/conda
        # Nothing of either task reached the host's /tmp; the host's own file is still there.
        assert not any(Path(p).exists() for p in (script_path, f"/tmp/conda/{mark}", f"/tmp/in-{mark}"))
        assert host_tmp.read_text() == "on the host\n"
        # And the per-attempt /tmp on scratch went with its attempt.
        assert list(Path(host_tes_lab.info["scratch"]).glob("attempts/*")) == []
    finally:
        host_tmp.unlink()


def test_a_task_path_outside_tmp_is_refused_by_name(host_tes_lab):
    mark = uuid.uuid4().hex
    cli = client(host_tes_lab)
    task_id = cli.create_task(tes.Task(
        name="tes-host-data",
        inputs=[tes.Input(content="x\n", path=f"/data/{mark}/x")],
        executors=[tes.Executor(image=BWA_TAG, command=["/bin/cat", f"/data/{mark}/x"])]))
    done = wait(cli, task_id)
    assert done.state == "EXECUTOR_ERROR"  # the request's own fault: a retry cannot fix it
    system_logs = "\n".join(done.logs[0].system_logs)
    assert f"inputs[0].path '/data/{mark}/x': outside /tmp" in system_logs, system_logs
    assert "without --no-containers" in system_logs
    assert done.logs[0].logs == []  # no executor ran
    assert not Path("/data", mark).exists()
