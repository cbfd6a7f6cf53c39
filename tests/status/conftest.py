"""Fixtures for tests/status: the status updater's tests run against the same moto-backed lab as
the API's (tests/api_lab.py), since the updater reads and writes what the API recorded."""

from tests.api_lab import _environment, lab

# Registered by being here; named so pyflakes sees them used.
__all__ = ["_environment", "lab"]
