"""What only the notebooks need: set-up, figures and widgets, built on the method and the datasets.

================  ============================================================  ==========
module            what it holds                                                 notebooks
================  ============================================================  ==========
``notebook``      ``setup_notebook``: seeds, device, fast mode, ``save_figure``  all
``viz``           the figures, one module per part of the series                01-08
``widgets``       thin ipywidgets wrappers over the pure figure functions       01-08
``measures``      lesson measures: graphs, diffusion, views, alignment          01-06
================  ============================================================  ==========

The exercise checks stay :mod:`diffcl_lite.checks`: student notebooks and the grader name that
module. The lessons import the method modules and :mod:`diffcl_lite.datasets`; nothing in the
method imports the lessons. ``import diffcl_lite.lessons`` itself imports nothing heavy.
"""
from __future__ import annotations

__all__: list[str] = []
