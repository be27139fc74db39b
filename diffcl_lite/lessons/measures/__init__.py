"""Measurements the lessons make on the method's objects (the method itself never calls them).

==============  ==================================================================  =========
module          what it measures                                                    notebooks
==============  ==================================================================  =========
``graphs``      graph summaries, over-smoothing of LightGCN layers, topic           01, 02
                agreement of kNN graphs, image vs text overlap; the one kNN topic
                purity (``neighbour_purity``) that every purity calls
``diffusion``   noisy snapshots and forward chains (one closed-form jump = k        03, 04
                small steps), denoising error per step, ``fit_denoiser``
``views``       topic purity of views, SimGCL views matched in angular deviation,   05, 06
                diffusion vs random views across noise levels
``alignment``   agreement of each modality with the ID anchor; the gradients the    06
                alignment loss alone sends (the stop-gradient)
==============  ==================================================================  =========

One module per method module it measures: ``from diffcl_lite.lessons.measures.graphs import
graph_summary`` (notebook 01), ``from diffcl_lite.lessons.measures import alignment`` (06).
"""
from __future__ import annotations

__all__: list[str] = []
