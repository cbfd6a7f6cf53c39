"""Fixtures for tests/api. They live in api_lab.py and api_tes_lab.py, uniquely named modules the
tests also import helpers from: `from conftest import ...` would be ambiguous next to other test
folders' conftest.py files."""

from api_lab import _environment, lab
from api_tes_lab import tes_lab

# Registered by being here; named so pyflakes sees them used.
__all__ = ["_environment", "lab", "tes_lab"]
