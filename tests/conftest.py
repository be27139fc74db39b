"""Shared pytest fixtures for the diffcl_lite test suite (add new fixtures below)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# The lesson notebooks' settings (fast mode, golden cells without counts) live in the root
# conftest.py, so that `pytest notebooks/` alone gets them too.


def pytest_ignore_collect(collection_path, config):  # noqa: D103
    # notebooks under tests/ (e.g. tests/fixtures/) are test data, not lessons: nbval must not run them
    if collection_path.suffix == ".ipynb":
        return True
    return None
