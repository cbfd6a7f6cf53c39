"""app.py as `cdk synth` runs it: every lab, one lab with -c lab=NAME, and a bad lab refused whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_app(tmp_path: Path, context: dict) -> subprocess.CompletedProcess:
    out = tmp_path / "cdk.out"
    cdk_json = json.loads((ROOT / "cdk.json").read_text())["context"]
    env = dict(os.environ, CDK_OUTDIR=str(out), CDK_CONTEXT_JSON=json.dumps({**cdk_json, **context}))
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{env['PATH']}"
    for key in [k for k in env if k.startswith("AWS_")]:
        del env[key]  # synth must need no credentials
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_one_lab_synthesizes_offline_with_no_lookups(tmp_path):
    result = run_app(tmp_path, {"lab": "genomics-core"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    stacks = sorted(k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack")
    assert stacks == ["LabBatch-genomics-core-Api", "LabBatch-genomics-core-Compute",
                      "LabBatch-genomics-core-Operations", "LabBatch-genomics-core-Storage"]
    assert "missing" not in manifest  # no context lookups were needed
    assert manifest["artifacts"]["LabBatch-genomics-core-Storage"]["properties"]["terminationProtection"] is True
    assert manifest["artifacts"]["LabBatch-genomics-core-Compute"]["environment"] == "aws://111122223333/eu-west-1"


def test_a_bad_lab_file_fails_synth_listing_every_problem(tmp_path):
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "ok.yaml").write_text("name: ok\npipelines: {p: {image: demo, command: [x]}}\n")
    (labs / "bad.yaml").write_text("name: bad\nnetwork: {mode: vpn}\npipelines: {p: {command: [x], vcpus: -1}}\n")
    result = run_app(tmp_path, {"labs_dir": str(labs)})
    assert result.returncode == 1
    lines = [l.strip() for l in result.stderr.splitlines() if l.strip().startswith(str(labs))]
    assert len(lines) == 3, result.stderr
    assert any(f"{labs}/bad.yaml: network.mode:" in l for l in lines)
    assert any(f"{labs}/bad.yaml: pipelines.p.image: required but missing" in l for l in lines)
    assert any(f"{labs}/bad.yaml: pipelines.p.vcpus:" in l and "(allowed: 1-192)" in l for l in lines)
    assert not (tmp_path / "cdk.out" / "manifest.json").exists()
