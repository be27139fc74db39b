"""Widgets: thin ipywidgets wrappers over pure, tested package functions.

Introduced in notebook 01. Every widget first draws a static figure of its default state (so a
reader in a viewer without a live kernel, or with broken widget support, still sees something),
then shows the controls; moving a control calls the same pure plotting function again.
ipywidgets is imported inside the functions, never at package import.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = [
    "static_then_interactive", "forward_noising_widget", "diffusion_view_widget", "infonce_temperature_widget",
    "alignment_maps_widget", "atlas_explorer", "history_explorer",
]


def static_then_interactive(plot: Callable[..., Any], controls: dict[str, Any], show_static: bool = True):
    """Show ``plot(**defaults)`` as a static figure, then a live version driven by ``controls``.

    ``controls`` maps argument names to ipywidgets (``IntSlider``, ``Dropdown``...); the
    default state is each control's current value. Returns the ``VBox`` (controls + output).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    defaults = {name: w.value for name, w in controls.items()}
    if show_static:
        fig = plot(**defaults)
        _show(fig)
    out = widgets.Output()

    def redraw(_change: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            fig = plot(**{name: w.value for name, w in controls.items()})
            _show(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    redraw()
    return box


def _show(fig: Any) -> None:
    """Display a matplotlib or plotly figure and close matplotlib figures (no double output)."""
    from IPython.display import display

    if fig is None:
        return
    if hasattr(fig, "savefig"):
        import matplotlib.pyplot as plt

        display(fig)
        plt.close(fig)
    else:
        display(fig)


# ---------------------------------------------------------------------------------------------
# Notebooks 03 and 04: diffusion widgets
# ---------------------------------------------------------------------------------------------
def _tagged(w: Any, arg: str) -> Any:
    """Give a control the CSS class ``diffcl-control-<arg>`` (the browser tests find sliders by it)."""
    w.add_class(f"diffcl-control-{arg}")
    return w


def forward_noising_widget(points: Any, labels: Any = None, steps: int = 50, t: int = 10, kind: str = "linear-var",
                           scale: float = 10.0, seed: int = 0, show_static: bool = False):
    """Sliders for the step ``t`` and the noise ``scale`` and a schedule menu over :func:`viz.plot_forward_noising`.

    Introduced in notebook 03 (forward diffusion). The slider for the diffusion time is an
    ``IntSlider`` with description ``"t"`` (0 = clean, ``steps`` = ``x_T``); ``scale`` is a log
    slider from 0.1 (DiffMM's default) to 40 (``scale * noise_max`` must stay below 1). Returns the
    ``VBox`` of :func:`static_then_interactive`.
    """
    from functools import partial

    import ipywidgets as widgets

    from ..diffusion import schedule_kinds
    from .viz import plot_forward_noising

    plot = partial(plot_forward_noising, points=points, labels=labels, steps=int(steps), seed=seed)
    controls = {
        "t": _tagged(widgets.IntSlider(value=int(t), min=0, max=int(steps), step=1, description="t",
                                       continuous_update=False), "t"),
        "kind": _tagged(widgets.Dropdown(options=schedule_kinds(), value=kind, description="schedule"), "kind"),
        "scale": _tagged(widgets.FloatLogSlider(value=float(scale), base=10, min=-1, max=1.6, step=0.1,
                                                description="scale", continuous_update=False), "scale"),
    }

    # the cosine schedule has no scale: grey the slider out while it is chosen
    def sync_scale(_change: Any = None) -> None:
        controls["scale"].disabled = controls["kind"].value == "cosine"

    controls["kind"].observe(sync_scale, names="value")
    sync_scale()
    return static_then_interactive(plot, controls, show_static=show_static)


def diffusion_view_widget(points: Any, labels: Any, model: Any, diffusion: Any, t: int = 5, seed: int = 0,
                          show_static: bool = False):
    """A ``t`` slider (view depth, 0..T) and a sampling-noise toggle over :func:`viz.plot_diffusion_view`.

    Introduced in notebook 04 (diffusion views). Returns the ``VBox`` of :func:`static_then_interactive`.
    """
    from functools import partial

    import ipywidgets as widgets

    from .viz import plot_diffusion_view

    plot = partial(plot_diffusion_view, points=points, labels=labels, model=model, diffusion=diffusion, seed=seed)
    controls = {
        "t": _tagged(widgets.IntSlider(value=int(t), min=0, max=int(diffusion.steps), step=1, description="t",
                                       continuous_update=False), "t"),
        "sampling_noise": _tagged(widgets.Checkbox(value=False, description="sampling noise"), "sampling_noise"),
    }
    return static_then_interactive(plot, controls, show_static=show_static)


# ---------------------------------------------------------------------------------------------
# Notebooks 05 and 06: temperature and alignment-map widgets
# ---------------------------------------------------------------------------------------------
def infonce_temperature_widget(z1: Any, z2: Any, temperature: float = 0.2, anchor: int = 0, labels: Any = None,
                               show_static: bool = False):
    """A log slider for the temperature τ and an anchor slider over :func:`viz.plot_infonce_temperature`.

    Introduced in notebook 05 (contrastive views). Returns the ``VBox`` of :func:`static_then_interactive`.
    """
    from functools import partial

    import ipywidgets as widgets

    from .viz import plot_infonce_temperature

    n = len(z1)
    tau = widgets.FloatLogSlider(value=float(temperature), base=10, min=-1.7, max=0.3, step=0.05, description="τ",
                                 continuous_update=False)
    anc = widgets.IntSlider(value=int(anchor), min=0, max=n - 1, description="anchor", continuous_update=False)
    tau.add_class("diffcl-control-temperature")
    anc.add_class("diffcl-control-anchor")
    plot = partial(plot_infonce_temperature, z1, z2, labels=labels)
    return static_then_interactive(plot, {"temperature": tau, "anchor": anc}, show_static=show_static)


def alignment_maps_widget(maps: dict[str, Any], labels: Any, n_links: int = 10, seed: int = 0, show_static: bool = False):
    """Sliders for the number of linked items and the sample's seed over :func:`viz.plot_alignment_maps`.

    Introduced in notebook 06 (modality alignment). Returns the ``VBox`` of :func:`static_then_interactive`.
    """
    from functools import partial

    import ipywidgets as widgets

    from .viz import plot_alignment_maps

    n = len(labels)
    links = widgets.IntSlider(value=int(n_links), min=0, max=min(n, 200), step=5, description="items",
                              continuous_update=False)
    sd = widgets.IntSlider(value=int(seed), min=0, max=20, description="sample seed", continuous_update=False)
    show_all = widgets.Checkbox(value=True, description="all items faint")
    for w, arg in ((links, "n_links"), (sd, "seed"), (show_all, "show_all")):
        w.add_class(f"diffcl-control-{arg}")
    plot = partial(plot_alignment_maps, maps, labels)
    return static_then_interactive(plot, {"n_links": links, "seed": sd, "show_all": show_all}, show_static=show_static)


def atlas_explorer(maps: dict[str, Any], colours: dict[str, Any], colour_by: str = "topic",
                   titles: dict[str, str] | None = None, show_static: bool = False):
    """A colour-by dropdown over :func:`diffcl_lite.lessons.viz.plot_atlas` (side-by-side 2-D maps).

    Introduced in notebook 07 (embedding atlas). ``show_static=False`` because the notebook draws
    the default figure itself first. Returns the ``VBox``.
    """
    from functools import partial

    import ipywidgets as widgets

    from .viz import plot_atlas

    control = widgets.Dropdown(options=list(colours), value=colour_by, description="colour by")
    control.add_class("diffcl-control-colour_by")
    plot = partial(plot_atlas, maps, colours, titles=titles)
    return static_then_interactive(plot, {"colour_by": control}, show_static=show_static)


def history_explorer(histories: dict[str, Any], keys: list[str], key: str | None = None,
                     show_static: bool = False):
    """A metric dropdown over :func:`diffcl_lite.lessons.viz.plot_histories` (learning curves of several runs).

    Introduced in notebook 08 (full training). Returns the ``VBox``.
    """
    from functools import partial

    import ipywidgets as widgets

    from .viz import plot_histories

    control = widgets.Dropdown(options=list(keys), value=key or keys[0], description="metric")
    control.add_class("diffcl-control-key")
    return static_then_interactive(partial(plot_histories, histories), {"key": control}, show_static=show_static)
