"""Fixtures for tests/api. They live in tests/api_lab.py and tests/api_tes_lab.py (tests/status uses
the first too), modules the tests also import helpers from: `from conftest import ...` would be
ambiguous next to other test folders' conftest.py files."""

from tests.api_lab import _environment, lab
from tests.api_tes_lab import tes_lab

# Registered by being here; named so pyflakes sees them used.
__all__ = ["_environment", "lab", "tes_lab"]
