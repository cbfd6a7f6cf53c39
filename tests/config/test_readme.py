"""The README states what the repository does and holds, and needs nothing outside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from labbatch.loader import parse_lab
from labbatch.local.command import local_arguments

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_points_only_into_the_repository():
    assert "../" not in README and "design card" not in README and "shared/design" not in README
    tops = {p.name for p in ROOT.iterdir()}
    named = {token for token in re.findall(r"`([^`\s<>~]+/[^`\s<>]*)`", README) if token.split("/")[0] in tops}
    assert named, "the README names no repository paths?"
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_the_local_usage_line_matches_the_command():
    parser = argparse.ArgumentParser()
    local_arguments(parser)
    assert parser.parse_args([]).port == 0  # any free port
    usage = next(line for line in README.splitlines() if line.startswith(".venv/bin/labbatch local "))
    assert "[--port PORT]" in usage and "8080" not in README
    for option in re.findall(r"--[a-z-]+", usage):
        assert option in parser._option_string_actions, option


def test_the_tags_row_says_which_keys_are_reserved_as_the_model_refuses_them():
    row = next(line for line in README.splitlines() if line.startswith("| `tags` |"))
    assert "`aws:` and `labbatch:` keys are reserved" in row
    for key in ("aws:team", "labbatch:team"):
        try:
            parse_lab({"name": "tiny", "tags": {key: "x"},
                       "pipelines": {"p": {"image": "demo", "command": ["true"]}}}, "tiny.yaml")
        except Exception as error:  # noqa: BLE001 - LabConfigError, whatever its module
            assert "reserved" in str(error)
        else:
            raise AssertionError(f"tag {key} was accepted")
