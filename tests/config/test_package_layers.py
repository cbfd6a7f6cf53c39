"""The packages keep to their layers, read from every import statement of the tree (top-level and
inside functions), so that what one side needs never drags in another:

- the CDK app (app.py, stacks/, lab_constructs/) reads the lab model (`labbatch.lab`) and the
  contract, nothing else of LabBatch, and no Lambda or runner code;
- the lab model imports neither the client nor local mode;
- local mode never imports the client, and the client never imports local mode (the `labbatch`
  command loads `labbatch local` and `demo` by name, when they run), but for the one crossing
  named in CROSSINGS;
- the Lambda packages import the contract and themselves only, never LabBatch or CDK;
- the runner imports the contract and itself only.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_PACKAGES = ("labbatch_api", "labbatch_status", "labbatch_authorizer")
OURS = ("labbatch", "labbatch_contract", "labbatch_runner", "labbatch_pipelines", "lab_constructs", "stacks",
        "aws_cdk", "constructs", "cdk_nag", *LAMBDA_PACKAGES)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports that is ours (or CDK's), by its full dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def _files(*places: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *places], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in listed.stdout.decode().split("\0") if p.endswith(".py") and (ROOT / p).is_file()]


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


# The one crossing, and why: a local lab's doctor asks this machine's container engine whether it
# holds each pipeline's image, as that lab's executor will when a job starts.
CROSSINGS = {("labbatch/client/doctor.py", "labbatch.local.docker_runner")}


def _breaches(places: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)} imports {name}"
                  for path in _files(*places) for name in _imports(path) if not _allowed(name, allowed)
                  and not any(str(path.relative_to(ROOT)) == where and _allowed(name, (crossing,))
                              for where, crossing in CROSSINGS))


LAYERS = {
    "the CDK app": (("app.py", "stacks", "lab_constructs"),
                    ("aws_cdk", "constructs", "cdk_nag", "stacks", "lab_constructs", "labbatch.lab",
                     "labbatch_contract")),
    "the lab model": (("labbatch/lab",), ("labbatch.lab", "labbatch_contract")),
    "local mode": (("labbatch/local",), ("labbatch.local", "labbatch.lab", "labbatch.error_line", "labbatch_contract",
                                         "labbatch_runner", *LAMBDA_PACKAGES)),
    "the client": (("labbatch/client",), ("labbatch.client", "labbatch.lab", "labbatch.error_line",
                                          "labbatch_contract")),
    "the Lambda packages": (("lambda",), ("labbatch_contract", *LAMBDA_PACKAGES)),
    "the runner": (("containers/runner",), ("labbatch_runner", "labbatch_contract")),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_it_may(layer):
    places, allowed = LAYERS[layer]
    assert _breaches(places, allowed) == []


def test_each_lambda_package_imports_only_itself_and_the_contract():
    for package in LAMBDA_PACKAGES:
        assert _breaches((f"lambda/{package}",), (package, "labbatch_contract")) == [], package


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from labbatch.client.sdk import LabBatchClient\n"
                      "    import labbatch.local.lab\n")
    assert _imports(sample) == {"labbatch.client.sdk", "labbatch.client.sdk.LabBatchClient", "labbatch.local.lab"}
