"""Loss functions of DiffCL: BPR, InfoNCE, alignment to the ID anchor, L2 regularisation.

Introduced in notebooks 05 (contrastive views: ``info_nce``, ``alignment``/``uniformity``) and
06 (modality alignment: ``align_to_anchor``). ``bpr_loss`` and ``l2_reg`` appear in notebook 08.

Which choices are the paper's and which are ours: the paper states BPR + a diffusion-contrastive
InfoNCE + an alignment loss (+ L2). The one-directional in-batch InfoNCE (SGL / SimGCL
convention), the stop-gradient ID anchor implemented as ``detach()`` and the moment-matching
loss (a per-feature, stop-gradient variant of MENTOR's, not MENTOR's loss) and MENTOR's own
scalar-moment alignment as written (``mentor_alignment``) are reconstructions, each switchable
through ``DiffCLConfig``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import DiffCLError

__all__ = ["bpr_loss", "info_nce", "align_to_anchor", "alignment_loss", "moment_matching", "table_moments_distance",
           "mentor_alignment", "l2_reg", "alignment", "uniformity", "infonce_weights"]


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss, averaged over the batch.

    L_BPR = -1/B Σ_b log σ(ŷ_{u,i+} - ŷ_{u,i-})
    """
    # -log σ(x) = softplus(-x), numerically stable
    return F.softplus(neg_scores - pos_scores).mean()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE between two views of the same B nodes, in-batch negatives.

    s_ij = cos(z'_i, z''_j) / τ
    L = -1/B Σ_i log( exp(s_ii) / Σ_j exp(s_ij) )

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are the positive pair; the other rows of ``z2``
    are the negatives (SGL / SimGCL convention, one direction).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise DiffCLError(f"info_nce: z1 and z2 must both have shape (B, d); got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if temperature <= 0:
        raise DiffCLError(f"info_nce: temperature={temperature} must be > 0 (DiffCL default 0.2).")
    z1 = F.normalize(z1, dim=-1)
    z2 = F.normalize(z2, dim=-1)
    # s_ij = z'_i · z''_j / τ
    logits = z1 @ z2.T / temperature
    # -log softmax of the diagonal
    labels = torch.arange(z1.shape[0], device=z1.device)
    return F.cross_entropy(logits, labels)


def align_to_anchor(
    modality: torch.Tensor, anchor: torch.Tensor, kind: str = "infonce", temperature: float = 0.2
) -> torch.Tensor:
    """Pull a modality's representations towards the stop-gradient ID representations.

    kind="infonce":  L = InfoNCE(h^m, sg(h^id))   (instance level: item i's image vector should be
                     closer to item i's ID vector than to any other item's)
    kind="moments":  L = mean_d |μ^m_d - μ^id_d| + mean_d |σ²^m_d - σ²^id_d|   (distribution level,
                     per feature over the batch, one modality against sg(h^id): a variant of
                     MENTOR's loss, which instead matches SCALAR means and variances of whole
                     tables, pairwise among ID, fused, visual and text, with no stop-gradient;
                     that one, as written, is :func:`mentor_alignment`,
                     ``DiffCLConfig(align_kind="mentor")``)

    sg(·) is ``detach()``: the ID view is the stable anchor, only the modality moves.
    """
    return alignment_loss(modality, anchor.detach(), kind, temperature)


def alignment_loss(
    modality: torch.Tensor, target: torch.Tensor, kind: str = "infonce", temperature: float = 0.2
) -> torch.Tensor:
    """The alignment loss of ``kind`` between ``modality`` and ``target``, gradients to both.

    :func:`align_to_anchor` is this with ``target = sg(h^id)``; notebook 06 also calls it without
    the stop-gradient, to show what the anchor would lose.
    """
    if kind == "infonce":
        return info_nce(modality, target, temperature)
    if kind == "moments":
        return moment_matching(modality, target)
    raise DiffCLError(f"align kind={kind!r} is not known; use 'infonce' or 'moments'.")


def moment_matching(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|μ_a - μ_b| + |σ²_a - σ²_b|, feature-wise over the batch, averaged over features.

    A per-feature variant of MENTOR's moment alignment (MENTOR: :func:`table_moments_distance`,
    one scalar mean and variance per whole table); with :func:`align_to_anchor` ``b`` is detached.
    """
    # μ = 1/B Σ_b x_b ,  σ² = 1/B Σ_b (x_b - μ)²
    mean_a, mean_b = a.mean(0), b.mean(0)
    var_a, var_b = a.var(0, unbiased=False), b.var(0, unbiased=False)
    return (mean_a - mean_b).abs().mean() + (var_a - var_b).abs().mean()


def table_moments_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MENTOR's ``align_vt`` (Xu et al. 2024): |var(A) - var(B)| + |mean(A) - mean(B)|.

    Mean and variance are SCALARS over every entry of each table (``torch.var``, unbiased, as
    MENTOR), so the loss matches the tables' overall location and spread, not per-feature moments
    and not instances. No stop-gradient: both tables move.
    """
    # |σ²(A) - σ²(B)| + |μ(A) - μ(B)|, scalars over all entries
    return (a.var() - b.var()).abs() + (a.mean() - b.mean()).abs()


def mentor_alignment(tables: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over unordered pairs of :func:`table_moments_distance` (MENTOR aligns ID, fused and each modality)."""
    names = list(tables)
    if len(names) < 2:
        raise DiffCLError(f"mentor_alignment needs at least two tables, got {names}.")
    total = tables[names[0]].new_zeros(())
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            total = total + table_moments_distance(tables[names[i]], tables[names[j]])
    return total


def l2_reg(*embeddings: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """L2 regularisation of the batch embeddings (MMRec convention).

    L_reg = 1/(2B) Σ_e ||e||²
    """
    if not embeddings:
        raise DiffCLError("l2_reg needs at least one tensor.")
    b = batch_size or embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / (2 * b)


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola alignment of positive pairs (lower = views agree): E ||f(x) - f(y)||^α on the unit sphere."""
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    return (z1 - z2).norm(dim=-1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola uniformity (lower = spread over the sphere): log E exp(-t ||f(x) - f(y)||²)."""
    z = F.normalize(z, dim=-1)
    sq = torch.pdist(z, p=2).pow(2)
    return sq.mul(-t).exp().mean().log()


def infonce_weights(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """The softmax InfoNCE puts over the candidates of each anchor: p_ij = exp(s_ij) / Σ_k exp(s_ik).

    Introduced in notebook 05 (the temperature widget). Row ``i`` sums to 1; ``p_ii`` is the
    probability given to the positive. The gradient of InfoNCE with respect to s_ij is
    ``(p_ij - [i = j]) / B``: each negative is pushed away in proportion to its weight, so a small
    temperature concentrates the push on the hardest (most similar) negatives.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise DiffCLError(f"infonce_weights: z1 and z2 must both have shape (B, d); got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if temperature <= 0:
        raise DiffCLError(f"infonce_weights: temperature={temperature} must be > 0 (DiffCL default 0.2).")
    # s_ij = cos(z'_i, z''_j) / τ
    logits = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / temperature
    # p_ij = softmax_j(s_ij)
    return torch.softmax(logits, dim=1)
