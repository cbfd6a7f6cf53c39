"""Snakemake 9 drives a local lab through its TES endpoint, as a scientist would run it: the host's
Snakemake (.venv-snakemake, `make engines`) with snakemake-executor-plugin-tes and
snakemake-storage-plugin-s3, started with exactly the argv and environment `labbatch engine-config
snakemake` prints, sends every rule job as a TES task; each task runs in labbatch-snakemake:local
(`make images`: the same Snakemake, pip pointed at wheels inside the image) with the runner
mounted, and reads and writes the workflow's files on the lab's S3 work prefix itself.

The workflow has three levels (per-sample counts, a summary of them) and one rule that fails on
purpose, run with --keep-going: the summary is compared with what this test computes from the
FASTA it wrote, and the failed rule's task is EXECUTOR_ERROR with the rule's own exit code.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tes
import yaml

from labbatch.local.batch.private_tmp import unshare_prefix
from tests.e2e.conftest import LABBATCH, ROOT, start_local
from tests.e2e.test_local_containers import require_engine_and_images

SNAKEMAKE_TAG = "labbatch-snakemake:local"
SNAKEMAKE = ROOT / ".venv-snakemake" / "bin" / "snakemake"
SAMPLES = ("alpha", "beta", "gamma")
BROKEN_EXIT = 7

SNAKEFILE = f"""
SAMPLES = {list(SAMPLES)!r}

rule all:
    input: "summary.tsv", "broken.txt"

rule count:
    input: "reads/{{sample}}.fa"
    output: "counts/{{sample}}.tsv"
    shell: "printf '%s\\\\t%s\\\\t%s\\\\n' {{wildcards.sample}} $(grep -c '>' {{input}}) $(grep -v '>' {{input}} | tr -d '\\\\n' | wc -c) > {{output}}"

rule summary:
    input: expand("counts/{{sample}}.tsv", sample=SAMPLES)
    output: "summary.tsv"
    shell: "cat {{input}} | sort > {{output}}"

rule broken:
    output: "broken.txt"
    shell: "echo failing on purpose >&2; exit {BROKEN_EXIT}"
"""


def require_snakemake() -> None:
    if SNAKEMAKE.exists():
        return
    message = f"{SNAKEMAKE} is missing (make engines)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def snakemake_lab_dir(tmp_path: Path) -> Path:
    labs = tmp_path / "snakemake-labs"
    labs.mkdir()
    data = yaml.safe_load((ROOT / "labs" / "example.yaml").read_text())
    data["tes"] = {"allowed_images": [SNAKEMAKE_TAG.split(":")[0] + ":"]}
    (labs / "example.yaml").write_text(yaml.safe_dump(data))
    return labs


def random_fasta(rng: random.Random) -> str:
    return "".join(f">read{i}\n" + "".join(rng.choice("ACGT") for _ in range(rng.randint(20, 300))) + "\n"
                   for i in range(rng.randint(2, 12)))


def put_samples(lab, key_prefix: str, *, seed: int) -> list[str]:
    """Each sample's random FASTA under the workflow's storage prefix; the summary lines expected of it."""
    rng = random.Random(seed)
    expected = []
    for sample in SAMPLES:
        fasta = random_fasta(rng)
        lab.put("results", f"{key_prefix}reads/{sample}.fa", fasta.encode())
        sequences = [block.split("\n", 1)[1].replace("\n", "") for block in fasta.split(">")[1:]]
        expected.append(f"{sample}\t{len(sequences)}\t{sum(map(len, sequences))}")
    return expected


@pytest.mark.parametrize("executor", ["containers", "host"])
def test_snakemake_runs_a_workflow_on_the_lab(tmp_path, executor):
    """In containers, each task runs in labbatch-snakemake:local. On the host executor (`labbatch
    local --no-containers`) each task runs on this machine with a private /tmp: its `python` and
    `pip` are the first on the lab's PATH, here .venv-snakemake's, and its pip install of the S3
    plugin uses this host's pip configuration."""
    require_snakemake()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}}
    if executor == "containers":
        require_engine_and_images(SNAKEMAKE_TAG)
    else:
        prefix, why = unshare_prefix(os.environ.get("PATH", os.defpath))
        if prefix is None:  # host TES tasks need a private /tmp (root, or user namespaces)
            (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"no private /tmp here: {why}")
        # Local mode puts its own interpreter's bin first unless PATH already has it: name both.
        env["PATH"] = os.pathsep.join([str(SNAKEMAKE.parent), str(Path(sys.executable).parent),
                                       env.get("PATH", os.defpath)])
    lab = start_local(tmp_path, labs_dir=snakemake_lab_dir(tmp_path), containers=executor == "containers", env=env)
    try:
        env["LABBATCH_HOME"] = str(lab.home)
        config = json.loads(subprocess.run([LABBATCH, "engine-config", "snakemake", "--lab", "example", "--json"],
                                           env=env, capture_output=True, text=True, check=True).stdout)
        prefix = config["command"][config["command"].index("--default-storage-prefix") + 1]
        results = lab.info["buckets"]["results"]
        assert prefix.startswith(f"s3://{results}/tes/")
        key_prefix = prefix[len(f"s3://{results}/"):].rstrip("/") + "/"

        expected = put_samples(lab, key_prefix, seed=1809)

        workdir = tmp_path / "workflow"
        workdir.mkdir()
        (workdir / "Snakefile").write_text(SNAKEFILE)
        argv = [str(SNAKEMAKE), *config["command"][1:], "--container-image", SNAKEMAKE_TAG, "--jobs", "4",
                "--keep-going", "--seconds-between-status-checks", "2"]
        run = subprocess.run(argv, cwd=workdir, env={**env, **config["env"]}, capture_output=True, text=True,
                             timeout=900)
        log = run.stdout + run.stderr
        assert run.returncode != 0, log  # the broken rule failed, and Snakemake says so
        assert "Error in rule broken" in log, log

        s3 = lab.s3()
        written = {o["Key"][len(key_prefix):] for o in
                   s3.list_objects_v2(Bucket=results, Prefix=key_prefix).get("Contents", [])}
        assert "summary.tsv" in written, log
        summary = s3.get_object(Bucket=results, Key=f"{key_prefix}summary.tsv")["Body"].read().decode()
        assert summary.splitlines() == sorted(expected), log
        assert "broken.txt" not in written

        client = tes.HTTPClient(lab.info["tes_endpoint"], token=lab.info["tes_token"], timeout=30)
        tasks = [client.get_task(t.id, view="FULL") for t in client.list_tasks(view="MINIMAL").tasks]
        by_rule = {}
        for task in tasks:
            by_rule.setdefault(task.name.split(".")[1], []).append(task)
        assert {rule: len(found) for rule, found in by_rule.items()} == {"count": 3, "summary": 1, "broken": 1}
        assert all(t.state == "COMPLETE" for rule in ("count", "summary") for t in by_rule[rule])
        (broken,) = by_rule["broken"]
        assert broken.state == "EXECUTOR_ERROR"
        (executor_log,) = broken.logs[0].logs
        # The executor is Snakemake inside the task: its own exit code, and the rule's in its output.
        assert executor_log.exit_code != 0
        assert f"exit status {BROKEN_EXIT}" in executor_log.stdout, executor_log.stdout
        assert all(t.executors[0].image == SNAKEMAKE_TAG for t in tasks)
        if executor == "host":
            assert not Path("/tmp/conda").exists()  # every task's `mkdir /tmp/conda` was in its own /tmp
    finally:
        assert lab.stop() == 0


GOOD_SNAKEFILE = SNAKEFILE.replace('input: "summary.tsv", "broken.txt"', 'input: "summary.tsv"')


def test_the_printed_snakemake_command_runs_as_printed_on_a_local_lab(tmp_path):
    """What a new user does: paste the two lines `labbatch engine-config snakemake` prints into a
    shell in the workflow's directory. Nothing added: the printed command must name an image local
    mode has (the plugin's default, snakemake/snakemake, is on no local engine)."""
    require_snakemake()
    require_engine_and_images(SNAKEMAKE_TAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # The user's shell has Snakemake's environment first on PATH (`make engines`).
    env["PATH"] = os.pathsep.join([str(SNAKEMAKE.parent), env.get("PATH", os.defpath)])
    lab = start_local(tmp_path, labs_dir=snakemake_lab_dir(tmp_path), containers=True, env=env)
    try:
        env["LABBATCH_HOME"] = str(lab.home)
        printed = subprocess.run([LABBATCH, "engine-config", "snakemake", "--lab", "example"], env=env,
                                 capture_output=True, text=True, check=True).stdout
        export, command = printed.strip().splitlines()[-2:]
        assert export.startswith("export ") and command.startswith("snakemake ")
        assert f"--container-image {SNAKEMAKE_TAG}" in command
        prefix = shlex.split(command)[shlex.split(command).index("--default-storage-prefix") + 1]
        results = lab.info["buckets"]["results"]
        key_prefix = prefix[len(f"s3://{results}/"):].rstrip("/") + "/"
        expected = put_samples(lab, key_prefix, seed=2811)
        workdir = tmp_path / "workflow"
        workdir.mkdir()
        (workdir / "Snakefile").write_text(GOOD_SNAKEFILE)

        run = subprocess.run(["bash", "-c", f"{export}\n{command}\n"], cwd=workdir, env=env, capture_output=True,
                             text=True, timeout=900)

        log = run.stdout + run.stderr
        assert run.returncode == 0, log
        summary = lab.s3().get_object(Bucket=results, Key=f"{key_prefix}summary.tsv")["Body"].read().decode()
        assert summary.splitlines() == sorted(expected), log
    finally:
        assert lab.stop() == 0
