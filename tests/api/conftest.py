"""Fixtures for tests/api. They live in api_lab.py, a uniquely named module the tests also
import helpers from: `from conftest import ...` would be ambiguous next to other test folders'
conftest.py files."""

from api_lab import _environment, lab  # noqa: F401  (fixtures, registered by being here)
