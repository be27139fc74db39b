"""Tests of diffcl_lite.graphs: user-item adjacency, LightGCN, kNN item-item graph."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from diffcl_lite.errors import DiffCLError
from diffcl_lite.graphs import (
    bipartite_adjacency,
    default_modality_weights,
    item_item_graph,
    knn_graph,
    knn_indices,
    lightgcn_propagate,
    normalized_adjacency_scipy,
    propagate_layers,
)

# 3 users, 3 items. User 2 has no interaction (isolated); (0, 1) appears twice.
N_USERS, N_ITEMS = 3, 3
TRAIN = np.array([[0, 0], [0, 1], [0, 1], [1, 1], [1, 2]], dtype=np.int64)


def dense_reference(n_users: int, n_items: int, train: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 computed densely, the textbook way."""
    n = n_users + n_items
    a = np.zeros((n, n))
    for u, i in train:
        a[u, n_users + i] = 1.0
        a[n_users + i, u] = 1.0
    deg = a.sum(1)
    with np.errstate(divide="ignore"):
        d = np.where(deg > 0, deg ** -0.5, 0.0)
    return d[:, None] * a * d[None, :]


# ------------------------------------------------------------------ user-item adjacency
def test_bipartite_adjacency_matches_dense_formula_and_hand_values():
    adj = bipartite_adjacency(N_USERS, N_ITEMS, TRAIN)
    assert adj.layout == torch.sparse_csr and adj.dtype == torch.float32
    dense = adj.to_dense().numpy()
    np.testing.assert_allclose(dense, dense_reference(N_USERS, N_ITEMS, TRAIN), atol=1e-7)
    # degrees: u0=2, u1=2, u2=0, i0=1, i1=2 (duplicate collapsed), i2=1
    assert dense[0, 3] == pytest.approx(1 / np.sqrt(2 * 1))
    assert dense[0, 4] == pytest.approx(1 / np.sqrt(2 * 2))
    assert dense[1, 5] == pytest.approx(1 / np.sqrt(2 * 1))
    # isolated user 2: zero row and column, no NaN/inf
    assert np.isfinite(dense).all()
    assert not dense[2].any() and not dense[:, 2].any()
    # symmetric, no self loops, binary graph (duplicate (0,1) collapsed): 4 edges -> 8 non-zeros
    np.testing.assert_allclose(dense, dense.T)
    assert not np.diag(dense).any()
    assert int((dense != 0).sum()) == 8


def test_bipartite_adjacency_coo_equals_csr_and_scipy():
    csr = bipartite_adjacency(N_USERS, N_ITEMS, TRAIN, layout="csr")
    coo = bipartite_adjacency(N_USERS, N_ITEMS, TRAIN, layout="coo")
    assert coo.layout == torch.sparse_coo and coo.is_coalesced()
    torch.testing.assert_close(csr.to_dense(), coo.to_dense())
    ref = normalized_adjacency_scipy(N_USERS, N_ITEMS, TRAIN)
    assert sp.isspmatrix_csr(ref)
    np.testing.assert_allclose(ref.toarray(), csr.to_dense().numpy(), atol=1e-7)


def test_bipartite_adjacency_rejects_bad_ids():
    with pytest.raises(DiffCLError, match="n_items"):
        bipartite_adjacency(3, 3, np.array([[0, 3]]))
    with pytest.raises(DiffCLError, match="train"):
        bipartite_adjacency(3, 3, np.array([0, 1, 2]))
    with pytest.raises(DiffCLError, match="layout"):
        bipartite_adjacency(3, 3, TRAIN, layout="dense")


# ------------------------------------------------------------------ LightGCN
def test_lightgcn_equals_dense_and_gradients_reach_x():
    rng = np.random.default_rng(0)
    n_users, n_items = 20, 15
    train = np.stack([rng.integers(0, n_users, 80), rng.integers(0, n_items, 80)], 1)
    a_dense = torch.tensor(dense_reference(n_users, n_items, train), dtype=torch.float32)
    x = torch.randn(n_users + n_items, 4, requires_grad=True)
    expected = (x + a_dense @ x + a_dense @ (a_dense @ x) + a_dense @ (a_dense @ (a_dense @ x))) / 4
    for layout in ("csr", "coo"):
        adj = bipartite_adjacency(n_users, n_items, train, layout=layout)
        out = lightgcn_propagate(adj, x, 3)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        (grad,) = torch.autograd.grad((out ** 2).sum(), x)
        (grad_ref,) = torch.autograd.grad((expected ** 2).sum(), x, retain_graph=True)
        assert grad.abs().sum() > 0
        torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-5)
    layers = propagate_layers(bipartite_adjacency(n_users, n_items, train), x, 2)
    assert len(layers) == 3 and layers[0] is x
    torch.testing.assert_close(layers[2], a_dense @ (a_dense @ x), atol=1e-5, rtol=1e-5)


def test_csr_and_coo_propagate_identically():
    rng = np.random.default_rng(1)
    train = np.stack([rng.integers(0, 30, 200), rng.integers(0, 40, 200)], 1)
    x = torch.randn(70, 8)
    out_csr = lightgcn_propagate(bipartite_adjacency(30, 40, train, layout="csr"), x, 2)
    out_coo = lightgcn_propagate(bipartite_adjacency(30, 40, train, layout="coo"), x, 2)
    torch.testing.assert_close(out_csr, out_coo, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ kNN
def brute_force_knn(feats: np.ndarray, k: int) -> np.ndarray:
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def test_knn_indices_match_brute_force_and_blocking():
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((37, 6)).astype(np.float32)
    k = 4
    idx, sim = knn_indices(feats, k=k, block_size=2048)
    ref = brute_force_knn(feats.astype(np.float64), k)
    np.testing.assert_array_equal(idx.numpy(), ref)
    # similarities are the cosines, sorted in decreasing order
    xn = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(sim.numpy(), np.take_along_axis(xn @ xn.T, ref, 1), atol=1e-5)
    assert (sim[:, :-1] >= sim[:, 1:]).all()
    # blockwise (3 x 3 tiles) equals one block
    idx3, sim3 = knn_indices(feats, k=k, block_size=3)
    np.testing.assert_array_equal(idx3.numpy(), idx.numpy())
    torch.testing.assert_close(sim3, sim, atol=1e-6, rtol=1e-6)
    # no self loops, k distinct neighbours per row
    assert not (idx == torch.arange(37)[:, None]).any()
    assert all(len(set(row)) == k for row in idx.tolist())


def test_knn_graph_normalisation_formula_and_structure():
    rng = np.random.default_rng(3)
    feats = rng.random((25, 5)).astype(np.float32)
    k = 3
    g = knn_graph(feats, k=k, block_size=4)
    assert g.layout == torch.sparse_csr and g.dtype == torch.float32
    dense = g.to_dense().numpy()
    # S_ij = 1 for the top-k of row i (not symmetrised), D = row sums, S_hat = D^-1/2 S D^-1/2
    s = np.zeros((25, 25))
    np.put_along_axis(s, brute_force_knn(feats.astype(np.float64), k), 1.0, axis=1)
    d = s.sum(1) ** -0.5
    np.testing.assert_allclose(dense, d[:, None] * s * d[None, :], atol=1e-7)
    assert ((dense != 0).sum(1) == k).all()
    assert not np.diag(dense).any()
    np.testing.assert_allclose(dense[dense != 0], 1.0 / k, rtol=1e-6)
    coo = knn_graph(feats, k=k, layout="coo")
    assert coo.layout == torch.sparse_coo
    np.testing.assert_allclose(coo.to_dense().numpy(), dense, atol=1e-7)


def test_knn_zero_feature_row_is_isolated_without_nan():
    rng = np.random.default_rng(4)
    feats = rng.random((12, 4)).astype(np.float32)
    feats[5] = 0.0
    idx, sim = knn_indices(feats, k=3)
    assert torch.isfinite(sim).all()
    assert (sim[5] == 0).all()
    dense = knn_graph(feats, k=3).to_dense()
    assert torch.isfinite(dense).all()
    assert not dense[5].any() and not dense[:, 5].any()
    assert ((dense != 0).sum(1)[torch.arange(12) != 5] == 3).all()


@pytest.mark.parametrize("k", [0, 5, 6])
def test_knn_invalid_k_raises_naming_k(k):
    feats = np.random.default_rng(5).random((5, 3)).astype(np.float32)
    with pytest.raises(DiffCLError, match=r"k=") as err:
        knn_graph(feats, k=k)
    assert "n_items=5" in str(err.value)


def test_knn_nan_or_inf_features_raise():
    feats = np.random.default_rng(6).random((8, 3)).astype(np.float32)
    feats[2, 1] = np.nan
    with pytest.raises(DiffCLError, match="NaN"):
        knn_graph(feats, k=2)
    feats[2, 1] = np.inf
    with pytest.raises(DiffCLError, match="inf"):
        knn_indices(feats, k=2)


# ------------------------------------------------------------------ fused item-item graph
def _modalities(seed: int = 7, n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.random((n, 6)).astype(np.float32),
        "text": rng.standard_normal((n, 4)).astype(np.float32),
    }


def test_item_item_graph_default_weights_image_text():
    feats = _modalities()
    assert default_modality_weights(["image", "text"]) == {"image": 0.1, "text": 0.9}
    assert default_modality_weights(["image", "audio", "text"]) == pytest.approx(
        {"image": 1 / 3, "audio": 1 / 3, "text": 1 / 3}
    )
    fused = item_item_graph(feats, k=4).to_dense()
    expected = 0.1 * knn_graph(feats["image"], k=4).to_dense() + 0.9 * knn_graph(feats["text"], k=4).to_dense()
    torch.testing.assert_close(fused, expected)
    # explicit weights are normalised to sum 1
    fused2 = item_item_graph(feats, k=4, weights={"image": 1.0, "text": 3.0}).to_dense()
    expected2 = 0.25 * knn_graph(feats["image"], k=4).to_dense() + 0.75 * knn_graph(feats["text"], k=4).to_dense()
    torch.testing.assert_close(fused2, expected2)
    # three modalities: equal weights
    feats3 = {**feats, "audio": np.random.default_rng(8).random((30, 3)).astype(np.float32)}
    fused3 = item_item_graph(feats3, k=4).to_dense()
    expected3 = sum(knn_graph(v, k=4).to_dense() for v in feats3.values()) / 3
    torch.testing.assert_close(fused3, expected3)


def test_item_item_graph_rejects_unknown_weight_names():
    with pytest.raises(DiffCLError, match="audio"):
        item_item_graph(_modalities(), k=4, weights={"image": 0.5, "text": 0.5, "audio": 1.0})
    with pytest.raises(DiffCLError, match="k="):
        item_item_graph(_modalities(n=6), k=6)


def test_item_item_graph_cache_hit_key_and_atomic_write(tmp_path, monkeypatch):
    import diffcl_lite.graphs as graphs

    feats = _modalities()
    first = item_item_graph(feats, k=4, cache_dir=tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 1 and files[0].endswith(".pt")  # no temporary file left behind
    blob = torch.load(tmp_path / files[0], weights_only=True)
    assert set(blob) >= {"indices", "values", "size"}

    # second call: loaded from the cache, the kNN is not recomputed
    def fail(*args, **kwargs):
        raise AssertionError("knn_graph called although the graph is cached")

    monkeypatch.setattr(graphs, "knn_graph", fail)
    second = item_item_graph(feats, k=4, cache_dir=tmp_path)
    torch.testing.assert_close(first.to_dense(), second.to_dense())
    monkeypatch.undo()

    # changing the features, k or the weights changes the key -> a new file
    changed = {"image": feats["image"].copy(), "text": feats["text"]}
    changed["image"][0, 0] += 1.0
    item_item_graph(changed, k=4, cache_dir=tmp_path)
    item_item_graph(feats, k=5, cache_dir=tmp_path)
    item_item_graph(feats, k=4, weights={"image": 0.5, "text": 0.5}, cache_dir=tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 4 and all(f.endswith(".pt") and not f.startswith(".") for f in files)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_symmetric_propagation_gives_the_same_values_and_gradients(layout):
    from diffcl_lite.graphs import bipartite_adjacency, lightgcn_propagate

    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 30, 200), rng.integers(0, 20, 200)], axis=1)
    adj = bipartite_adjacency(30, 20, train, layout=layout)
    w = torch.randn(50, 4)
    grads = []
    for symmetric in (False, True):
        x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        out = lightgcn_propagate(adj, x, 2, symmetric=symmetric)
        (out * w).sum().backward()
        grads.append((out.detach(), x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_degree_sensitive_edge_sample_keeps_a_fraction_and_prefers_rare_edges():
    from diffcl_lite.graphs import degree_sensitive_edge_sample

    rng = np.random.default_rng(0)
    # user 0 and item 0 are popular: every user has item 0, user 0 has every item
    pairs = {(u, 0) for u in range(40)} | {(0, i) for i in range(30)} | {(int(u), int(i)) for u, i in
                                                                       zip(rng.integers(0, 40, 60), rng.integers(0, 30, 60))}
    train = np.array(sorted(pairs))
    n = len(train)
    g = torch.Generator().manual_seed(0)
    kept = degree_sensitive_edge_sample(40, 30, train, keep=0.5, generator=g)
    assert len(kept) == int(n * 0.5)
    assert {tuple(p) for p in kept} <= pairs and len({tuple(p) for p in kept}) == len(kept)
    # p ∝ 1/sqrt(d_u d_i): edges of popular nodes are pruned first, over many draws
    d_u, d_i = np.bincount(train[:, 0], minlength=40), np.bincount(train[:, 1], minlength=30)
    w = lambda e: (1 / np.sqrt(d_u[e[:, 0]] * d_i[e[:, 1]])).mean()  # noqa: E731
    means = [w(degree_sensitive_edge_sample(40, 30, train, keep=0.3, generator=g)) for _ in range(20)]
    assert np.mean(means) > w(train)
    again = degree_sensitive_edge_sample(40, 30, train, keep=0.5, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(kept, again)
    with pytest.raises(DiffCLError, match="keep"):
        degree_sensitive_edge_sample(40, 30, train, keep=0.0)


def test_spmm_with_precomputed_transpose_matches_torch_values_and_gradients():
    from diffcl_lite.graphs import knn_graph, sparse_transpose, spmm_t

    torch.manual_seed(0)
    g = knn_graph(torch.randn(30, 5), k=4)  # a directed kNN graph: not symmetric
    x1 = torch.randn(30, 3, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1 = torch.sparse.mm(g, x1)
    y2 = spmm_t(g, sparse_transpose(g), x2)
    w = torch.randn(30, 3)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    assert torch.allclose(y1, y2, atol=1e-6) and torch.allclose(x1.grad, x2.grad, atol=1e-6)


def test_column_blocked_propagation_gives_the_same_values_and_gradients():
    from diffcl_lite.graphs import bipartite_adjacency, lightgcn_propagate

    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 20, 120), rng.integers(0, 15, 120)], 1)
    adj = bipartite_adjacency(20, 15, train)
    x1 = torch.randn(35, 10, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1 = lightgcn_propagate(adj, x1, 2, symmetric=True)
    y2 = lightgcn_propagate(adj, x2, 2, symmetric=True, column_block=4)
    w = torch.randn(35, 10)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    assert torch.allclose(y1, y2, atol=1e-6) and torch.allclose(x1.grad, x2.grad, atol=1e-6)
