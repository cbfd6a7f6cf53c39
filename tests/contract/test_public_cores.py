"""Cores are shared through public names: no module reaches into another's private ones.

TES was first attached to the job path through private doors (`from submission import
_submit_failed`, `from .job import _publish`, `from .run import _pump, _signal_group, _stop`);
what two paths share is now a public function of a module of its own (the runner's attempt
lifecycle in labbatch_runner/attempt.py, the API's failed-submission record in submission.py).
This keeps it so.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_FOLDERS = ("lambda", "containers", "labbatch", "labbatch_contract", "lab_constructs", "stacks", "bench")


def _tracked_sources() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--", *RUNTIME_FOLDERS], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return [ROOT / name for name in listed if name.endswith(".py")]


def private_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
    return found


def test_the_check_sees_a_private_import_and_passes_a_public_one():
    assert private_imports("from submission import _submit_failed\n") == ["line 1: from submission import _submit_failed"]
    assert private_imports("def f():\n    from .job import _publish\n") == ["line 2: from .job import _publish"]
    assert private_imports("from .attempt import conclude, publish_attempt\nfrom x import __version__\n") == []


def test_no_module_imports_another_modules_private_names():
    offenders = {str(path.relative_to(ROOT)): found for path in _tracked_sources()
                 if (found := private_imports(path.read_text()))}
    assert offenders == {}
