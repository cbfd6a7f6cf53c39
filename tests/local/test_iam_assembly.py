"""The lab's synthesized templates are cached per lab settings and sources; stale entries go."""

from __future__ import annotations

import json
import os
import time

from labbatch.local.iam import assembly
from labbatch.lab.loader import load_lab
from tests.conftest import LABS_DIR


def test_a_cached_assembly_is_read_not_resynthesized_and_old_entries_of_the_lab_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv(assembly.CACHE_VARIABLE, str(tmp_path))
    lab = load_lab(LABS_DIR / "example.yaml")
    calls = []
    monkeypatch.setattr(assembly, "_synth", lambda name, document: calls.append(name) or {"LabBatch-x-Api": {"Resources": {}}})
    stale = tmp_path / "example-0000.json"
    stale.write_text("{}")
    old = time.time() - assembly.PRUNE_AFTER_SECONDS - 60
    os.utime(stale, (old, old))
    other_lab = tmp_path / "vault-0000.json"
    other_lab.write_text("{}")
    os.utime(other_lab, (old, old))

    first = assembly.templates(lab)
    second = assembly.templates(lab)

    assert calls == ["example"] and first == second == {"LabBatch-x-Api": {"Resources": {}}}
    assert not stale.exists() and other_lab.exists()
    [entry] = tmp_path.glob("example-*.json")
    assert json.loads(entry.read_text()) == first
