"""DiffCL's options, each against an independent expectation: the views' stop-gradient, ``fusion="mean"``,
the item graph's target views, ``cl_max_nodes`` and the two moment alignments inside the model.

The references are written out here in NumPy / dense torch from the formulas in the docstrings
of :class:`diffcl_lite.model.DiffCLConfig` and :mod:`diffcl_lite.losses`.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import diffcl_lite.model as model_mod
from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError
from diffcl_lite.model import DiffCL, DiffCLConfig
from diffcl_lite.utils import seed_everything


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n_users=60, n_items=40, n_topics=3, interactions_per_user=8, seed=0)


@pytest.fixture
def batch(tiny):
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(tiny.train), generator=g)[:48]
    users = torch.as_tensor(tiny.train[idx.numpy(), 0])
    pos = torch.as_tensor(tiny.train[idx.numpy(), 1])
    neg = torch.randint(0, tiny.n_items, (48,), generator=g)
    return users, pos, neg


def make(tiny, **kw) -> DiffCL:
    seed_everything(0)
    return DiffCL(tiny, DiffCLConfig(embedding_dim=8, **kw))


def dense_lightgcn(data, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """mean_{l=0..L} Â^l x with Â = D^-1/2 A D^-1/2, A = [[0, R], [R^T, 0]] (binary R), dense."""
    n = data.n_users + data.n_items
    a = np.zeros((n, n))
    for u, i in np.unique(data.train, axis=0):
        a[u, data.n_users + i] = a[data.n_users + i, u] = 1.0
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    a_hat = torch.as_tensor(inv[:, None] * a * inv[None, :], dtype=torch.float64)
    h, total = x.detach().double(), x.detach().double()
    for _ in range(n_layers):
        h = a_hat @ h
        total = total + h
    return (total / (n_layers + 1)).float()


def zero_grads(model) -> None:
    for p in model.parameters():
        p.grad = None


def grad_norm(params) -> float:
    return float(sum(p.grad.abs().sum() for p in params if p.grad is not None))


# ---------------------------------------------------------------------- the views' stop-gradient
def test_the_contrastive_gradient_reaches_the_encoder_but_not_the_denoiser(tiny, batch):
    model = make(tiny, use_align=False, lambda_reg=0.0)
    terms = model.loss(*batch)
    terms["cl"].backward()
    for m in tiny.features:
        denoiser = list(model.view_gen[m].denoiser.parameters())
        assert denoiser and grad_norm(denoiser) == 0.0, m
        # the views are functions of the modality view's encoder output: W_m and E_u^m learn from InfoNCE
        assert grad_norm(model.proj[m].parameters()) > 0, m
        assert grad_norm([model.user_emb[m].weight]) > 0, m


def test_the_denoiser_learns_only_from_its_own_loss_on_a_stopped_x0(tiny, batch):
    model = make(tiny, use_align=False, lambda_reg=0.0)
    terms = model.loss(*batch)
    terms["diff"].backward()
    for m in tiny.features:
        assert grad_norm(model.view_gen[m].denoiser.parameters()) > 0, m
        # L_diff is computed on sg(x0): the encoder gets nothing from it
        assert grad_norm(model.proj[m].parameters()) == 0.0, m
        assert grad_norm([model.user_emb[m].weight]) == 0.0, m
    assert grad_norm([model.item_emb.weight]) == 0.0


def test_random_views_send_the_contrastive_gradient_to_the_encoder(tiny, batch):
    model = make(tiny, use_align=False, view_kind="random", lambda_reg=0.0)
    terms = model.loss(*batch)
    assert terms["diff"].item() == 0.0
    terms["cl"].backward()
    assert all(grad_norm(model.proj[m].parameters()) > 0 for m in tiny.features)


# ---------------------------------------------------------------------- fusion
def test_mean_fusion_adds_the_plain_average_of_the_modality_views(tiny):
    model = make(tiny, fusion="mean")
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([3.0, -2.0]))  # ignored by "mean"
        views = model.view_embeddings()
        u, i = model.embeddings()
    mods = list(tiny.features)
    # e = h^id + 1/M Σ_m h^m
    exp_u = views["id"][0] + sum(views[m][0] for m in mods) / len(mods)
    exp_i = views["id"][1] + sum(views[m][1] for m in mods) / len(mods)
    assert torch.allclose(u, exp_u, atol=1e-6) and torch.allclose(i, exp_i, atol=1e-6)
    assert torch.allclose(model.fusion_weights(), torch.full((len(mods),), 1.0 / len(mods)))


def test_softmax_fusion_follows_the_logits_and_mean_fusion_does_not_learn_them(tiny, batch):
    soft = make(tiny)
    with torch.no_grad():
        soft.fusion_logits.copy_(torch.tensor([3.0, -2.0]))
    w = np.exp([3.0, -2.0]) / np.exp([3.0, -2.0]).sum()
    assert np.allclose(soft.fusion_weights().detach().numpy(), w, atol=1e-6)
    mean = make(tiny, fusion="mean")
    mean.loss(*batch)["total"].backward()
    assert mean.fusion_logits.grad is None or mean.fusion_logits.grad.abs().sum() == 0
    with pytest.raises(DiffCLError, match="fusion"):
        DiffCLConfig(fusion="max")


# ---------------------------------------------------------------------- the item graph's target views
@pytest.mark.parametrize("kw, graph_on", [
    ({"item_graph_target": "id"}, {"id"}),
    ({"item_graph_on_id": True}, {"id", "image", "text"}),       # the legacy switch adds "id" to the modalities
    ({"item_graph_target": "modalities"}, {"image", "text"}),
    ({"item_graph_target": "all"}, {"id", "image", "text"}),
])
def test_each_view_is_lightgcn_plus_the_item_graph_where_the_target_says(tiny, kw, graph_on):
    model = make(tiny, **kw)
    s = model.item_graph.to_dense()
    with torch.no_grad():
        views = model.view_embeddings()
        for v in model.views:
            items_in = model.item_emb.weight if v == "id" else model.proj[v](model.feature(v))
            ref = dense_lightgcn(tiny, torch.cat([model.user_emb[v].weight, items_in]), model.config.n_layers)
            ref_u, ref_i = ref[: tiny.n_users], ref[tiny.n_users :]
            if v in graph_on:
                # id: h_i^id + (S E^id)_i (FREEDOM) ; modality: h_i^m + (S h^m)_i
                ref_i = ref_i + s @ (model.item_emb.weight if v == "id" else ref_i)
            assert torch.allclose(views[v][0], ref_u, atol=1e-5), v
            assert torch.allclose(views[v][1], ref_i, atol=1e-5), v


def test_the_id_item_graph_propagates_id_embeddings_not_features(tiny):
    model = make(tiny, item_graph_target="id")
    with torch.no_grad():
        before = model.view_embeddings()
        for m in tiny.features:  # new modality features (the graph S stays the one built at construction)
            buf = model.feature(m)
            buf.copy_(torch.randn_like(buf))
        after = model.view_embeddings()
        assert torch.equal(after["id"][1], before["id"][1]) and torch.equal(after["id"][0], before["id"][0])
        assert all(not torch.allclose(after[m][1], before[m][1]) for m in tiny.features)
        # changing the ID embeddings of one item moves the ID view of its graph neighbours through S
        s = model.item_graph.to_dense()
        j = int(torch.nonzero(s.sum(0)).flatten()[0])
        model.item_emb.weight[j] += 1.0
        moved = model.view_embeddings()["id"][1] - after["id"][1]
    delta = torch.zeros_like(model.item_emb.weight)
    delta[j] = 1.0
    # linear in E^id: the change is LightGCN of the change plus S times the change
    lgcn_delta = dense_lightgcn(tiny, torch.cat([torch.zeros(tiny.n_users, 8), delta]), 2)[tiny.n_users :]
    assert torch.allclose(moved, lgcn_delta + s[:, j : j + 1] * delta[j], atol=1e-5)


# ---------------------------------------------------------------------- cl_max_nodes
def record_sizes(monkeypatch, name):
    sizes: list[int] = []
    real = getattr(model_mod, name)

    def wrapper(a, b, *args, **kwargs):
        sizes.append(a.shape[0])
        return real(a, b, *args, **kwargs)

    monkeypatch.setattr(model_mod, name, wrapper)
    return sizes


@pytest.mark.parametrize("cap", [None, 8, 1000])
def test_cl_max_nodes_caps_the_nodes_entering_infonce_and_alignment(tiny, batch, monkeypatch, cap):
    users, pos, neg = batch
    n_users, n_items = len(torch.unique(users)), len(torch.unique(torch.cat([pos, neg])))
    assert n_users > 8 and n_items > 8
    cl_sizes = record_sizes(monkeypatch, "info_nce")
    align_sizes = record_sizes(monkeypatch, "align_to_anchor")
    make(tiny, cl_max_nodes=cap).loss(users, pos, neg)
    k_u, k_i = (n_users, n_items) if cap is None else (min(cap, n_users), min(cap, n_items))
    # per modality: InfoNCE on users, then on items; alignment likewise
    assert cl_sizes == [k_u, k_i] * len(tiny.features)
    assert align_sizes == [k_u, k_i] * len(tiny.features)


def test_cl_max_nodes_must_allow_a_negative():
    with pytest.raises(DiffCLError, match="cl_max_nodes"):
        DiffCLConfig(cl_max_nodes=1)


# ---------------------------------------------------------------------- alignment inside the model
def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_moments_alignment_in_the_model_matches_its_formula(tiny, batch):
    users, pos, neg = batch
    model = make(tiny, use_cl=False, align_kind="moments", cl_max_nodes=None, lambda_align=0.7)
    terms = model.loss(users, pos, neg)
    with torch.no_grad():
        views = model.view_embeddings()
    uu = np.unique(users.numpy())
    ii = np.unique(np.concatenate([pos.numpy(), neg.numpy()]))

    def moments(a, b):
        # mean_d |μ_d^a - μ_d^b| + mean_d |σ²_d^a - σ²_d^b|, σ² = 1/B Σ (x - μ)²
        return np.abs(a.mean(0) - b.mean(0)).mean() + np.abs(a.var(0, ddof=0) - b.var(0, ddof=0)).mean()

    expected = 0.0
    for m in tiny.features:
        expected += moments(np_(views[m][0])[uu], np_(views["id"][0])[uu])
        expected += moments(np_(views[m][1])[ii], np_(views["id"][1])[ii])
    assert terms["align"].item() == pytest.approx(0.7 * expected, rel=1e-5)
    # towards sg(h^id): the ID tables receive no gradient from the alignment term
    terms["align"].backward()
    assert grad_norm([model.item_emb.weight, model.user_emb["id"].weight]) == 0.0
    assert all(grad_norm(model.proj[m].parameters()) > 0 for m in tiny.features)


def test_mentor_alignment_in_the_model_matches_its_formula(tiny, batch):
    model = make(tiny, use_cl=False, align_kind="mentor", lambda_align=0.3)
    terms = model.loss(*batch)
    with torch.no_grad():
        views = model.view_embeddings()
        fused_u, fused_i = model.fuse(views)
    mods = list(tiny.features)

    def pairs_distance(tables):
        # Σ over unordered pairs |var(A) - var(B)| + |mean(A) - mean(B)|, scalars over all entries, unbiased var
        return sum(abs(a.var(ddof=1) - b.var(ddof=1)) + abs(a.mean() - b.mean())
                   for a, b in itertools.combinations(tables, 2))

    items = [np_(views["id"][1]), np_(fused_i)] + [np_(views[m][1]) for m in mods]
    users = [np_(views["id"][0]), np_(fused_u)] + [np_(views[m][0]) for m in mods]
    expected = pairs_distance(items) + pairs_distance(users)
    # whole tables: the batch does not matter
    assert terms["align"].item() == pytest.approx(0.3 * expected, rel=1e-5)
    other = (torch.arange(5), torch.arange(5), torch.arange(5, 10))
    assert model.loss(*other)["align"].item() == pytest.approx(terms["align"].item(), rel=1e-6)
