"""`labbatch demo` as `make demo` runs it: its own lab name beside a running `labbatch local`
of the same lab, a clean stdout (no Lambda log lines, no folded ids or URIs), logs in the
file it names."""

from __future__ import annotations

import os
import re
import subprocess

from tests.e2e.conftest import LABBATCH, start_local


def test_demo_runs_beside_a_local_lab_with_a_clean_stdout(tmp_path):
    first = start_local(tmp_path)
    state_file = first.home / "local" / "example.json"
    try:
        before = state_file.read_text()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               "LABBATCH_HOME": str(first.home), "COLUMNS": "80"}
        demo = subprocess.run([LABBATCH, "demo", "--samples", "2", "--reads", "200"], capture_output=True,
                              text=True, timeout=240, env=env)

        assert demo.returncode == 0, demo.stdout + demo.stderr
        lines = demo.stdout.splitlines()
        assert "All results are right." in demo.stdout
        assert not [line for line in lines if line.lstrip().startswith("{")], demo.stdout
        log = first.home / "logs" / "demo.log"
        assert f"the Lambdas' logs go to {log}" in demo.stdout
        assert '"service":"labbatch-status"' in log.read_text() and '"Submitted to AWS Batch"' in log.read_text()
        ids = re.findall(r"\bj-[0-9a-z]+", demo.stdout)
        assert ids and all(len(i) == 28 for i in ids), ids  # never folded across lines
        assert re.search(r"s3://\S+/aligned\.bam", demo.stdout)
        # It ends with its report: one offline page, its path printed whole.
        report = first.home / "reports" / "demo.html"
        assert f"right-sizing in {report}" in demo.stdout
        page = report.read_text()
        assert '<script type="application/json" id="labbatch-report-data">' in page and "<script src" not in page

        # The demo ran as a lab of its own name: the running lab's state file is untouched.
        assert state_file.read_text() == before and not (first.home / "local" / "demo.json").exists()
        assert first.client().pipelines()
    finally:
        assert first.stop() == 0
