"""The project's CDK app (app.py with cdk.json, stacks/ and lab_constructs/), run offline in a
subprocess to synthesize one lab's templates: what `labbatch cost` prices and what local mode's
strict IAM reads each principal's policies from.

Only a checkout has the app; an installed wheel carries the lab model, the client, local mode and
the Lambda packages, not the app (docs/local-mode.md). Synth needs no Docker, AWS credentials or
lookups, so nothing here may reach an account, real or emulated: AWS_* variables are dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
CONTEXT_FILE = ROOT / "cdk.json"
SYNTH_TIMEOUT_SECONDS = 300


class SynthFailed(RuntimeError):
    pass


def available() -> bool:
    return APP.is_file() and CONTEXT_FILE.is_file() and (ROOT / "stacks").is_dir()


def unavailable_reason() -> str:
    return (f"this installation has no CDK app ({APP} is missing: LabBatch runs from a wheel, not a checkout), "
            "so it cannot synthesize a lab's templates")


def synthesize(lab_name: str, labs_dir: Path, outdir: Path) -> None:
    """The lab's templates from its lab file in `labs_dir` as it is now, as `cdk synth` makes them
    (app.py with CDK_OUTDIR and cdk.json's context), into `outdir`."""
    if not available():
        raise SynthFailed(unavailable_reason())
    context = json.loads(CONTEXT_FILE.read_text()).get("context", {})
    context.update(lab=lab_name, labs_dir=str(labs_dir.resolve()))
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    # jsii runs on the pinned Node when the checkout has it (make setup), else on the machine's.
    env.update(CDK_OUTDIR=str(outdir), CDK_CONTEXT_JSON=json.dumps(context),
               PATH=os.pathsep.join([str(ROOT / "node_modules" / ".bin"), env.get("PATH", "")]))
    try:
        done = subprocess.run([sys.executable, str(APP)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=SYNTH_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SynthFailed(f"synthesizing lab {lab_name} took over {SYNTH_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-1500:]
        raise SynthFailed(f"synthesizing lab {lab_name} from {labs_dir} failed (exit {done.returncode}): {tail}")
