"""The figures of the lessons, one module per part of the series (``from diffcl_lite.lessons import viz``).

=================  ==============================================================  ==========
module             what it draws                                                   notebooks
=================  ==============================================================  ==========
``common``         PCA / UMAP 2-D maps, kNN purity, scatter plots (shared)         02-07
``graphs``         degree distributions, over-smoothing, kNN-graph topic agreement  01, 02
``diffusion``      schedules, forward noising, reverse trajectories, views         03, 04
``contrastive``    InfoNCE temperature, view maps and sweeps, alignment maps       05, 06
``atlas``          per-point purity, topic centroids, the embedding atlas          07
``training``       learning curves, the ablation chart, model selection            08
=================  ==============================================================  ==========

``viz.save_figure`` is :func:`diffcl_lite.lessons.notebook.save_figure`. Every figure is a pure
function of its arguments (the widgets redraw them); matplotlib, plotly and umap are imported
inside the functions that need them.
"""
from __future__ import annotations

from ..notebook import save_figure
from .common import (pca_2d, knn_for_umap, embed_2d, neighbourhood_purity, scatter_2d, plotly_scatter, pca_basis, pca_project, scatter_by_label)
from .graphs import (plot_degrees, plot_oversmoothing, plot_topic_agreement)
from .diffusion import (plot_schedules, plot_forward_snapshots, plot_forward_noising, plot_reverse_trajectories, plot_diffusion_view)
from .contrastive import (infonce_temperature_curves, plot_infonce_temperature, plot_view_maps, plot_view_sweep, joint_embed_2d, plot_modality_links, link_lengths, plot_alignment_maps)
from .atlas import (purity_per_point, chance_purity, topic_centroid_similarity, plot_atlas)
from .training import (plot_history, plot_ablation, plot_histories, plot_selection)

__all__ = [
    "save_figure",
    "pca_2d",
    "knn_for_umap",
    "embed_2d",
    "neighbourhood_purity",
    "scatter_2d",
    "plotly_scatter",
    "pca_basis",
    "pca_project",
    "scatter_by_label",
    "plot_degrees",
    "plot_oversmoothing",
    "plot_topic_agreement",
    "plot_schedules",
    "plot_forward_snapshots",
    "plot_forward_noising",
    "plot_reverse_trajectories",
    "plot_diffusion_view",
    "infonce_temperature_curves",
    "plot_infonce_temperature",
    "plot_view_maps",
    "plot_view_sweep",
    "joint_embed_2d",
    "plot_modality_links",
    "link_lengths",
    "plot_alignment_maps",
    "purity_per_point",
    "chance_purity",
    "topic_centroid_similarity",
    "plot_atlas",
    "plot_history",
    "plot_ablation",
    "plot_histories",
    "plot_selection",
]
