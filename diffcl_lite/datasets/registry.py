"""The dataset registry: every named dataset, where its files come from and what it should look like.

A :class:`DatasetSpec` is either ``synthetic`` (a call of :func:`~diffcl_lite.data.make_synthetic`)
or ``remote`` (files pinned by size and git blob id, read with one of the two formats of
:mod:`diffcl_lite.datasets.formats`). :func:`data_card` gives the markdown card of each
(source, terms, sizes, citation) from ``diffcl_lite/datasets/cards/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DiffCLError

if TYPE_CHECKING:  # numpy / scipy are imported when a dataset is loaded, not for `data list`
    from ..data import RecDataset

DIFFMM_COMMIT = "fae20e642aeeaad4284be6f7fb3432ebb551da8e"
DIFFMM_BASE = f"https://raw.githubusercontent.com/HKUDS/DiffMM/{DIFFMM_COMMIT}/Datasets"


def _feature_bound(n_items: int, dim: int) -> int:
    """Upper bound of a ``(n_items, dim)`` ``.npy`` file: float64 values plus the largest header numpy writes."""
    return n_items * dim * 8 + 4096


def _pairs_pickle_bound(n_interactions: int) -> int:
    """Upper bound of a pickled coo matrix of ``n_interactions`` entries (int64 row/col, float64 values)."""
    return n_interactions * 24 + 65_536

#: Published sizes of the MMRec datasets: (users, items, interactions).
MMREC_PUBLISHED = {
    "baby": (19_445, 7_050, 160_792),
    "sports": (35_598, 18_357, 296_337),
    "clothing": (39_387, 23_033, 278_677),
}

__all__ = [
    "DIFFMM_COMMIT",
    "DIFFMM_BASE",
    "MMREC_PUBLISHED",
    "RemoteFile",
    "DatasetSpec",
    "REGISTRY",
    "register",
    "unregister",
    "list_datasets",
    "data_card",
]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote dataset.

    ``path`` is relative to the dataset's base URL and is also the file name in the cache.
    ``blob`` is the git blob sha1 of the file as served; ``size`` its exact length in bytes, or,
    when that was never published, ``max_size`` an upper bound (a transfer is cut beyond it and
    the blob id decides). Every registered file has one of the two. ``extract`` names the zip
    member to extract (the extracted file is stored under the member's base name).
    """

    path: str
    blob: str
    size: int | None = None
    extract: str | None = None
    max_size: int | None = None

    @property
    def final_name(self) -> str:
        """The name the usable file has in the cache folder."""
        return PurePosixPath(self.extract).name if self.extract else PurePosixPath(self.path).name

    @property
    def limit(self) -> int | None:
        """The most bytes a transfer of this file may carry (``size``, else ``max_size``)."""
        return self.size if self.size is not None else self.max_size


@dataclass
class DatasetSpec:
    """A named dataset: how to get it, how to read it, what it should look like.

    ``kind`` is ``"remote"`` (download ``files`` from ``base_url`` and read the cache folder with
    ``format``), or ``"synthetic"`` (call ``factory(**defaults, **kwargs)``). ``expected`` holds
    published sizes (``users``, ``items``, ``train``, ``valid``, ``test``, ``interactions``) that
    the loaded data is compared with (a warning when they differ). ``card`` is markdown or the
    name of a file in ``diffcl_lite/datasets/cards/``.
    """

    name: str
    kind: str
    description: str
    card: str = ""
    files: tuple[RemoteFile, ...] = ()
    base_url: str = ""
    format: str = "diffmm"
    factory: Callable[..., RecDataset] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add a dataset to :data:`REGISTRY` (``overwrite=True`` replaces one of the same name)."""
    if spec.kind not in ("remote", "synthetic"):
        raise DiffCLError(f"DatasetSpec.kind={spec.kind!r}; use 'remote' or 'synthetic'.")
    if ":" in spec.name or not spec.name:
        raise DiffCLError(f"dataset name {spec.name!r} must be non-empty and hold no ':'.")
    if spec.name in REGISTRY and not overwrite:
        raise DiffCLError(f"a dataset named {spec.name!r} is already registered; pass overwrite=True to replace it.")
    unsized = [rf.path for rf in spec.files if rf.limit is None or rf.limit <= 0]
    if unsized:
        raise DiffCLError(
            f"dataset {spec.name!r}: files {unsized} have no pinned size; give each RemoteFile size= (exact bytes) or "
            f"max_size= (an upper bound), so a mirror cannot send more than that."
        )
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset from :data:`REGISTRY` (no error if it is not there)."""
    REGISTRY.pop(name, None)


def _synthetic(**kwargs: Any) -> "RecDataset":
    from ..data import make_synthetic

    return make_synthetic(**kwargs)


register(
    DatasetSpec(
        name="synthetic",
        kind="synthetic",
        description="small synthetic multimodal dataset with known topics (1,200 users, 800 items); the notebook default",
        card="synthetic.md",
        factory=_synthetic,
    )
)
register(
    DatasetSpec(
        name="synthetic-sparse",
        kind="synthetic",
        description="sparser synthetic data (1,500 users, 1,200 items, ~9 interactions per user): the regime where modalities matter",
        card="synthetic.md",
        factory=_synthetic,
        defaults=dict(n_users=1_500, n_items=1_200, interactions_per_user=9.0, name="synthetic-sparse"),
    )
)
register(
    DatasetSpec(
        name="synthetic-hard",
        kind="synthetic",
        description="designed hard regime (1,500 users, 1,200 items, ~8 per user): boilerplate, swapped and "
                    "topic-blind modality features, 10% rare items",
        card="synthetic.md",
        factory=_synthetic,
        # The paper's three problems, made real (values fixed a priori, not tuned on any model):
        # sparsity (8 interactions per user, 10% of items rare with 1 train interaction), noisy
        # modalities that mislead a feature kNN graph (10% boilerplate, 10% swapped rows per
        # modality) and modalities that disagree (each separates only half of the topics, a
        # different half). See make_synthetic and data._mislead_modalities.
        defaults=dict(n_users=1_500, n_items=1_200, interactions_per_user=8.0, boilerplate_fraction=0.1,
                      swap_fraction=0.1, informative_topic_fraction={"image": 0.5, "text": 0.5},
                      cold_item_fraction=0.1, cold_item_train_keep=1, name="synthetic-hard"),
    )
)


def _synthetic_at_scale(name: str, description: str, n_users: int, n_items: int, n_interactions: int,
                        n_topics: int, modality_dims: dict[str, int]) -> DatasetSpec:
    """A synthetic dataset with the users, items, interactions and feature sizes of a real one (5-core)."""
    return DatasetSpec(
        name=name,
        kind="synthetic",
        description=description,
        card="synthetic.md",
        factory=_synthetic,
        # interactions per user = interactions / users; at least 5 each (5-core data)
        defaults=dict(n_users=n_users, n_items=n_items, n_topics=n_topics,
                      interactions_per_user=round(n_interactions / n_users, 2), min_interactions=5,
                      modality_dims=dict(modality_dims), name=name),
        expected={"users": n_users, "items": n_items, "interactions": n_interactions},
    )


# Amazon-Baby: 160,792 interactions / 19,445 users = 8.27 per user
register(_synthetic_at_scale("synthetic-baby", "synthetic data at Amazon-Baby scale: 19,445 users, 7,050 items, "
                             "~160k interactions, image 4096-d + text 384-d", 19_445, 7_050, 160_792, 40,
                             {"image": 4096, "text": 384}))
# TikTok: (59,541 + 3,051 + 6,130) / 9,308 = 7.38 per user; modalities alphabetical, the order the file loaders use
register(_synthetic_at_scale("synthetic-tiktok", "synthetic data at TikTok scale: 9,308 users, 6,710 items, "
                             "~68.7k interactions, audio 128 + image 128 + text 768", 9_308, 6_710, 68_722, 30,
                             {"audio": 128, "image": 128, "text": 768}))
register(
    DatasetSpec(
        name="tiktok",
        kind="remote",
        description="TikTok micro-videos, DiffMM copy: 9,308 users, 6,710 items, image 128 + audio 128 + text 768 (download about 15-25 MB)",
        card="tiktok.md",
        base_url=f"{DIFFMM_BASE}/tiktok",
        format="diffmm",
        files=(
            RemoteFile("trnMat.pkl", "e2592cf4a18e9ddcd6a0814679d4faf34d08a373", 953_073),
            RemoteFile("valMat.pkl", "88e3722afb991c295d7987866e2284877a46ddde", 49_233),
            RemoteFile("tstMat.pkl", "1daea6b69c98210371168e1965aaa1d135e0d0ea", 98_497),
            RemoteFile("image_feat.npy", "27ac000dc2feaefdfa06d238d588793dd8ea80ba", 1_717_888),
            RemoteFile("audio_feat.npy", "1d0671948dfc54756f5f20a0dbc3026e40f74452", 1_717_888),
            # size never published: bounded by float64 values of the published shape (6,710 x 768)
            RemoteFile("text_feat.npy", "f056985c131d90c19c5265af033b095f525e5ce2", max_size=_feature_bound(6_710, 768)),
        ),
        expected={"users": 9_308, "items": 6_710, "train": 59_541, "valid": 3_051, "test": 6_130},
    )
)
register(
    DatasetSpec(
        name="baby",
        kind="remote",
        description="Amazon Baby, DiffMM copy: 19,445 users, 7,050 items, image 4096 + text 384 (download about 100 MB or more)",
        card="baby.md",
        base_url=f"{DIFFMM_BASE}/baby",
        format="diffmm",
        files=(
            # sizes never published: bounded by the published shape (160,792 interactions,
            # 7,050 items, text 384-d, image 4,096-d) at the widest dtypes
            RemoteFile("trnMat.pkl", "a85d1b509e17b06f707c0c5aa188b27c35896b0f", max_size=_pairs_pickle_bound(160_792)),
            RemoteFile("valMat.pkl", "27506c1d026183daecfbc99988ab012da578af9e", max_size=_pairs_pickle_bound(160_792)),
            RemoteFile("tstMat.pkl", "0a99cff43d2564d6d381eccc406314e8c539cfe6", max_size=_pairs_pickle_bound(160_792)),
            RemoteFile("text_feat.npy", "1fb92223ae114c3cc7df7c8d52c5ae8d76064296", max_size=_feature_bound(7_050, 384)),
            RemoteFile("image_feat.npy.zip", "be2d0255ae3f9347f63ab72b2f9e7531c0530532", extract="image_feat.npy",
                       max_size=_feature_bound(7_050, 4_096) + 65_536),
        ),
        expected={"users": 19_445, "items": 7_050, "interactions": 160_792},
    )
)


def list_datasets() -> dict[str, str]:
    """``{name: one-line description}`` of the registered datasets, plus the folder prefixes."""
    out = {name: spec.description for name, spec in REGISTRY.items()}
    out["mmrec:<folder>"] = "an MMRec folder (<name>.inter + *_feat.npy), e.g. Baby/Sports/Clothing from the MMRec toolbox"
    out["diffmm:<folder>"] = "a DiffMM folder (trnMat.pkl, valMat.pkl, tstMat.pkl + *_feat.npy)"
    out["<folder>"] = "any existing folder in one of the two formats (detected)"
    return out


def data_card(name: str) -> str:
    """Markdown describing a dataset: source URL, licence terms, sizes, modalities, citation, notes."""
    from importlib import resources

    if name.startswith("mmrec:"):
        key = "mmrec.md"
    elif name.startswith("diffmm:") or (name not in REGISTRY and Path(name).expanduser().is_dir()):
        key = "folder.md"
    elif name in REGISTRY:
        key = REGISTRY[name].card
    else:
        raise DiffCLError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}.")
    if not key.endswith(".md") or "\n" in key:
        return key  # inline markdown
    text = (resources.files("diffcl_lite.datasets") / "cards" / key).read_text(encoding="utf-8")
    if name in REGISTRY and REGISTRY[name].kind == "synthetic" and REGISTRY[name].defaults:
        args = ", ".join(f"{k}={v!r}" for k, v in REGISTRY[name].defaults.items())
        text += f"\n## This variant: `{name}`\n\n`make_synthetic({args})`\n"
    return text

