"""pytest settings for the lesson notebooks (nbval), also when ``pytest notebooks/`` runs alone.

Notebooks run in fast mode under the tests: nbval starts each kernel as a subprocess of this
process, and the kernels inherit the environment set here at import time (before any kernel
starts). ``DIFFCL_FAST=0 pytest notebooks/`` runs them in full mode instead.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("DIFFCL_FAST", "1")
# runs started by the tests (CLI train/ablate) write their run folders to a temporary folder
os.environ.setdefault("DIFFCL_RUNS", __import__("tempfile").mkdtemp(prefix="diffcl-test-runs-"))


def pytest_collection_modifyitems(config, items):  # noqa: D103
    # nbval items (one per notebook cell) get the `notebooks` marker: `-m "not notebooks"` skips them
    for item in items:
        if item.__class__.__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.notebooks)
    # golden cells are compared even when nbstripout cleared their execution counts
    from diffcl_lite.course.nbtools import compare_golden_without_counts

    compare_golden_without_counts(items)
