"""pyproject.toml names every folder that goes into the package, as setuptools wants it: an
importable folder left out of `packages` made setuptools print a 40-line BuildBackendWarning on
every install, and a wheel left it out (labbatch.local was missing from built wheels)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def folder_of(package: str) -> Path:
    top, _, rest = package.partition(".")
    base = ROOT / SETUPTOOLS.get("package-dir", {}).get(top, top)
    return base.joinpath(*rest.split(".")) if rest else base


def importable_folders() -> set[str]:
    """Every folder under a top-level package that holds files: what Python could import."""
    found = set()
    for top in {p.split(".")[0] for p in SETUPTOOLS["packages"]}:
        root = folder_of(top)
        for folder in [root, *root.rglob("*")]:
            if folder.is_dir() and folder.name != "__pycache__" and any(f.is_file() for f in folder.iterdir()):
                found.add(".".join([top, *folder.relative_to(root).parts]))
    return found


def test_every_importable_folder_is_a_listed_package():
    assert importable_folders() == set(SETUPTOOLS["packages"])


def test_every_file_of_a_folder_without_python_is_declared_package_data():
    data = SETUPTOOLS.get("package-data", {})
    for package in SETUPTOOLS["packages"]:
        files = [f.name for f in folder_of(package).iterdir() if f.is_file()]
        if any(name.endswith(".py") for name in files):
            continue
        assert files and all(any(fnmatch.fnmatch(name, glob) for glob in data.get(package, [])) for name in files), \
            (package, files)
