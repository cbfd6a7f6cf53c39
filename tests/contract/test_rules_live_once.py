"""A rule that crosses a process boundary is spelled once, in labbatch_contract.

Each copy of such a rule is a line or two (a failure class returned as a literal, `f"{prefix}manifest.json"`,
`64 <= exit_code <= 70`), too short for a duplicate finder to see, and two copies drift apart
silently: the runner renames a log and `labbatch logs` shows nothing. So this scans the project's
Python outside labbatch_contract/ and tests/ for the contract's constants written as literals
where they are used as such: the failure classes, the runner's phases, its manifest and log
names, the manifest's fields (read from anything called a manifest, or the names only the
manifest has), and its exit codes next to an exit code.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from labbatch_contract import batch_reasons, failures, outcome
from labbatch_contract import manifest as manifests

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = ("labbatch_contract/", "tests/")
# Literals that look like a contract constant and are not one, each with why.
NOT_THE_CONTRACTS = {
    ("bench/synth.py", "manifest.json"): "the CDK cloud assembly's manifest.json, not the runner's",
    ("bench/report_scale.py", manifests.FAILED_PHASE): "a stand-in manifest in the runner's whole shape, "
                                                       "a benchmark's input like a test's fixture",
    ("bench/report_scale.py", manifests.OOM_KILLED): "the same stand-in manifest",
    ("bench/report_scale.py", manifests.PEAK_MEMORY_BYTES): "the same stand-in manifest",
    ("containers/instance/ecs_agent.py", manifests.OOM_KILLED): "the rehearsal agent's own report of Docker's "
                                                                "OOMKilled, not the runner's manifest",
}

FAILURE_CLASSES = frozenset(failures.FAILURE_CLASSES)
# Names nothing else in the project would be called: a literal anywhere is a copy.
DISTINCT_NAMES = frozenset(name for name in FAILURE_CLASSES | set(outcome.PHASES) if "_" in name)
FILE_NAMES = re.compile(r"(^|/)(" + "|".join(re.escape(name) for name in (
    outcome.MANIFEST_NAME, outcome.TOOL_LOG_NAME, outcome.RUNNER_LOG_NAME)) + r")$")
# Batch's words (and LabBatch's own cancel reason): a string that begins with one is a copy.
BATCH_WORDS = (batch_reasons.HOST_TERMINATED_PREFIX, batch_reasons.OUT_OF_MEMORY_PREFIX, *batch_reasons.INFRASTRUCTURE_PREFIXES,
               batch_reasons.TIMEOUT, batch_reasons.CONTAINER_EXITED, batch_reasons.ARRAY_CHILD_FAILED,
               batch_reasons.JOB_RESOURCE_REQUIREMENT, batch_reasons.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
               batch_reasons.INSUFFICIENT_INSTANCE_CAPACITY, batch_reasons.SERVICE_ROLE_PERMISSIONS,
               batch_reasons.API_CANCEL_PREFIX)
# The manifest's fields, by the names in labbatch_contract.manifest (all its lower-case constants).
MANIFEST_FIELDS = frozenset(value for name, value in vars(manifests).items()
                            if name.isupper() and isinstance(value, str) and value not in (manifests.SUCCEEDED,
                                                                                           manifests.FAILED))
MANIFEST_ONLY_FIELDS = frozenset({manifests.FAILED_PHASE, manifests.OOM_KILLED, manifests.PEAK_MEMORY_BYTES})
RUNNER_EXITS = frozenset(int(code) for code in outcome.ExitCode)
# 126, 127 and 130 are also every shell's (the CLI's own exit codes use 130 for Ctrl-C): as a
# constant they are only the runner's when compared with an exit code.
RUNNER_ONLY_EXITS = frozenset(outcome.RUNNER_RANGE) | {int(outcome.ExitCode.TERMINATED)}
EXIT_WORDS = re.compile(r"exit|returncode|\bcode\b|_code\b|runner", re.IGNORECASE)


def _python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", "*.py"], cwd=ROOT, capture_output=True, check=True)
    paths = [p for p in listed.stdout.decode().split("\0") if p]
    return [ROOT / p for p in paths if not p.startswith(SKIPPED) and (ROOT / p).is_file()
            and not (ROOT / p).resolve().is_relative_to(ROOT / "labbatch_contract")]


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _ints(node: ast.AST) -> list[int]:
    return [n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and type(n.value) is int]


class _Copies(ast.NodeVisitor):
    def __init__(self, source: str, relative: str) -> None:
        self.source, self.relative, self.found = source, relative, []

    def _text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ""

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.relative}:{node.lineno}: {what}: {self._text(node).strip()[:100]}")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if node.value in DISTINCT_NAMES:
                self._add(node, f"{node.value!r} (labbatch_contract.failures / .outcome)")
            elif FILE_NAMES.search(node.value) and (self.relative, node.value) not in NOT_THE_CONTRACTS:
                self._add(node, f"{node.value!r} (labbatch_contract.outcome)")
            elif node.value in MANIFEST_ONLY_FIELDS and (self.relative, node.value) not in NOT_THE_CONTRACTS:
                self._add(node, f"the manifest's field {node.value!r} (labbatch_contract.manifest)")
            elif node.value.startswith(BATCH_WORDS):
                self._add(node, f"Batch's words {node.value[:40]!r} (labbatch_contract.batch_reasons)")

    def visit_Return(self, node: ast.Return) -> None:
        if isinstance(node.value, ast.Constant) and node.value.value in FAILURE_CLASSES:
            self._add(node, "a failure class returned as a literal (labbatch_contract.failures)")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        text = self._text(node)
        if set(_strings(node)) & FAILURE_CLASSES and "failure" in text:
            self._add(node, "a failure class compared as a literal (labbatch_contract.failures)")
        if set(_strings(node)) & set(outcome.PHASES) and "phase" in text:
            self._add(node, "a runner phase compared as a literal (labbatch_contract.outcome)")
        if set(_ints(node)) & RUNNER_EXITS and EXIT_WORDS.search(text):
            self._add(node, "a runner exit code compared as a number (labbatch_contract.outcome.ExitCode)")
        self.generic_visit(node)

    def _assigned(self, node: ast.AST, targets: list[ast.AST], value: ast.AST | None) -> None:
        if value is None:
            return
        named = " ".join(self._text(t) for t in targets)
        if set(_ints(value)) & RUNNER_ONLY_EXITS and EXIT_WORDS.search(named):
            self._add(node, "a runner exit code assigned as a number (labbatch_contract.outcome.ExitCode)")
        if len(set(_strings(value)) & FAILURE_CLASSES) >= 2:
            self._add(node, "failure classes listed as literals (labbatch_contract.failures)")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assigned(node, node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned(node, [node.target], node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            if (isinstance(key, ast.Constant) and "failure" in str(key.value) and isinstance(value, ast.Constant)
                    and value.value in FAILURE_CLASSES):
                self._add(value, "a failure class written as a literal (labbatch_contract.failures)")
        self.generic_visit(node)

    def _manifest_field(self, node: ast.AST, receiver: ast.AST, key: ast.AST | None) -> None:
        if isinstance(key, ast.Constant) and key.value in MANIFEST_FIELDS - MANIFEST_ONLY_FIELDS \
                and "manifest" in self._text(receiver).lower():
            self._add(node, f"the manifest's field {key.value!r} read by its name (labbatch_contract.manifest)")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._manifest_field(node, node.value, node.slice)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            self._manifest_field(node, node.func.value, node.args[0])
        for keyword in node.keywords:
            if keyword.arg and EXIT_WORDS.search(keyword.arg) and set(_ints(keyword.value)) & RUNNER_ONLY_EXITS:
                self._add(keyword.value, "a runner exit code passed as a number (labbatch_contract.outcome.ExitCode)")
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if method in ("phase", "fail") and node.args and isinstance(node.args[0], ast.Constant) \
                and node.args[0].value in outcome.PHASES:
            self._add(node, "a runner phase written as a literal (labbatch_contract.outcome)")
        self.generic_visit(node)


def copies_in(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    finder = _Copies(source, path.relative_to(ROOT).as_posix())
    finder.visit(ast.parse(source, filename=str(path)))
    return finder.found


def test_no_contract_constant_is_written_out_again_outside_the_contract():
    found = [line for path in _python_files() for line in copies_in(path)]
    assert not found, "import these from labbatch_contract instead:\n" + "\n".join(found)


def test_the_scan_recognises_each_kind_of_copy(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def classify(exit_code, failure, phase, prefix):\n'
        '    if failure == "application" or phase == "stage_in":\n'
        '        return "out_of_scratch"\n'
        '    if 64 <= exit_code <= 70 or exit_code in (130, 143):\n'
        '        return "infrastructure"\n'
        '    return f"{prefix}manifest.json", prefix + "logs/tool.log"\n'
        'RUNNER_INFRASTRUCTURE = frozenset({67, 68, 69, 70})\n'
        'report.fail("run", "tool_failed", "x", 1)\n'
        'CLASSES = ("timeout", "cancelled")\n'
        'TIMEOUT_REASON = "Job attempt duration exceeded timeout"\n'
        'ok = manifest.get("status") == "succeeded" and not manifest["tool"]["oom_killed"]\n')
    finder = _Copies(sample.read_text(), "sample.py")
    finder.visit(ast.parse(sample.read_text()))
    lines = {int(found.split(":")[1]) for found in finder.found}
    assert lines == {2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
    assert sum(1 for found in finder.found if ":11:" in found) == 3  # status, tool, oom_killed


def test_the_scan_leaves_other_numbers_and_words_alone(tmp_path):
    source = ('MAX_PARAMETERS = 64\n'
              'EXIT_INTERRUPTED = 130  # the CLI\'s own Ctrl-C, a shell convention\n'
              'def f(cause, timeout):\n'
              '    if cause in ("terminated", "timeout"):\n'
              '        return "timeout"\n'
              'workers = 64\n'
              'print("verified against manifest.json")\n')
    finder = _Copies(source, "other.py")
    finder.visit(ast.parse(source))
    # A local executor's stop cause "timeout" is not a failure class; only the return is suspect.
    assert [int(found.split(":")[1]) for found in finder.found] == [5]
