"""The README is a front page and the docs site builds: strict, offline, every page in its nav.

`make test` is what CI runs, so this is where "CI builds the site strict" happens: a broken link,
a missing anchor, a page left out of the nav or a missing snippet fails the build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def nav_pages(nav) -> set[str]:
    """Every page file the nav names, however deep."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(nav_pages(value) for value in nav.values()))
    return set().union(*(nav_pages(item) for item in nav))


def test_the_site_builds_in_strict_mode(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "report.png").is_file()  # the Reports section's picture
    home = (tmp_path / "site" / "index.html").read_text()
    assert "make demo" in home and "--8&lt;--" not in home and "--8<--" not in home  # README's intro came in


def test_the_site_fetches_nothing_at_build():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    plugins = {next(iter(p)) if isinstance(p, dict) else p for p in config.get("plugins", [])}
    assert plugins <= {"search"}, plugins  # privacy, social and the like download at build time
    assert config["theme"].get("font") is False  # no web fonts from Google


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert nav_pages(config["nav"]) == pages


def test_the_readme_is_a_front_page_with_the_two_commands_first():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    headings = [m.start() for m in re.finditer(r"^#{1,6} ", readme, re.MULTILINE)]
    assert readme[headings[1]:].startswith("## The two commands")
    before_any_other_section = readme[:headings[2]]
    assert re.search(r"^make demo ", before_any_other_section, re.MULTILINE)
    assert re.search(r"^make test ", before_any_other_section, re.MULTILINE)


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)\)", readme))
    assert linked == {str(page.relative_to(DOCS)) for page in DOCS.glob("*.md")} - {"index.md"}
