import numpy as np
import pytest

from diffcl_lite.data import RecDataset, make_synthetic, split_per_user
from diffcl_lite.errors import DataFormatError, DiffCLError


def tiny(**kw):
    base = dict(name="tiny", n_users=3, n_items=4, train=[[0, 0], [1, 1], [2, 2]], valid=[[0, 1]], test=[[1, 3]],
                features={"image": np.ones((4, 2), np.float32)})
    base.update(kw)
    return RecDataset(**base)


def test_synthetic_is_deterministic_and_valid():
    a, b = make_synthetic(n_users=200, n_items=100, seed=3), make_synthetic(n_users=200, n_items=100, seed=3)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.features["image"], b.features["image"])
    c = make_synthetic(n_users=200, n_items=100, seed=4)
    assert not np.array_equal(a.train, c.train)
    assert a.item_labels.shape == (100,)
    assert set(a.features) == {"image", "text"}
    # no overlap between splits and no duplicates
    keys = lambda p: set(map(tuple, p.tolist()))  # noqa: E731
    assert not keys(a.train) & keys(a.valid) and not keys(a.train) & keys(a.test) and not keys(a.valid) & keys(a.test)
    assert len(keys(a.train)) == len(a.train)


def test_synthetic_noisy_modality_fraction_and_topics_are_informative():
    d = make_synthetic(n_users=300, n_items=400, noisy_item_fraction=0.25, seed=1)
    noisy = d.meta["noisy_modality"] != ""
    assert 0.15 < noisy.mean() < 0.35
    # clean image features of the same topic are closer than of different topics
    x = d.features["image"][~noisy]
    y = d.item_labels[~noisy]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    assert sim[same].mean() > sim[~same].mean() + 0.2


def test_split_per_user_mmrec_rule():
    pairs = np.array([[0, i] for i in range(20)] + [[1, i] for i in range(5)] + [[2, 0], [2, 1]])
    tr, va, te = split_per_user(pairs, seed=0)
    count = lambda p, u: int((p[:, 0] == u).sum())  # noqa: E731
    assert (count(tr, 0), count(va, 0), count(te, 0)) == (16, 2, 2)
    assert (count(tr, 1), count(va, 1), count(te, 1)) == (3, 1, 1)
    assert (count(tr, 2), count(va, 2), count(te, 2)) == (2, 0, 0)


def test_split_by_timestamp_puts_latest_in_test():
    pairs = np.array([[0, i] for i in range(10)])
    ts = np.arange(10)[::-1]  # item 0 is the latest
    tr, va, te = split_per_user(pairs, timestamps=ts)
    assert te[:, 1].tolist() == [0] and va[:, 1].tolist() == [1]


def test_split_rejects_bad_ratios():
    with pytest.raises(DiffCLError, match="ratios"):
        split_per_user(np.array([[0, 1]]), ratios=(0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(train=[[0, 0], [5, 1]]), "user id 5"),
        (dict(train=[[0, -1]]), "negative item"),
        (dict(features={"image": np.ones((3, 2), np.float32)}), "3 rows"),
        (dict(features={"image": np.full((4, 2), np.nan, np.float32)}), "NaN"),
        (dict(features={"text": np.array([[np.inf, 0]] * 4, np.float32)}), "inf"),
        (dict(valid=np.zeros((0, 2), np.int64)), "valid split has no users"),
    ],
)
def test_validate_names_the_problem(change, match):
    with pytest.raises(DataFormatError, match=match):
        tiny(**change).validate()


def test_float16_features_become_float32_and_summary():
    d = tiny(features={"image": np.ones((4, 2), np.float16)}).validate()
    assert d.features["image"].dtype == np.float32
    s = d.summary()
    assert s["users"] == 3 and s["train_interactions"] == 3 and s["modalities"] == {"image": 2}
    assert d.positives("train")[1].tolist() == [1]
