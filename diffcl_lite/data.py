"""The dataset container, the embedded synthetic dataset, and the per-user split.

Introduced in notebook 00 (welcome): ``make_synthetic()`` is the dataset every notebook uses by
default, ``RecDataset.summary()`` its deterministic summary block.

A dataset is: users ``0..n_users-1``, items ``0..n_items-1``, binary interactions split into
train / valid / test (arrays of ``(user, item)`` rows), and named modality features
``{name: float32 array (n_items, d_name)}`` where row ``i`` describes item ``i``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import DataFormatError, DiffCLError

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "RecDataset", "split_per_user", "make_synthetic"]

SPLITS = ("train", "valid", "test")


def _as_pairs(arr: Any, what: str, source: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise DataFormatError(
            f"{source}: {what} must be an integer array of shape (n, 2) with columns (user, item); "
            f"got shape {a.shape}. Fix: stack user and item ids as two columns."
        )
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise DataFormatError(f"{source}: {what} holds non-integer ids (dtype {a.dtype}). Fix: map ids to 0..n-1 integers.")
    return a.astype(np.int64, copy=False)


@dataclass
class RecDataset:
    """Users, items, train/valid/test interactions and named item features.

    ``item_labels`` (ground-truth topics) exist only for synthetic data; they colour the plots
    of notebooks 02, 06 and 07 and give the neighbourhood-purity scores.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    item_labels: np.ndarray | None = None
    user_labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = str(self.meta.get("source", self.name))
        self.n_users = int(self.n_users)
        self.n_items = int(self.n_items)
        self.train = _as_pairs(self.train, "train", src)
        self.valid = _as_pairs(self.valid, "valid", src)
        self.test = _as_pairs(self.test, "test", src)
        self.features = {str(k): np.asarray(v) for k, v in dict(self.features).items()}

    # ------------------------------------------------------------------ checks
    def validate(self, source: str | None = None) -> "RecDataset":
        """Check ids, shapes and values; raise ``DataFormatError`` naming the problem and the fix.

        Float16 features are converted to float32 (DiffMM ships float16). Returns ``self``.
        """
        src = source or str(self.meta.get("source", self.name))
        if self.n_users <= 0 or self.n_items <= 0:
            raise DataFormatError(f"{src}: n_users={self.n_users}, n_items={self.n_items}; both must be positive.")
        for split in SPLITS:
            pairs = getattr(self, split)
            if len(pairs) == 0:
                raise DataFormatError(
                    f"{src}: the {split} split has no users (0 interactions). Fix: check the split labels "
                    f"of the file, or build the splits with diffcl_lite.data.split_per_user()."
                )
            for col, limit, what in ((0, self.n_users, "user"), (1, self.n_items, "item")):
                ids = pairs[:, col]
                if ids.min() < 0:
                    bad = int(ids[ids < 0][0])
                    raise DataFormatError(f"{src}: {split} holds a negative {what} id ({bad}). Fix: ids must be 0..{limit - 1}.")
                if ids.max() >= limit:
                    bad = int(ids.max())
                    raise DataFormatError(
                        f"{src}: {split} holds {what} id {bad}, out of range for n_{what}s={limit}. "
                        f"Fix: remap ids to 0..n-1 or pass the right n_{what}s."
                    )
        for name, feat in list(self.features.items()):
            if feat.ndim != 2:
                raise DataFormatError(f"{src}: feature '{name}' must be 2-D (n_items, d); got shape {feat.shape}.")
            if feat.shape[0] != self.n_items:
                raise DataFormatError(
                    f"{src}: feature '{name}' has {feat.shape[0]} rows but the dataset has n_items={self.n_items}. "
                    f"Fix: row i must describe item i; use the feature file that belongs to this interaction data."
                )
            if not np.issubdtype(feat.dtype, np.floating):
                feat = feat.astype(np.float32)
            if feat.dtype != np.float32:
                feat = feat.astype(np.float32)
            if not np.all(np.isfinite(feat)):
                bad_rows = np.where(~np.all(np.isfinite(feat), axis=1))[0]
                raise DataFormatError(
                    f"{src}: feature '{name}' holds NaN or inf in {len(bad_rows)} rows (first: item {int(bad_rows[0])}). "
                    f"Fix: impute or zero those rows before loading (e.g. np.nan_to_num)."
                )
            self.features[name] = feat
        for labels, n, what in ((self.item_labels, self.n_items, "item_labels"), (self.user_labels, self.n_users, "user_labels")):
            if labels is not None and len(labels) != n:
                raise DataFormatError(f"{src}: {what} has length {len(labels)}, expected {n}.")
        return self

    # ------------------------------------------------------------------ views
    @property
    def modalities(self) -> list[str]:
        """Names of the modality features, in order."""
        return list(self.features)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DiffCLError(f"split={name!r} is not one of {SPLITS}.")
        return getattr(self, name)

    def interaction_matrix(self, split: str = "train") -> sp.csr_matrix:
        """Binary user x item CSR matrix of one split (duplicates collapsed)."""
        pairs = self.split(split)
        m = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def train_matrix(self) -> sp.csr_matrix:
        """Binary user x item CSR matrix of the train interactions."""
        return self.interaction_matrix("train")

    def positives(self, split: str = "train") -> list[np.ndarray]:
        """For each user, the sorted array of items it interacted with in ``split``."""
        m = self.interaction_matrix(split)
        return [m.indices[m.indptr[u] : m.indptr[u + 1]].astype(np.int64) for u in range(self.n_users)]

    def item_degrees(self, split: str = "train") -> np.ndarray:
        return np.asarray(self.interaction_matrix(split).sum(axis=0)).ravel().astype(np.int64)

    def user_degrees(self, split: str = "train") -> np.ndarray:
        return np.asarray(self.interaction_matrix(split).sum(axis=1)).ravel().astype(np.int64)

    def summary(self) -> dict[str, Any]:
        """A deterministic summary (counts, density, degrees, modalities) for notebook golden cells."""
        n_inter = {s: int(len(self.split(s))) for s in SPLITS}
        total = sum(n_inter.values())
        ud = self.user_degrees("train")
        idg = self.item_degrees("train")
        out: dict[str, Any] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": total,
            **{f"{s}_interactions": n for s, n in n_inter.items()},
            "density": round(total / (self.n_users * self.n_items), 6),
            "train_user_degree_median": float(np.median(ud)),
            "train_item_degree_median": float(np.median(idg)),
            "cold_items_in_train": int((idg == 0).sum()),
            "modalities": {k: int(v.shape[1]) for k, v in self.features.items()},
        }
        if self.item_labels is not None:
            out["topics"] = int(len(np.unique(self.item_labels)))
        return out

    def __repr__(self) -> str:  # short, for notebooks
        mods = ", ".join(f"{k}:{v.shape[1]}" for k, v in self.features.items()) or "none"
        return (
            f"RecDataset({self.name!r}, users={self.n_users}, items={self.n_items}, train={len(self.train)}, "
            f"valid={len(self.valid)}, test={len(self.test)}, modalities=[{mods}])"
        )


# ---------------------------------------------------------------------- splitting
def split_per_user(
    pairs: np.ndarray,
    n_users: int | None = None,
    n_items: int | None = None,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    timestamps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split raw interactions per user into train / valid / test (MMRec rule).

    For a user with ``n >= 10`` interactions: ``round(ratios[1] * n)`` valid and
    ``round(ratios[2] * n)`` test (at least one each), the rest train. For ``3 <= n < 10``:
    ``n-2`` / 1 / 1. Users with fewer than 3 interactions keep all of them in train (they cannot
    be evaluated). Interactions are ordered by ``timestamps`` when given (latest go to test, as in
    MMRec), otherwise shuffled with ``seed``. Duplicate (user, item) rows are dropped first.
    """
    pairs = _as_pairs(pairs, "pairs", "split_per_user")
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise DiffCLError(f"ratios={ratios!r} must be three non-negative numbers that sum to 1, e.g. (0.8, 0.1, 0.1).")
    if len(pairs) == 0:
        raise DiffCLError("split_per_user: no interactions given; there is nothing to split.")
    _, keep = np.unique(pairs, axis=0, return_index=True)
    keep = np.sort(keep)
    if len(keep) < len(pairs):
        log.warning("split_per_user: dropped %d duplicate (user, item) rows", len(pairs) - len(keep))
    pairs = pairs[keep]
    rng = np.random.default_rng(seed)
    if timestamps is not None:
        ts = np.asarray(timestamps)[keep]
        order = np.lexsort((rng.random(len(pairs)), ts, pairs[:, 0]))
    else:
        order = np.lexsort((rng.random(len(pairs)), pairs[:, 0]))
    pairs = pairs[order]
    users, starts, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    train_idx, valid_idx, test_idx = [], [], []
    for s, n in zip(starts, counts):
        idx = np.arange(s, s + n)
        if n < 3:
            train_idx.append(idx)
            continue
        if n < 10:
            n_valid, n_test = 1, 1
        else:
            n_valid = max(1, int(round(ratios[1] * n)))
            n_test = max(1, int(round(ratios[2] * n)))
        n_train = n - n_valid - n_test
        train_idx.append(idx[:n_train])
        valid_idx.append(idx[n_train : n_train + n_valid])
        test_idx.append(idx[n_train + n_valid :])
    cat = lambda parts: pairs[np.concatenate(parts)] if parts else np.zeros((0, 2), np.int64)  # noqa: E731
    return cat(train_idx), cat(valid_idx), cat(test_idx)


# ---------------------------------------------------------------------- synthetic data
# The generator uses only operations whose result is the same on every CPU and library version:
# NumPy's Generator streams, IEEE-exact + - * / sqrt, and scalar libm calls. Matrix products go
# through BLAS, whose kernels (FMA or not, blocking) differ by CPU, and NumPy's vectorised
# tanh/exp/log and argpartition differ by SIMD level (AVX2 vs AVX-512), so none of them is used.
def _fixed_order_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` summed over the shared axis in a fixed order, without BLAS: the same bits everywhere."""
    # (a b)_ij = sum_k a_ik b_kj, accumulated k = 0, 1, ... (each step an exactly rounded * and +)
    a2 = np.atleast_2d(a)
    out = a2[:, :1] * b[:1, :]
    for k in range(1, b.shape[0]):
        out = out + a2[:, k : k + 1] * b[k : k + 1, :]
    return out[0] if np.ndim(a) == 1 else out


def _squash(x: np.ndarray) -> np.ndarray:
    """A tanh-like squashing ``x / sqrt(1 + x^2)`` into (-1, 1), built from exactly rounded operations."""
    # s(x) = x / sqrt(1 + x^2)
    return x / np.sqrt(1.0 + x * x)


def make_synthetic(
    n_users: int = 1200,
    n_items: int = 800,
    n_topics: int = 8,
    interactions_per_user: float = 18.0,
    min_interactions: int = 5,
    popularity_skew: float = 1.0,
    taste_concentration: float = 0.15,
    item_purity: float = 0.75,
    modality_dims: dict[str, int] | None = None,
    modality_noise: dict[str, float] | None = None,
    noisy_item_fraction: float = 0.15,
    seed: int = 0,
    name: str = "synthetic",
    boilerplate_fraction: float = 0.0,
    swap_fraction: float = 0.0,
    informative_topic_fraction: dict[str, float] | None = None,
    cold_item_fraction: float = 0.0,
    cold_item_train_keep: int = 0,
) -> RecDataset:
    """The embedded synthetic multimodal dataset: topics, tastes, popularity, noisy modalities.

    Generative story (every number is an argument):

    - each item ``i`` has a ground-truth topic ``y_i`` and a topic mixture
      ``theta_i = item_purity * onehot(y_i) + (1 - item_purity) * Dirichlet(1)``;
    - each user ``u`` has a topic taste ``pi_u ~ Dirichlet(taste_concentration)`` (small values:
      users like few topics) and ``n_u ~ min_interactions + Poisson(interactions_per_user - min)``
      interactions;
    - items have a popularity ``p_i`` (log-normal with spread ``popularity_skew``);
      user ``u`` picks ``n_u`` distinct items with probability ``∝ (pi_u · theta_i) * p_i``
      (sampling without replacement by exponential keys);
    - modality ``m`` of item ``i`` is ``s(theta_i W_m) + noise_m * N(0, I)`` with its own
      random map ``W_m`` and the tanh-like squashing ``s(x) = x / sqrt(1 + x^2)``; for a fraction ``noisy_item_fraction`` of items one modality (chosen at
      random) is replaced by pure noise — the "noisy modality" situation DiffCL is meant to
      withstand. ``meta["noisy_modality"][i]`` names it (or is ``""``).

    Misleading modalities and cold items (all off by default; :func:`_mislead_modalities` and
    :func:`_make_items_rare` describe them, the ``synthetic-hard`` preset turns them on):
    ``boilerplate_fraction``, ``swap_fraction``, ``informative_topic_fraction``,
    ``cold_item_fraction``, ``cold_item_train_keep``. They draw from their own random stream,
    so turning them off leaves every other number of the dataset unchanged.

    The interactions are split per user with :func:`split_per_user`. The same arguments give
    bit-identical data on every machine (no BLAS, no SIMD-dependent maths; ``tests`` pin checksums).
    """
    _check_synthetic_args(n_users, n_items, n_topics, interactions_per_user, item_purity, noisy_item_fraction)
    modality_dims = dict(modality_dims or {"image": 64, "text": 32})
    noise = {"image": 0.6, "text": 0.4, **(modality_noise or {})}
    rng = np.random.default_rng(seed)

    item_labels = rng.integers(0, n_topics, size=n_items)
    theta = item_purity * np.eye(n_topics)[item_labels] + (1 - item_purity) * rng.dirichlet(np.ones(n_topics), size=n_items)
    taste = rng.dirichlet(np.full(n_topics, taste_concentration), size=n_users)
    user_labels = taste.argmax(axis=1)
    # p_i = exp(skew * z_i), z_i ~ N(0, 1)   (scalar libm exp: no SIMD variant that differs by CPU)
    popularity = np.array([math.exp(popularity_skew * z) for z in rng.standard_normal(n_items).tolist()])

    pairs = _sample_interactions(rng, taste, theta, popularity, interactions_per_user, min_interactions)
    train, valid, test = split_per_user(pairs, n_users, n_items, seed=seed)
    names = list(modality_dims)
    features, noisy_modality = _modality_features(rng, theta, modality_dims, noise, noisy_item_fraction)

    meta = {
        "source": f"make_synthetic(seed={seed})",
        "generator": dict(n_topics=n_topics, interactions_per_user=interactions_per_user,
                          popularity_skew=popularity_skew, taste_concentration=taste_concentration,
                          item_purity=item_purity, modality_noise={m: noise.get(m, 0.5) for m in names},
                          noisy_item_fraction=noisy_item_fraction, seed=seed),
        "noisy_modality": noisy_modality,
        "popularity": popularity.astype(np.float32),
    }
    hard = _hard_options(boilerplate_fraction, swap_fraction, informative_topic_fraction, cold_item_fraction,
                         cold_item_train_keep, names)
    if hard:
        train, valid, test, hard_meta = _make_hard(features, item_labels, n_topics, (train, valid, test), n_users,
                                                   hard, seed)
        meta["generator"]["misleading"] = dict(hard)
        meta.update(hard_meta)
    return RecDataset(name=name, n_users=n_users, n_items=n_items, train=train, valid=valid, test=test,
                      features=features, item_labels=item_labels.astype(np.int64),
                      user_labels=user_labels.astype(np.int64), meta=meta).validate()


def _check_synthetic_args(n_users: int, n_items: int, n_topics: int, interactions_per_user: float,
                          item_purity: float, noisy_item_fraction: float) -> None:
    if n_users < 2 or n_items < 2 or n_topics < 1:
        raise DiffCLError(f"make_synthetic: n_users={n_users}, n_items={n_items}, n_topics={n_topics} are too small.")
    if not 0 <= noisy_item_fraction <= 1:
        raise DiffCLError(f"noisy_item_fraction={noisy_item_fraction} must lie in [0, 1].")
    if not 0 <= item_purity <= 1:
        raise DiffCLError(f"item_purity={item_purity} must lie in [0, 1].")
    if interactions_per_user >= n_items:
        raise DiffCLError(f"interactions_per_user={interactions_per_user} must be below n_items={n_items}.")


def _sample_interactions(rng: np.random.Generator, taste: np.ndarray, theta: np.ndarray, popularity: np.ndarray,
                         interactions_per_user: float, min_interactions: int) -> np.ndarray:
    """``(user, item)`` pairs, ``n_u`` distinct items per user drawn with ``p(i | u) ∝ (pi_u · theta_i) * p_i``."""
    n_users, n_items = len(taste), len(theta)
    theta_t = theta.T.copy()
    n_per_user = min_interactions + rng.poisson(max(interactions_per_user - min_interactions, 0.0), size=n_users)
    n_per_user = np.minimum(n_per_user, n_items - 1)
    rows = []
    block = max(1, 2**22 // n_items)  # users per block: about 32 MB of keys
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        # a_ui = (pi_u · theta_i) * p_i
        affinity = _fixed_order_dot(taste[start:stop], theta_t) * popularity + 1e-12
        # Sampling without replacement (Efraimidis-Spirakis): the n_u largest keys a_ui / E_ui with
        # E_ui ~ Exp(1). Same law as Gumbel-top-k on log a_ui (-log E is Gumbel), with no logarithm.
        keys = affinity / rng.standard_exponential((stop - start, n_items))
        for u in range(start, stop):
            # argpartition's order inside the top n_u depends on the CPU's SIMD sort: sort the ids
            items = np.sort(np.argpartition(-keys[u - start], n_per_user[u])[: n_per_user[u]])
            rows.append(np.stack([np.full(len(items), u), items], axis=1))
    return np.concatenate(rows).astype(np.int64)


def _modality_features(rng: np.random.Generator, theta: np.ndarray, modality_dims: dict[str, int],
                       noise: dict[str, float], noisy_item_fraction: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(features per modality, the noisy modality of each item or "")``: ``s(theta W_m) + noise_m N(0, I)``."""
    n_items, n_topics = theta.shape
    names = list(modality_dims)
    features: dict[str, np.ndarray] = {}
    noisy_modality = np.array([""] * n_items, dtype=object)
    noisy_items = rng.random(n_items) < noisy_item_fraction
    noisy_choice = rng.integers(0, len(names), size=n_items)
    for m_idx, m in enumerate(names):
        d = int(modality_dims[m])
        w = rng.standard_normal((n_topics, d)) * 1.5
        # x_i^m = s(theta_i W_m) + noise_m * N(0, I)
        x = _squash(_fixed_order_dot(theta, w)) + noise.get(m, 0.5) * rng.standard_normal((n_items, d))
        # a noisy modality is pure noise
        hit = noisy_items & (noisy_choice == m_idx)
        x[hit] = rng.standard_normal((int(hit.sum()), d))
        noisy_modality[hit] = m
        features[m] = x.astype(np.float32)
    return features, noisy_modality


# ---------------------------------------------------------------------- misleading modalities, cold items
def _make_hard(features: dict[str, np.ndarray], item_labels: np.ndarray, n_topics: int, splits: tuple, n_users: int,
               hard: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Mislead the modalities (``features`` in place) and make items rare; ``(train, valid, test, meta)``."""
    # a separate stream: the default data is the same with or without these options
    hard_rng = np.random.default_rng([seed, 0x4A5244])
    hard_meta = _mislead_modalities(features, item_labels, n_topics, hard, hard_rng)
    train, valid, test, hard_meta["cold_items"] = _make_items_rare(*splits, n_users, len(item_labels), hard, hard_rng)
    return train, valid, test, hard_meta


def _hard_options(boilerplate_fraction: float, swap_fraction: float, informative_topic_fraction: dict[str, float] | None,
                  cold_item_fraction: float, cold_item_train_keep: int, names: list[str]) -> dict[str, Any]:
    """Check the options of the hard regime; ``{}`` when all are off (the default data)."""
    for what, v in (("boilerplate_fraction", boilerplate_fraction), ("swap_fraction", swap_fraction),
                    ("cold_item_fraction", cold_item_fraction)):
        if not 0 <= v <= 1:
            raise DiffCLError(f"make_synthetic: {what}={v} must lie in [0, 1].")
    if int(cold_item_train_keep) != cold_item_train_keep or cold_item_train_keep < 0:
        raise DiffCLError(f"make_synthetic: cold_item_train_keep={cold_item_train_keep} must be an integer >= 0.")
    info = dict(informative_topic_fraction or {})
    for m, f in info.items():
        if m not in names:
            raise DiffCLError(f"make_synthetic: informative_topic_fraction names {m!r}, not a modality of {names}.")
        if not 0 <= f <= 1:
            raise DiffCLError(f"make_synthetic: informative_topic_fraction[{m!r}]={f} must lie in [0, 1].")
    if not (boilerplate_fraction or swap_fraction or cold_item_fraction or any(f < 1 for f in info.values())):
        return {}
    return {"boilerplate_fraction": float(boilerplate_fraction), "swap_fraction": float(swap_fraction),
            "informative_topic_fraction": {m: float(f) for m, f in info.items()},
            "cold_item_fraction": float(cold_item_fraction), "cold_item_train_keep": int(cold_item_train_keep)}


def _mislead_modalities(features: dict[str, np.ndarray], item_labels: np.ndarray, n_topics: int,
                        hard: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Modality noise that misleads a feature kNN graph instead of being ignored by it (in place).

    Isotropic noise on a few items only makes their kNN rows random, and a kNN graph simply
    ignores such items. Real catalogues mislead in structured ways, and these are the problems
    DiffCL states (noisy modalities that harm the item graph and random augmentations, and
    modalities whose semantics disagree, to be aligned through the ID view):

    - **boilerplate** (``boilerplate_fraction``): per modality, that share of items gets one of
      3 shared templates plus a little noise (stock photos, "no description" texts), whatever
      their topic: the kNN graph links them to each other across topics;
    - **swapped** (``swap_fraction``): per modality, that share of items exchange their rows in a
      random cycle (the wrong picture attached to a product): confident features of another item;
    - **informative for some topics only** (``informative_topic_fraction[m]``): modality ``m``
      separates only that share of the topics (drawn per modality); the rows of items of the other
      topics are shuffled among themselves, so ``m`` cannot tell those topics apart and its kNN
      neighbours there are of random (wrong) topics, while another modality may still separate them.

    Returns the ground truth for plots and checks: ``meta["misled_modality"][m]`` (per item:
    ``""``, ``"boilerplate"``, ``"swapped"`` or ``"uninformative"``) and
    ``meta["informative_topics"][m]``.
    """
    misled: dict[str, np.ndarray] = {}
    informative: dict[str, list[int]] = {}
    n_items = len(item_labels)
    for m, x in features.items():
        kind = np.array([""] * n_items, dtype=object)
        d = x.shape[1]
        frac = hard["informative_topic_fraction"].get(m, 1.0)
        n_info = int(round(frac * n_topics))
        topics = np.sort(rng.permutation(n_topics)[:n_info])
        informative[m] = [int(t) for t in topics]
        pool = np.where(~np.isin(item_labels, topics))[0]
        if len(pool) > 1:
            x[pool] = x[rng.permutation(pool)]
            kind[pool] = "uninformative"
        sw = np.where(rng.random(n_items) < hard["swap_fraction"])[0]
        if len(sw) > 1:
            # a cycle: item sw[j] gets the row of sw[j+1], nobody keeps its own
            order = rng.permutation(sw)
            x[order] = x[np.roll(order, -1)]
            kind[order] = "swapped"
        bp = np.where(rng.random(n_items) < hard["boilerplate_fraction"])[0]
        if len(bp):
            # template_c = s(1.5 z_c) with s(x) = x / sqrt(1 + x^2), z_c ~ N(0, I); row = template + 0.1 N(0, I)
            z = 1.5 * rng.standard_normal((3, d))
            templates = z / np.sqrt(1.0 + z * z)
            x[bp] = templates[rng.integers(0, 3, size=len(bp))] + 0.1 * rng.standard_normal((len(bp), d))
            kind[bp] = "boilerplate"
        features[m] = x.astype(np.float32)
        misled[m] = kind
    return {"misled_modality": misled, "informative_topics": informative}


def _make_items_rare(train: np.ndarray, valid: np.ndarray, test: np.ndarray, n_users: int, n_items: int,
                     hard: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cold and rare items: a share ``cold_item_fraction`` of items keeps at most
    ``cold_item_train_keep`` train interactions; the others move to valid or test (half each).

    This is where an item graph and modality features are supposed to help: the ID embedding of
    such an item is barely trained, but it still has features and feature neighbours. A move that
    would leave a user without train interactions is not made. Returns the new splits and the
    ids of the chosen items.
    """
    frac, keep = hard["cold_item_fraction"], hard["cold_item_train_keep"]
    chosen = np.where(rng.random(n_items) < frac)[0]
    if len(chosen) == 0:
        return train, valid, test, chosen.astype(np.int64)
    order = rng.permutation(len(train))
    is_chosen = np.zeros(n_items, dtype=bool)
    is_chosen[chosen] = True
    kept_per_item = np.zeros(n_items, dtype=np.int64)
    train_left = np.bincount(train[:, 0], minlength=n_users)
    move = np.zeros(len(train), dtype=bool)
    for r in order:  # visit train rows in random order: the kept ones are a random sample
        u, i = int(train[r, 0]), int(train[r, 1])
        if not is_chosen[i]:
            continue
        if kept_per_item[i] < keep or train_left[u] <= 1:
            kept_per_item[i] += 1
            continue
        move[r] = True
        train_left[u] -= 1
    moved = train[move]
    to_test = rng.random(len(moved)) < 0.5
    valid = np.concatenate([valid, moved[~to_test]]) if len(moved) else valid
    test = np.concatenate([test, moved[to_test]]) if len(moved) else test
    return train[~move], valid, test, chosen.astype(np.int64)
