"""Where a TES task's absolute paths live: homes on scratch for its top-level directories (a
temporary directory stands in for the image's /), and the host executor's /tmp-only rule.

The homes in a real image, with the runner mounted: tests/containers/test_tes_paths_in_container.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path, PurePosixPath

import pytest

from labbatch_runner.errors import ExitCode, RunnerError
from labbatch_runner.runlog import RunnerLog
from labbatch_runner.tes_paths import (check_absolute, check_host_paths, give_homes, placement,
                                       top_directories)
from tests.runner.conftest import RESULTS


def _task(**parts) -> dict:
    return {"executors": [{"command": ["true"]}], **parts}


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """A stand-in for an image's /: /usr with files, an empty /tmp (1777) and /mnt (0750), /etc,
    and the runner's tree under /opt."""
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    for name, mode in (("tmp", 0o1777), ("mnt", 0o750)):
        (root / name).mkdir()
        os.chmod(root / name, mode)
    (root / "etc").mkdir()
    (root / "opt" / "labbatch" / "runner").mkdir(parents=True)
    return root


def test_top_directories_are_the_first_directory_of_every_path_the_task_names():
    task = {"inputs": [{"path": "/in/ref.fa"}, {"path": "/top.fa"}, {"path": "/reads/run1", "type": "DIRECTORY"}],
            "outputs": [{"path": "/out/deep/x.bam"}, {"path": "/*.txt"}, {"path": "/res/*/y.txt"}],
            "volumes": ["/vol"],
            "executors": [{"command": ["x"], "workdir": "/wd", "stdout": "/logs/o.txt", "stdin": "/in2/i.txt"}]}
    assert top_directories(task, PurePosixPath("/")) == {"in", "reads", "out", "res", "vol", "wd", "logs", "in2"}


def test_homes_on_scratch_for_missing_and_empty_directories_and_none_for_the_images_own(image_root, tmp_path):
    homes = tmp_path / "scratch" / "attempt" / "root"
    task = {"inputs": [{"path": f"{image_root}/data/in/x.fa"}, {"path": f"{image_root}/etc/x.conf"}],
            "outputs": [{"path": f"{image_root}/mnt/out.bam"}, {"path": f"{image_root}/usr/local/out.txt"},
                        {"path": f"{image_root}/opt/labbatch/runner/x"}],
            "executors": [{"command": ["x"], "workdir": f"{image_root}/work"}]}
    log = RunnerLog()
    given = give_homes(task, root=image_root, homes=homes, keep=(image_root / "opt" / "labbatch" / "runner",),
                       log=log)

    assert sorted(given) == ["data", "mnt", "tmp", "work"]
    for name in given:
        assert (image_root / name).is_symlink() and (image_root / name).resolve() == homes / name
        assert (homes / name).is_dir()
    # An empty directory of the image keeps its mode (and /tmp its sticky bit) on scratch.
    assert stat.S_IMODE((homes / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((homes / "mnt").stat().st_mode) == 0o750
    # What holds the image's files, the runner's tree and /etc stay as they were.
    assert not (image_root / "usr").is_symlink() and (image_root / "usr" / "bin" / "tool").is_file()
    assert not (image_root / "opt").is_symlink() and not (image_root / "etc").is_symlink()
    assert f"task directory {image_root}/usr holds the image's files" in log.text()
    assert "writes there go to the image's layer" in log.text()
    # A file written through the link is on scratch.
    (image_root / "data" / "in").mkdir()
    (image_root / "data" / "in" / "x.fa").write_text(">x\n")
    assert (homes / "data" / "in" / "x.fa").read_text() == ">x\n"


def test_a_tmp_the_image_lacks_is_created_sticky_and_a_dangling_link_is_replaced(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").symlink_to(tmp_path / "gone")  # a previous attempt's home, removed with it
    homes = tmp_path / "homes"
    given = give_homes(_task(inputs=[{"path": f"{root}/data/x"}]), root=root, homes=homes, keep=(),
                       log=RunnerLog())
    assert sorted(given) == ["data", "tmp"]
    assert (root / "data").resolve() == homes / "data"
    assert stat.S_IMODE((homes / "tmp").stat().st_mode) == 0o1777


def test_a_link_or_a_mount_of_the_image_is_left_alone(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr
    log = RunnerLog()
    given = give_homes(_task(outputs=[{"path": f"{root}/lib/x.so"}]), root=root, homes=tmp_path / "h",
                       keep=(), log=log)
    assert sorted(given) == ["tmp"]
    assert os.readlink(root / "lib") == "usr/lib"
    assert f"task directory {root}/lib is a link in the image" in log.text()


def test_host_executor_refuses_every_path_outside_tmp_naming_each(tmp_path):
    task = {"inputs": [{"path": "/tmp/x.sh"}, {"path": "/data/x"}],
            "outputs": [{"path": "/tmp/out/*.txt"}, {"path": "/results/y.bam"}],
            "executors": [{"command": ["x"], "workdir": "/tmp"}, {"command": ["y"], "stdout": "/var/log/y"}]}
    with pytest.raises(RunnerError) as refused:
        check_host_paths(task, tmp_path)
    assert refused.value.code == ExitCode.CONTRACT
    message = str(refused.value)
    assert "inputs[1].path '/data/x'" in message and "outputs[1].path '/results/y.bam'" in message
    assert "executors[1].stdout '/var/log/y'" in message and "without --no-containers" in message
    assert "/tmp/x.sh" not in message and "'/tmp'" not in message
    # /tmp itself, under it, and under the runner's scratch are the task's.
    check_host_paths({"inputs": [{"path": "/tmp/a"}, {"path": f"{tmp_path}/b"}],
                      "executors": [{"command": ["x"], "workdir": "/tmp"}]}, tmp_path)
    with pytest.raises(RunnerError):
        check_host_paths({"executors": [{"command": ["x"], "workdir": "/tmpfoo"}]}, tmp_path)


def test_every_path_a_task_names_must_be_absolute():
    check_absolute({"executors": [{"command": ["x"], "workdir": "/tmp", "stdout": "/tmp/o"}]})
    for executor in ({"workdir": "tmp"}, {"stdout": "out.txt"}, {"stderr": "/tmp/../etc/x"}):
        with pytest.raises(RunnerError) as refused:
            check_absolute({"executors": [{"command": ["x"], **executor}]})
        assert list(executor.values())[0] in str(refused.value)


def test_a_host_runner_without_a_private_tmp_refuses_tes_tasks():
    with pytest.raises(RunnerError) as refused:
        placement({})
    assert "private /tmp" in str(refused.value)
    # The variable alone is not enough: this process is still in its launcher's namespace.
    with pytest.raises(RunnerError) as refused:
        placement({"LABBATCH_TES_PRIVATE_TMP": os.readlink("/proc/self/ns/mnt")})
    assert "not a mount of this runner's own private mount namespace" in str(refused.value)
    assert placement({"LABBATCH_TES_ALLOW_HOST": "1"}) == "test"


# Writes files at the task's paths, then reports where each really is.
WHERE_TOOL = """
import json, os, sys
root = sys.argv[1]
for name in ("a.txt", "b.txt"):
    with open(f"{root}/data/out/{name}", "w") as f:
        f.write(name.upper())
with open(f"{root}/tmp/t.txt", "w") as f:
    f.write("t")
print(json.dumps({p: os.path.realpath(f"{root}/{p}") for p in ("data/out/a.txt", "tmp/t.txt", "data/in.txt")}))
"""


def test_task_paths_land_on_scratch_and_outputs_upload_through_the_links(lab, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    results = f"s3://{RESULTS}/tes/{lab.tag}"
    task = {"inputs": [{"path": f"{root}/data/in.txt", "content": "hello\n"}],
            "outputs": [{"path": f"{root}/data/out/a.txt", "url": f"{results}/a.txt"},
                        {"path": f"{root}/data/out/*.txt", "url": f"{results}/w/", "path_prefix": f"{root}/data/"},
                        {"path": f"{root}/data/out", "url": f"{results}/dir", "type": "DIRECTORY"},
                        {"path": f"{root}/data/where.json", "url": f"{results}/where.json"}],
            "executors": [{"command": ["mkdir", "-p", f"{root}/data/out"]},
                          {"command": [sys.executable, "-c", WHERE_TOOL, str(root)], "stdout": f"{root}/data/where.json"}]}
    env = lab.runner_env(inputs=[], LABBATCH_TES_TASK=json.dumps(task), LABBATCH_TES_ALLOW_HOST="1",
                         LABBATCH_TES_ROOT=str(root))
    result = lab.run([], env)
    assert result.returncode == 0, result.stderr

    def fetch(key: str) -> str:
        return lab.s3.get_object(Bucket=RESULTS, Key=f"tes/{lab.tag}/{key}")["Body"].read().decode()

    # Each file was, while the task ran, inside this attempt's directory on scratch.
    where = json.loads(fetch("where.json"))
    attempts = (lab.scratch / "labbatch" / lab.tag).resolve()
    assert sorted(where) == ["data/in.txt", "data/out/a.txt", "tmp/t.txt"]
    assert all(attempts in Path(path).parents for path in where.values()), where
    assert {fetch(k) for k in ("a.txt", "w/out/a.txt", "dir/a.txt")} == {"A.TXT"}
    assert fetch("w/out/b.txt") == fetch("dir/b.txt") == "B.TXT"
    manifest = lab.manifest()
    assert {o["url"]: o["path"] for o in manifest["tes"]["outputs"]}[f"{results}/w/out/b.txt"] == \
        f"{root}/data/out/b.txt"  # the path as the task names it, not where the link leads
    assert result.scratch_leftovers() == []


def test_output_directories_exist_before_the_executors_run_as_funnel_makes_them(lab, tmp_path):
    """A task written for Funnel writes into its outputs' directories without creating them."""
    root = tmp_path / "root"
    root.mkdir()
    results = f"s3://{RESULTS}/tes/{lab.tag}"
    writer = ("import sys; open(sys.argv[1], 'w').write('file'); open(sys.argv[2] + '/d.txt', 'w').write('dir')")
    task = {"outputs": [{"path": f"{root}/out/deep/x.txt", "url": f"{results}/x.txt"},
                        {"path": f"{root}/outdir/sub", "url": f"{results}/sub", "type": "DIRECTORY"},
                        {"path": f"{root}/glob/*/y.txt", "url": f"{results}/g/", "path_prefix": f"{root}/glob/"}],
            "executors": [{"command": [sys.executable, "-c", writer, f"{root}/out/deep/x.txt", f"{root}/outdir/sub"]}]}
    env = lab.runner_env(inputs=[], LABBATCH_TES_TASK=json.dumps(task), LABBATCH_TES_ALLOW_HOST="1",
                         LABBATCH_TES_ROOT=str(root))
    result = lab.run([], env)
    assert result.returncode == 0, result.stderr
    fetch = lambda key: lab.s3.get_object(Bucket=RESULTS, Key=f"tes/{lab.tag}/{key}")["Body"].read().decode()  # noqa: E731
    assert (fetch("x.txt"), fetch("sub/d.txt")) == ("file", "dir")
    assert not (root / "glob").exists() or not any((root / "glob").iterdir())  # a wildcard's is the task's to make
