import math

import numpy as np
import pytest
import torch

from diffcl_lite.data import RecDataset
from diffcl_lite.errors import DiffCLError
from diffcl_lite.evaluation import evaluate_embeddings, ranking_metrics


def test_ranking_metrics_hand_case():
    # user 0: hits at ranks 1 and 3, 2 relevant ; user 1: hit at rank 2, 5 relevant (more than K)
    hits = torch.tensor([[1, 0, 1], [0, 1, 0]])
    m = ranking_metrics(hits, torch.tensor([2, 5]), ks=(3,))
    assert m["recall@3"].tolist() == pytest.approx([1.0, 0.2])
    assert m["precision@3"].tolist() == pytest.approx([2 / 3, 1 / 3])
    dcg0 = 1 + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    dcg1 = 1 / math.log2(3)
    idcg1 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # truncated at K=3
    assert m["ndcg@3"].tolist() == pytest.approx([dcg0 / idcg0, dcg1 / idcg1])


def test_evaluate_masks_train_and_valid_and_skips_users_without_heldout():
    # 3 users, 5 items; scores make the ranking explicit: item score = item id for everyone
    data = RecDataset(
        name="hand", n_users=3, n_items=5,
        train=[[0, 4], [1, 0], [2, 1]],
        valid=[[0, 3], [1, 4]],
        test=[[0, 2], [1, 1], [1, 3]],   # user 2 has no test items: not averaged
    )
    users = torch.ones(3, 1)
    items = torch.arange(5, dtype=torch.float32).unsqueeze(1)
    # valid: user 0 ranks (train 4 masked) 3,2,1 -> hit at 1 ; user 1 ranks (0 masked) 4,3,2 -> hit at 1
    v = evaluate_embeddings(users, items, data, "valid", ks=(1, 2), batch_size=2)
    assert v["recall@1"] == pytest.approx(1.0)
    # test: user 0 masks 4 and 3 -> ranks 2,1,0 -> hit at 1 (1 relevant) ; user 1 masks 0 and 4 -> 3,2,1 -> hit rank1, rank3
    t = evaluate_embeddings(users, items, data, "test", ks=(1, 2), batch_size=1)
    assert t["recall@1"] == pytest.approx((1.0 + 0.5) / 2)
    assert t["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert t["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    ndcg_u1 = 1 / (1 + 1 / math.log2(3))
    assert t["ndcg@2"] == pytest.approx((1.0 + ndcg_u1) / 2)


def test_evaluate_rejects_k_above_items():
    data = RecDataset(name="h", n_users=1, n_items=2, train=[[0, 0]], valid=[[0, 1]], test=[[0, 1]])
    with pytest.raises(DiffCLError, match="K=20"):
        evaluate_embeddings(torch.ones(1, 1), torch.ones(2, 1), data, "valid", ks=(20,))


def test_item_groups_and_group_recall_match_brute_force():
    from diffcl_lite.evaluation import group_recall, item_groups

    # 4 users, 10 items; train degrees: item 0: 4, 1: 3, 2: 2, 3..5: 1, 6..9: 0
    train = [[u, 0] for u in range(4)] + [[u, 1] for u in range(3)] + [[0, 2], [1, 2], [0, 3], [1, 4], [2, 5]]
    test = [[0, 6], [0, 1], [1, 7], [1, 3], [2, 0], [2, 8], [3, 4]]
    data = RecDataset(name="groups", n_users=4, n_items=10, train=train, valid=[[3, 9]], test=test)
    g = item_groups(data, cold_max_degree=0, head_fraction=0.2)
    # head: the 2 top-degree items (0, 1); cold: degree 0 (6..9); tail: the rest
    assert np.flatnonzero(g["head"]).tolist() == [0, 1]
    assert np.flatnonzero(g["cold"]).tolist() == [6, 7, 8, 9]
    assert np.flatnonzero(g["tail"]).tolist() == [2, 3, 4, 5]
    # cold_max_degree=1 moves the degree-1 items to cold; each item in exactly one group
    g1 = item_groups(data, cold_max_degree=1)
    assert np.flatnonzero(g1["cold"]).tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert (g1["cold"].astype(int) + g1["tail"] + g1["head"] == 1).all()
    rng = np.random.default_rng(0)
    top = torch.as_tensor(np.stack([rng.permutation(10)[:3] for _ in range(4)]))
    relevant = torch.zeros(4, 10, dtype=torch.bool)
    for u, i in test:
        relevant[u, i] = True
    for name, mask in g.items():
        got = group_recall(top, relevant, torch.as_tensor(mask), k=3).numpy()
        for u in range(4):  # brute force: |top_k ∩ T_u ∩ G| / |T_u ∩ G|, NaN without test items of G
            held = {i for uu, i in test if uu == u and mask[i]}
            if not held:
                assert np.isnan(got[u])
            else:
                assert got[u] == pytest.approx(len(held & set(top[u].tolist())) / len(held))
    with pytest.raises(DiffCLError, match="head_fraction"):
        item_groups(data, head_fraction=1.5)
