"""Modality alignment through the stable ID anchor.

Introduced in notebook 06 (modality alignment). The paper states that visual and textual
semantics are aligned through the ID embeddings, which are stable because they are learnt from
interactions only. We reconstruct it as a loss that pulls each modality's representation of a
node towards the stop-gradient ID representation of the same node:

- ``kind="infonce"`` (instance level, default): L = InfoNCE(h^m, sg(h^id)).
- ``kind="moments"`` (MENTOR, distribution level): L = |μ^m - μ^id| + |σ²^m - σ²^id|.

Both live in :mod:`diffcl_lite.losses`; this module adds measurements for the notebook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import align_to_anchor, moment_matching

__all__ = ["align_to_anchor", "moment_matching", "anchor_agreement", "matched_pair_rank"]


@torch.no_grad()
def anchor_agreement(modality: torch.Tensor, anchor: torch.Tensor) -> float:
    """Mean cosine similarity between a node's modality vector and its own ID vector."""
    return float(F.cosine_similarity(modality, anchor, dim=-1).mean())


@torch.no_grad()
def matched_pair_rank(modality: torch.Tensor, anchor: torch.Tensor) -> float:
    """Fraction of nodes whose own ID vector is the most similar ID vector to their modality vector.

    1.0 = perfect instance-level alignment, 1/n = chance.
    """
    sim = F.normalize(modality, dim=-1) @ F.normalize(anchor, dim=-1).T
    return float((sim.argmax(dim=1) == torch.arange(len(sim), device=sim.device)).float().mean())
