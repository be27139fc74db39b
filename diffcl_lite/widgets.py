"""Widgets: thin ipywidgets wrappers over pure, tested package functions.

Introduced in notebook 01. Every widget first draws a static figure of its default state (so a
reader in a viewer without a live kernel, or with broken widget support, still sees something),
then shows the controls; moving a control calls the same pure plotting function again.
ipywidgets is imported inside the functions, never at package import.
"""
from __future__ import annotations

from typing import Any, Callable


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
