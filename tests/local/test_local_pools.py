"""Pools in local mode, without starting a lab: every pool's environments and queues register with
the executor, a GPU pool gives GPUs only when the engine has an NVIDIA runtime, and then a GPU
job's container gets `--gpus` (Docker) or the CDI device nvidia.com/gpu=all (Podman). End to end: tests/e2e/test_local_pools.py."""

from __future__ import annotations

from types import SimpleNamespace

from labbatch.lab.batch_layout import layout
from labbatch.lab.loader import parse_lab
from labbatch.local import lab as local_lab
from labbatch.local.batch.registration import registration
from labbatch.local.docker_runner import ContainerRunner, nvidia_runtime
from labbatch_contract import batch_container
from tests.cdk.conftest import pools_data

LAB = parse_lab(pools_data(), "pools.yaml")
EMULATED = SimpleNamespace(account="123456789012", region="us-east-1")


def test_every_pools_environments_and_queues_register_with_the_executor():
    registered = registration(layout(LAB), LAB.name)
    assert sorted(e.name for e in registered["compute_environments"]) == [
        "labbatch-pools-gpu-on-demand", "labbatch-pools-gpu-spot", "labbatch-pools-highmem-on-demand",
        "labbatch-pools-on-demand", "labbatch-pools-spot"]
    queues = {q.name: q.compute_environments for q in registered["queues"]}
    # A pool's spot queue falls back to its own on-demand environment only.
    assert queues["labbatch-pools-gpu-spot"] == ("labbatch-pools-gpu-spot", "labbatch-pools-gpu-on-demand")
    assert queues["labbatch-pools-highmem-spot"] == ("labbatch-pools-highmem-on-demand",)
    assert {d.name: d.gpus for d in registered["job_definitions"]}["labbatch-pools-basecall"] == 1


def test_a_gpu_pool_gives_no_gpu_without_an_nvidia_runtime_and_says_what_it_would(monkeypatch):
    monkeypatch.setattr(local_lab.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(local_lab, "machine_memory_mib", lambda: 8192)

    without = local_lab.local_settings(LAB, EMULATED, gpus=False)["pools"]
    assert (without["gpu"]["limits"]["max_gpus"], without["gpu"]["limits"]["lab_max_gpus"]) == (0, 4)
    assert without["gpu"]["queue_max_vcpus"] == {"spot": 2, "on-demand": 2}  # this machine's cores
    assert "max_gpus" not in without["highmem"]["limits"]

    with_gpus = local_lab.local_settings(LAB, EMULATED, gpus=True)["pools"]
    assert with_gpus["gpu"]["limits"]["max_gpus"] == 4 and "lab_max_gpus" not in with_gpus["gpu"]["limits"]


def test_a_gpu_jobs_container_gets_its_gpus(tmp_path):
    # As the ECS agent starts it: the definition's GPU requirement (labbatch_contract.batch_container).
    definitions = {d.name: d for d in registration(layout(LAB), LAB.name)["job_definitions"]}
    runner = ContainerRunner("docker", tmp_path / "tree")

    def argv(name: str) -> list[str]:
        container = batch_container.container_for(definitions[name].request())
        return runner.spec(container, scratch=tmp_path / "attempt", name="labbatch-j-1-a1").create_argv

    gpu = argv("labbatch-pools-basecall")
    assert gpu[gpu.index("--gpus") + 1] == "1"
    assert "--gpus" not in argv("labbatch-pools-align")


def _engine(tmp_path, name: str, runtimes: str) -> str:
    engine = tmp_path / name
    engine.write_text(f"#!/bin/sh\n[ \"$1\" = info ] && echo '{runtimes}' && exit 0\nexit 1\n")
    engine.chmod(0o755)
    return str(engine)


def test_the_nvidia_runtime_is_read_from_docker_info(tmp_path):
    assert nvidia_runtime(_engine(tmp_path, "docker", '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}'))
    (tmp_path / "plain").mkdir()
    assert not nvidia_runtime(_engine(tmp_path / "plain", "docker", '{"runc":{"path":"runc"}}'))
    assert not nvidia_runtime(None)


# What `nvidia-ctk cdi generate` writes (abridged): the spec Podman hands GPUs out from.
NVIDIA_CDI_SPEC = """cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
"""


def test_podman_gives_gpus_when_a_cdi_spec_names_nvidia_gpus(tmp_path):
    # Podman has no nvidia runtime to list: an `nvidia` key in its info proves nothing.
    podman = _engine(tmp_path, "podman", '{"nvidia":{}}')
    etc_cdi, run_cdi = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    etc_cdi.mkdir()
    assert not nvidia_runtime(podman, cdi_dirs=(etc_cdi, run_cdi))
    (etc_cdi / "intel.yaml").write_text("cdiVersion: 0.5.0\nkind: intel.com/gpu\n")
    assert not nvidia_runtime(podman, cdi_dirs=(etc_cdi, run_cdi))
    (etc_cdi / "nvidia.yaml").write_text(NVIDIA_CDI_SPEC)
    assert nvidia_runtime(podman, cdi_dirs=(etc_cdi, run_cdi))
    # Docker's answer stays its runtimes', whatever CDI specs lie around.
    assert not nvidia_runtime(_engine(tmp_path / "etc-cdi", "docker", '{"runc":{}}'), cdi_dirs=(etc_cdi,))


def test_a_gpu_jobs_container_under_podman_gets_the_cdi_device(tmp_path):
    definitions = {d.name: d for d in registration(layout(LAB), LAB.name)["job_definitions"]}
    container = batch_container.container_for(definitions["labbatch-pools-basecall"].request())

    argv = ContainerRunner("podman", tmp_path / "tree").spec(
        container, scratch=tmp_path / "attempt", name="labbatch-j-1-a1").create_argv

    assert argv[argv.index("--device") + 1] == "nvidia.com/gpu=all" and "--gpus" not in argv
