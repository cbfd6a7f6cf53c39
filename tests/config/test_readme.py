"""The README and the docs pages state what the repository does and holds, and need nothing
outside it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from labbatch.lab.loader import parse_lab
from labbatch.local.command import local_arguments

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LOCAL_MODE = (ROOT / "docs" / "local-mode.md").read_text()
LAB_CONFIGURATION = (ROOT / "docs" / "lab-configuration.md").read_text()


def named_paths(text: str) -> set[str]:
    tops = {p.name for p in ROOT.iterdir()}
    return {token for token in re.findall(r"`([^`\s<>~]+/[^`\s<>]*)`", text) if token.split("/")[0] in tops}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_readme_and_every_docs_page_point_only_into_the_repository(page):
    text = page.read_text()
    assert "../" not in text and "design card" not in text and "shared/design" not in text
    named = named_paths(text)
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_the_readme_and_the_docs_name_repository_paths():
    assert named_paths(PAGES[0].read_text()), "the README names no repository paths?"
    assert set().union(*(named_paths(page.read_text()) for page in PAGES[1:])), "the docs name no repository paths?"


def test_the_local_usage_line_matches_the_command():
    parser = argparse.ArgumentParser()
    local_arguments(parser)
    assert parser.parse_args([]).port == 0  # any free port
    usage = next(line for line in LOCAL_MODE.splitlines() if line.startswith(".venv/bin/labbatch local "))
    assert "[--port PORT]" in usage and "8080" not in LOCAL_MODE
    for option in re.findall(r"--[a-z-]+", usage):
        assert option in parser._option_string_actions, option


def test_the_tags_row_says_which_keys_are_reserved_as_the_model_refuses_them():
    row = next(line for line in LAB_CONFIGURATION.splitlines() if line.startswith("| `tags` |"))
    assert "`aws:` and `labbatch:` keys are reserved" in row
    for key in ("aws:team", "labbatch:team"):
        try:
            parse_lab({"name": "tiny", "tags": {key: "x"},
                       "pipelines": {"p": {"image": "demo", "command": ["true"]}}}, "tiny.yaml")
        except Exception as error:  # noqa: BLE001 - LabConfigError, whatever its module
            assert "reserved" in str(error)
        else:
            raise AssertionError(f"tag {key} was accepted")
