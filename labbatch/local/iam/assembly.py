"""The lab's synthesized templates, as `cdk synth` writes them, for local mode's IAM and event rules.

Local mode enforces the policies AWS will enforce, so it reads them from the cloud assembly, not
from our Python: the CDK app (app.py) runs once in a subprocess for this one lab and its templates
are cached under a key of the lab's settings and every source file that shapes a template. A
synth costs 7-10 s (jsii start-up); a cached start costs a file read. Synth needs no Docker, AWS
credentials or lookups (design.md, "Quality bars"), so this works wherever local mode does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from labbatch.lab import cdk_app
from labbatch.lab.config import Lab
from labbatch_contract.local_state import labbatch_home

# What decides a template: the app, its stacks and constructs, the config model they read, the
# Lambda code bundled as assets (its hash is in the templates), and cdk.json's feature flags.
TEMPLATE_SOURCES = ("app.py", "cdk.json", "stacks", "lab_constructs", "labbatch/lab", "labbatch_contract", "lambda")
CACHE_VARIABLE = "LABBATCH_ASSEMBLY_CACHE"
PRUNE_AFTER_SECONDS = 7 * 24 * 3600


def _source_digest() -> str:
    digest = hashlib.sha256()
    for name in TEMPLATE_SOURCES:
        path = cdk_app.ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                        and p.suffix in (".py", ".json", ".txt")
                                                        and "__pycache__" not in p.parts)
        for file in files:
            digest.update(str(file.relative_to(cdk_app.ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def lab_document(lab: Lab) -> dict:
    return lab.model_dump(mode="json", exclude_unset=True)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or labbatch_home() / "assemblies")


def templates(lab: Lab) -> dict[str, dict]:
    """Stack name -> template of this lab's stacks, synthesized once per lab settings and sources."""
    document = lab_document(lab)
    key = hashlib.sha256((json.dumps(document, sort_keys=True) + _source_digest()).encode()).hexdigest()[:32]
    cached = cache_dir() / f"{lab.name}-{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    found = _synth(lab.name, document)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(found))
    partial.replace(cached)  # atomic: a concurrent start reads a whole file or synthesizes itself
    _prune(cached)
    return found


def _prune(keep: Path) -> None:
    """Every source change makes a new entry: those of this lab unused for a week go."""
    for old in keep.parent.glob(f"{keep.name.rsplit('-', 1)[0]}-*.json"):
        try:
            if old != keep and time.time() - old.stat().st_atime > PRUNE_AFTER_SECONDS:
                old.unlink()
        except OSError:
            pass  # another start pruned it first


def _synth(name: str, document: dict) -> dict[str, dict]:
    work = Path(tempfile.mkdtemp(prefix="labbatch-synth-"))
    try:
        labs = work / "labs"
        labs.mkdir()
        (labs / f"{name}.yaml").write_text(yaml.safe_dump(document))
        cdk_app.synthesize(name, labs, work / "out")
        return {path.name.removesuffix(".template.json"): json.loads(path.read_text())
                for path in sorted((work / "out").glob("*.template.json"))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
