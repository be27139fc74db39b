"""Measurements the lessons make on the method's objects (the method itself never calls them).

==============  ==================================================================  =========
module          what it measures                                                    notebook
==============  ==================================================================  =========
``alignment``   agreement of each modality with the ID anchor; the gradients the     06
                alignment loss alone sends (the stop-gradient)
==============  ==================================================================  =========

One module per method module it measures: ``from diffcl_lite.lessons.measures import alignment``.
"""
from __future__ import annotations

__all__: list[str] = []
