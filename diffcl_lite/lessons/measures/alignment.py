"""Modality alignment through the stable ID anchor.

Introduced in notebook 06 (modality alignment). The paper states that visual and textual
semantics are aligned through the ID embeddings, which are stable because they are learnt from
interactions only. We reconstruct it as a loss that pulls each modality's representation of a
node towards the stop-gradient ID representation of the same node:

- ``kind="infonce"`` (instance level, default): L = InfoNCE(h^m, sg(h^id)).
- ``kind="moments"`` (distribution level, per feature, to the stop-gradient anchor): L =
  |μ^m - μ^id| + |σ²^m - σ²^id|. Our variant inspired by MENTOR, not MENTOR's loss.
- ``DiffCLConfig(align_kind="mentor")``: MENTOR's ``align_vt`` (Xu et al. 2024), scalar mean and
  variance of whole embedding tables, pairwise among ID, fused and each modality, no
  stop-gradient (:func:`~diffcl_lite.losses.mentor_alignment`).

The losses live in :mod:`diffcl_lite.losses`; this module measures them for the notebook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import DiffCLError
from ...losses import alignment_loss, info_nce, moment_matching

__all__ = ["anchor_agreement", "matched_pair_rank", "alignment_report", "alignment_gradients"]


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


# ---------------------------------------------------------------------------------------------
# Notebook 06 (modality alignment): reports and the stop-gradient check
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def alignment_report(views: dict[str, torch.Tensor], anchor: str = "id", temperature: float = 0.2) -> list[dict]:
    """Per non-anchor view: how well it agrees with the anchor view, at instance and distribution level.

    Introduced in notebook 06. ``views`` maps a view name to its (n, d) item (or user)
    representations, rows = the same nodes. Columns: ``view``, ``anchor_agreement`` (mean cosine with
    the node's own anchor vector), ``matched_pair_rank`` (top-1 retrieval of the own anchor),
    ``moment_distance`` (:func:`moment_matching`, 0 = same per-feature mean and variance) and
    ``infonce`` (the instance-level alignment loss).
    """
    if anchor not in views:
        raise DiffCLError(f"alignment_report: anchor view {anchor!r} is not among {sorted(views)}.")
    a = views[anchor]
    out = []
    for name, h in views.items():
        if name == anchor:
            continue
        out.append({
            "view": name,
            "anchor_agreement": anchor_agreement(h, a),
            "matched_pair_rank": matched_pair_rank(h, a),
            "moment_distance": float(moment_matching(h, a)),
            "infonce": float(info_nce(h, a, temperature)),
        })
    return out


def alignment_gradients(model, nodes: torch.Tensor | None = None, kind: str = "infonce", temperature: float = 0.2,
                        stop_gradient: bool = True) -> dict[str, float]:
    """Gradient norms that the alignment loss ALONE sends to each group of a DiffCL model's parameters.

    Introduced in notebook 06 (the stop-gradient). Computes Σ_m align(h^m_items[nodes], h^id_items[nodes])
    with the anchor detached (``stop_gradient=True``, as the model does) or not, back-propagates it,
    and returns ``{"id": ..., "modality": ...}``: the L2 norm of the gradients of the ID
    embeddings (``user_emb["id"]``, ``item_emb``) and of the modality parameters (projections and
    modality user embeddings). The model's gradients are cleared before and after.
    """
    if kind not in ("infonce", "moments"):
        raise DiffCLError(f"align kind={kind!r} is not known; use 'infonce' or 'moments'.")

    model.zero_grad(set_to_none=True)
    views = model.view_embeddings()
    id_items = views["id"][1]
    nodes = torch.arange(id_items.shape[0], device=id_items.device) if nodes is None else nodes
    loss = id_items.new_zeros(())
    for m in model.modalities:
        anchor = id_items[nodes].detach() if stop_gradient else id_items[nodes]
        h = views[m][1][nodes]
        # L_align = align(h^m, sg(h^id))   (or without sg when stop_gradient=False)
        loss = loss + alignment_loss(h, anchor, kind, temperature)
    loss.backward()

    def norm(params) -> float:
        sq = [p.grad.pow(2).sum() for p in params if p.grad is not None]
        return float(torch.stack(sq).sum().sqrt()) if sq else 0.0

    id_params = [model.user_emb["id"].weight, model.item_emb.weight]
    mod_params = [p for m in model.modalities for p in (*model.proj[m].parameters(), model.user_emb[m].weight)]
    out = {"id": norm(id_params), "modality": norm(mod_params), "loss": float(loss.detach())}
    model.zero_grad(set_to_none=True)
    return out
