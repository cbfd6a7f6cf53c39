"""docs/local-mode.md's "Your first hour", command for command, against `labbatch local`: upload, submit
from a local path, wait, results, logs. The test computes what the results must say itself."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import LABBATCH, start_local
from tests.e2e.test_local_mode import assert_stats, fastq

ROOT = Path(__file__).resolve().parents[2]
READS = [("ACGTACGTAC", "IIIIIIIIII"), ("GGGCCCAATT", "#########I"), ("TTTTGGGGCCAA", "ABCDEFGHIJKL")]


def first_hour_commands() -> list[str]:
    """The `labbatch ...` lines of docs/local-mode.md's first-hour block, in order."""
    text = (ROOT / "docs" / "local-mode.md").read_text()
    section = text[text.index("## Your first hour"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("labbatch ")]


def test_the_docs_first_hour_runs_as_written(tmp_path):
    commands = first_hour_commands()
    assert [c.split()[1] for c in commands] == ["pipelines", "upload", "submit", "wait", "results", "logs"]
    lab = start_local(tmp_path)
    try:
        work = tmp_path / "work"
        (work / "reads").mkdir(parents=True)
        (work / "reads" / "sample-1.fastq.gz").write_bytes(gzip.compress(fastq(READS)))
        (work / "reads" / "sample-2.fastq.gz").write_bytes(gzip.compress(fastq(READS[:1])))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "LABBATCH_HOME": str(lab.home)}
        job_id = None
        outputs = {}
        for command in commands:
            argv = command.split()
            argv = [LABBATCH, *[job_id if word == "JOB" else word for word in argv[1:]]]
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs[argv[1]] = done.stdout + done.stderr
            if argv[1] == "submit":
                job_id = re.search(r"Submitted (j-[0-9a-z]{26})", done.stdout).group(1)
        assert "fastq-stats" in outputs["pipelines"]
        assert "first-hour/reads/sample-1.fastq.gz" in outputs["upload"]
        assert "uploaded reads/sample-1.fastq.gz" in outputs["submit"]
        assert_stats(json.loads((work / "results" / "stats.json").read_text()), READS)
        assert "succeeded" in outputs["logs"]
    finally:
        assert lab.stop() == 0
