"""Shared pytest fixtures for the diffcl_lite test suite (add new fixtures below)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


# --------------------------------------------------------------------------- lesson notebooks
# Notebooks run in fast mode under the tests: nbval starts each kernel as a subprocess of this
# process, and the kernels inherit the environment set here at import time (before any kernel
# starts). `DIFFCL_FAST=0 pytest notebooks/` runs them in full mode instead.
import os  # noqa: E402

os.environ.setdefault("DIFFCL_FAST", "1")


def pytest_collection_modifyitems(config, items):  # noqa: D103
    # nbval items (one per notebook cell) get the `notebooks` marker: `-m "not notebooks"` skips them
    for item in items:
        if item.__class__.__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.notebooks)
    # golden cells are compared even when nbstripout cleared their execution counts
    from diffcl_lite.nbtools import compare_golden_without_counts

    compare_golden_without_counts(items)


def pytest_ignore_collect(collection_path, config):  # noqa: D103
    # notebooks under tests/ (e.g. tests/fixtures/) are test data, not lessons: nbval must not run them
    if collection_path.suffix == ".ipynb":
        return True
    return None
