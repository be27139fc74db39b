"""Figures and widgets a person can read: a short legend, matched colours, idle controls greyed out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcl_lite.lessons import viz, widgets


def test_plotly_legend_has_one_entry_per_colour_and_per_marker_with_matplotlib_colours():
    pytest.importorskip("plotly")
    import matplotlib

    rng = np.random.default_rng(0)
    n = 120
    topic = rng.integers(0, 8, n)
    noisy = rng.choice(["clean", "noisy image", "noisy text"], n)
    fig = viz.plotly_scatter(rng.normal(size=(n, 2)), [f"topic {t}" for t in topic],
                             hover={"item": np.arange(n), "noisy": noisy}, symbol=noisy)
    names = [d.name for d in fig.data]
    assert names == [f"topic {k}" for k in range(8)] + ["marker: clean", "marker: noisy image", "marker: noisy text"]
    tab10 = matplotlib.colormaps["tab10"]
    for k in range(8):
        assert fig.data[k].marker.color == matplotlib.colors.to_hex(tab10(k))
        sel = topic == k
        assert len(fig.data[k].x) == sel.sum()
        # every point keeps its own marker shape inside its colour's trace
        assert len(set(fig.data[k].marker.symbol)) == len(set(noisy[sel]))


def test_scale_slider_is_disabled_for_the_cosine_schedule(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(viz, "plot_forward_noising", lambda **kw: None)
    pts = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    lab = np.arange(40) % 2
    box = widgets.forward_noising_widget(pts, lab, steps=10, t=2)
    t_slider, menu, scale = box.children[0].children
    assert not scale.disabled and t_slider.continuous_update is False and scale.continuous_update is False
    menu.value = "cosine"
    assert scale.disabled
    menu.value = "linear-var"
    assert not scale.disabled


def test_reverse_trajectories_marks_the_traced_paths_only_when_asked():
    emb = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    plain = viz.plot_reverse_trajectories([emb + 1, emb], None, reference=emb, n_paths=10)
    marked = viz.plot_reverse_trajectories([emb + 1, emb], None, reference=emb, n_paths=10, mark_paths=True)
    extra = marked.axes[0].collections[-2:]
    assert len(marked.axes[0].collections) == len(plain.axes[0].collections) + 2
    assert all(len(c.get_offsets()) == 10 for c in extra)
    np.testing.assert_allclose(extra[0].get_offsets(), (emb + 1).numpy()[np.linspace(0, 39, 10).astype(int)], rtol=1e-6)


def test_alignment_maps_default_to_ten_items():
    import inspect

    assert inspect.signature(viz.plot_alignment_maps).parameters["n_links"].default == 10
    assert inspect.signature(widgets.alignment_maps_widget).parameters["n_links"].default == 10
