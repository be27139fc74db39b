"""What only the notebooks need: set-up, figures and widgets, built on the method and the datasets.

================  ============================================================  ==========
module            what it holds                                                 notebooks
================  ============================================================  ==========
``notebook``      ``setup_notebook``: seeds, device, fast mode, ``save_figure``  all
``viz``           the figures, one module per part of the series                01-08
``widgets``       thin ipywidgets wrappers over the pure figure functions       01-08
``measures``      lesson measures: graphs, diffusion, views, alignment          01-06
``checks``        exercise self-checks (``check``, ``run_check``)               00-08
``toys``          2-D toy data (moons, circles, smiley)                         03, 04
================  ============================================================  ==========

The exercise checks are :mod:`diffcl_lite.lessons.checks`: student notebooks import them; the
grader reads that file without importing it. The lessons import the method modules and
:mod:`diffcl_lite.datasets`; nothing in the method imports the lessons. ``import diffcl_lite.lessons``
itself imports nothing heavy.
"""
from __future__ import annotations

__all__: list[str] = []
