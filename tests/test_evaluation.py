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
