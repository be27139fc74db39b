"""The designed hard synthetic regime: misleading modalities and rare items, off by default."""
from __future__ import annotations

import numpy as np
import pytest

from diffcl_lite import datasets
from diffcl_lite.data import make_synthetic
from diffcl_lite.errors import DiffCLError

SMALL = dict(n_users=200, n_items=160, n_topics=4, interactions_per_user=9, seed=3)


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x}


def test_feature_options_leave_everything_else_unchanged():
    base = make_synthetic(**SMALL)
    hard = make_synthetic(**SMALL, boilerplate_fraction=0.2, swap_fraction=0.2,
                          informative_topic_fraction={"image": 0.5})
    for split in ("train", "valid", "test"):
        assert np.array_equal(base.split(split), hard.split(split))
    assert np.array_equal(base.item_labels, hard.item_labels)
    assert np.array_equal(base.meta["popularity"], hard.meta["popularity"])
    for m in base.features:
        kind = hard.meta["misled_modality"][m]
        clean = kind == ""
        assert np.array_equal(base.features[m][clean], hard.features[m][clean])
        assert not np.array_equal(base.features[m][~clean], hard.features[m][~clean])
        # swapped rows are rows of other items (before boilerplate), never the item's own
        sw = np.where(kind == "swapped")[0]
        assert len(sw) > 1
        assert all(not np.array_equal(hard.features[m][i], base.features[m][i]) for i in sw)
        # boilerplate rows of different topics sit near one of 3 templates
        bp = hard.features[m][kind == "boilerplate"]
        assert len(bp) > 3
        d = ((bp[:, None, :] - bp[None, :, :]) ** 2).mean(-1)
        assert (d < 0.05).sum(1).min() >= 2
    # text is informative for all topics here; image for 2 of 4, the others are shuffled among themselves
    assert hard.meta["informative_topics"]["text"] == [0, 1, 2, 3]
    info = hard.meta["informative_topics"]["image"]
    assert len(info) == 2
    pool = ~np.isin(hard.item_labels, info)
    kind = hard.meta["misled_modality"]["image"]
    assert set(kind[pool]) <= {"uninformative", "swapped", "boilerplate"} and set(kind[~pool]) <= {"", "swapped", "boilerplate"}
    untouched_pool = pool & (kind == "uninformative")
    assert _rows(hard.features["image"][untouched_pool]) <= _rows(base.features["image"][pool])


def test_rare_items_keep_at_most_one_train_interaction_and_nothing_is_lost():
    base = make_synthetic(**SMALL)
    hard = make_synthetic(**SMALL, cold_item_fraction=0.3, cold_item_train_keep=1)
    cold = hard.meta["cold_items"]
    assert 0.15 * SMALL["n_items"] < len(cold) < 0.45 * SMALL["n_items"]
    deg = hard.item_degrees("train")
    # at most one train interaction, except where moving it would leave a user without train data
    over = cold[deg[cold] > 1]
    assert len(over) <= 0.05 * len(cold)
    all_base = _rows(np.concatenate([base.train, base.valid, base.test]))
    all_hard = _rows(np.concatenate([hard.train, hard.valid, hard.test]))
    assert all_base == all_hard
    assert len(hard.train) + len(hard.valid) + len(hard.test) == len(all_hard)   # no pair in two splits
    assert (hard.user_degrees("train")[base.user_degrees("train") > 0] > 0).all()
    assert len(hard.test) > len(base.test) and len(hard.valid) > len(base.valid)


def test_options_are_checked():
    with pytest.raises(DiffCLError, match="swap_fraction"):
        make_synthetic(**SMALL, swap_fraction=1.5)
    with pytest.raises(DiffCLError, match="not a modality"):
        make_synthetic(**SMALL, informative_topic_fraction={"audio": 0.5})
    with pytest.raises(DiffCLError, match="cold_item_train_keep"):
        make_synthetic(**SMALL, cold_item_fraction=0.1, cold_item_train_keep=-1)
    assert "misled_modality" not in make_synthetic(**SMALL).meta


def test_synthetic_hard_preset():
    assert "synthetic-hard" in datasets.list_datasets()
    ds = datasets.load("synthetic-hard")
    assert (ds.n_users, ds.n_items) == (1500, 1200)
    assert ds.meta["generator"]["misleading"]["boilerplate_fraction"] == 0.1
    assert set(ds.meta["misled_modality"]) == {"image", "text"}
    assert ds.summary()["train_item_degree_median"] <= 5
