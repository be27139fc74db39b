"""Shared pytest fixtures for the diffcl_lite test suite (add new fixtures below)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT
