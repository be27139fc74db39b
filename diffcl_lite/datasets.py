"""Named datasets: the synthetic ones, the public DiffMM copies, and local folders.

Introduced in notebook 01 (data). One call gives a validated :class:`~diffcl_lite.data.RecDataset`::

    from diffcl_lite import datasets
    ds = datasets.load("synthetic")              # small, instant, the default of every notebook
    ds = datasets.load("synthetic-baby")         # Amazon-Baby sized, made up (no download)
    ds = datasets.load("tiktok")                 # downloads the DiffMM copy once (about 15 MB)
    ds = datasets.load("mmrec:/data/baby")       # an MMRec folder you downloaded yourself
    print(datasets.data_card("tiktok"))          # source, terms, sizes, citation

Downloads
---------
Remote files are pinned by their git blob id (``sha1(b"blob <size>\\0" + content)``, what
``git hash-object FILE`` prints). Each file is streamed into a temporary file inside the cache
folder, checked (size and blob id), and only then renamed to its final name, so a final name
never holds a partial or unverified file. Zipped files are extracted (only the expected member,
no paths) the same way and the zip is deleted afterwards.

Cache check: a verified file is recorded in ``<cache>/<dataset>/.diffcl_manifest.json`` with its
size and blob id. Later calls trust a file whose manifest entry matches the registry and whose
size on disk matches the manifest (cheap: no re-hashing of ~100 MB on every load); pass
``rehash=True`` to :func:`fetch` to hash everything again. A file found in the cache folder
without a manifest entry (for example one you downloaded by hand) is hashed once and recorded.

Cache folder: the ``root`` argument, else the environment variable ``DIFFCL_DATA``, else the
platform cache folder (``~/.cache/diffcl_lite`` on Linux, ``~/Library/Caches/diffcl_lite`` on
macOS, ``%LOCALAPPDATA%\\diffcl_lite\\Cache`` on Windows).

Mirrors: ``base_url=`` replaces a dataset's base URL (``<base_url>/<file>``); the environment
variable ``DIFFCL_MIRROR`` does it for all datasets (``<mirror>/<dataset>/<file>``).

The package never ships the data files themselves: their terms do not allow redistribution.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .data import RecDataset, make_synthetic
from .errors import DataFormatError, DiffCLError, DownloadError
from .io import load_diffmm, load_folder, load_mmrec
from .utils import atomic_write_bytes

log = logging.getLogger(__name__)

DIFFMM_COMMIT = "fae20e642aeeaad4284be6f7fb3432ebb551da8e"
DIFFMM_BASE = f"https://raw.githubusercontent.com/HKUDS/DiffMM/{DIFFMM_COMMIT}/Datasets"
MANIFEST = ".diffcl_manifest.json"
CHUNK = 1 << 20
MAX_EXTRACT_BYTES = 4 << 30  # refuse zip members that claim more than 4 GiB

#: Published sizes of the MMRec datasets: (users, items, interactions).
MMREC_PUBLISHED = {
    "baby": (19_445, 7_050, 160_792),
    "sports": (35_598, 18_357, 296_337),
    "clothing": (39_387, 23_033, 278_677),
}

__all__ = [
    "RemoteFile",
    "DatasetSpec",
    "REGISTRY",
    "register",
    "unregister",
    "load",
    "fetch",
    "list_datasets",
    "data_card",
    "cache_dir",
    "git_blob_sha1",
]


# ====================================================================== registry
@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote dataset.

    ``path`` is relative to the dataset's base URL and is also the file name in the cache.
    ``blob`` is the git blob sha1 of the file as served; ``size`` its length in bytes (``None``
    if unknown: then only the blob id is checked). ``extract`` names the zip member to extract
    (the extracted file is stored under the member's base name).
    """

    path: str
    blob: str
    size: int | None = None
    extract: str | None = None

    @property
    def final_name(self) -> str:
        """The name the usable file has in the cache folder."""
        return PurePosixPath(self.extract).name if self.extract else PurePosixPath(self.path).name


@dataclass
class DatasetSpec:
    """A named dataset: how to get it, how to read it, what it should look like.

    ``kind`` is ``"remote"`` (download ``files`` from ``base_url`` and read the cache folder with
    ``format``), or ``"synthetic"`` (call ``factory(**defaults, **kwargs)``). ``expected`` holds
    published sizes (``users``, ``items``, ``train``, ``valid``, ``test``, ``interactions``) that
    the loaded data is compared with (a warning when they differ). ``card`` is markdown or the
    name of a file in ``diffcl_lite/datacards/``.
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
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset from :data:`REGISTRY` (no error if it is not there)."""
    REGISTRY.pop(name, None)


def _synthetic(**kwargs: Any) -> RecDataset:
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
register(
    DatasetSpec(
        name="synthetic-baby",
        kind="synthetic",
        description="synthetic data at Amazon-Baby scale: 19,445 users, 7,050 items, ~160k interactions, image 4096-d + text 384-d",
        card="synthetic.md",
        factory=_synthetic,
        defaults=dict(
            n_users=19_445,
            n_items=7_050,
            n_topics=40,
            # 160,792 interactions / 19,445 users = 8.27 per user (5-core data)
            interactions_per_user=8.27,
            min_interactions=5,
            modality_dims={"image": 4096, "text": 384},
            name="synthetic-baby",
        ),
        expected={"users": 19_445, "items": 7_050, "interactions": 160_792},
    )
)
register(
    DatasetSpec(
        name="synthetic-tiktok",
        kind="synthetic",
        description="synthetic data at TikTok scale: 9,308 users, 6,710 items, ~68.7k interactions, audio 128 + image 128 + text 768",
        card="synthetic.md",
        factory=_synthetic,
        defaults=dict(
            n_users=9_308,
            n_items=6_710,
            n_topics=30,
            # (59,541 + 3,051 + 6,130) / 9,308 = 7.38 per user
            interactions_per_user=7.38,
            min_interactions=5,
            # alphabetical, the order the file loaders use
            modality_dims={"audio": 128, "image": 128, "text": 768},
            name="synthetic-tiktok",
        ),
        expected={"users": 9_308, "items": 6_710, "interactions": 68_722},
    )
)
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
            RemoteFile("text_feat.npy", "f056985c131d90c19c5265af033b095f525e5ce2", None),
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
            RemoteFile("trnMat.pkl", "a85d1b509e17b06f707c0c5aa188b27c35896b0f"),
            RemoteFile("valMat.pkl", "27506c1d026183daecfbc99988ab012da578af9e"),
            RemoteFile("tstMat.pkl", "0a99cff43d2564d6d381eccc406314e8c539cfe6"),
            RemoteFile("text_feat.npy", "1fb92223ae114c3cc7df7c8d52c5ae8d76064296"),
            RemoteFile("image_feat.npy.zip", "be2d0255ae3f9347f63ab72b2f9e7531c0530532", extract="image_feat.npy"),
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
    text = (resources.files("diffcl_lite") / "datacards" / key).read_text(encoding="utf-8")
    if name in REGISTRY and REGISTRY[name].kind == "synthetic" and REGISTRY[name].defaults:
        args = ", ".join(f"{k}={v!r}" for k, v in REGISTRY[name].defaults.items())
        text += f"\n## This variant: `{name}`\n\n`make_synthetic({args})`\n"
    return text


# ====================================================================== cache
def cache_dir(root: "str | os.PathLike[str] | None" = None) -> Path:
    """The dataset cache folder: ``root``, else ``$DIFFCL_DATA``, else the platform cache folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("DIFFCL_DATA")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "diffcl_lite" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "diffcl_lite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "diffcl_lite"


def git_blob_sha1(path: "str | os.PathLike[str]") -> str:
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + content)`` (``git hash-object``)."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_manifest(folder: Path, manifest: dict[str, dict[str, Any]]) -> None:
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))


def _is_cached(folder: Path, rf: RemoteFile, manifest: dict[str, dict[str, Any]], rehash: bool) -> bool:
    """True if ``rf``'s usable file is in ``folder`` and verified (see the module docstring)."""
    final = folder / rf.final_name
    entry = manifest.get(rf.final_name)
    if not final.is_file() or not entry or entry.get("blob") != rf.blob:
        return False
    if final.stat().st_size != entry.get("size"):
        log.warning("%s: size %d differs from the verified size %s; fetching it again", final, final.stat().st_size, entry.get("size"))
        return False
    if rehash and entry.get("sha1") is not None:
        got = git_blob_sha1(final)
        if got != entry["sha1"]:
            log.warning("%s: content changed since it was verified; fetching it again", final)
            return False
    return True


def _hand_instructions(url: str, dest: Path, rf: RemoteFile) -> str:
    size = f" ({rf.size:,} bytes)" if rf.size else ""
    return (
        f"To get it by hand: download {url}{size} (e.g. in a browser) and save it as {dest}; "
        f"`git hash-object {dest}` must print {rf.blob}. Then call load() again (download=False works). "
        f"A mirror can be set with the DIFFCL_MIRROR environment variable or base_url=."
    )


def _download(url: str, dest: Path, rf: RemoteFile, timeout: float, progress: bool) -> None:
    """Stream ``url`` to a temporary file next to ``dest``, verify it, then rename it to ``dest``."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            length: int | None = None
            got = 0
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "diffcl_lite"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    header = resp.headers.get("Content-Length")
                    length = int(header) if header and header.strip().isdigit() else None
                    with tqdm(
                        total=length or rf.size, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=dest.name, disable=not progress, leave=False,
                    ) as bar:
                        for chunk in iter(lambda: resp.read(CHUNK), b""):
                            out.write(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as exc:
                raise DownloadError(
                    f"{url}: the server answered HTTP {exc.code} ({exc.reason}). " + _hand_instructions(url, dest, rf)
                ) from None
            except Exception as exc:  # offline, refused, timeout, reset, IncompleteRead, ...
                reason = getattr(exc, "reason", None) or exc
                raise DownloadError(
                    f"{url}: download failed ({type(exc).__name__}: {reason}). " + _hand_instructions(url, dest, rf)
                ) from None
            out.flush()
            os.fsync(out.fileno())
        if length is not None and got != length:
            raise DownloadError(
                f"{url}: the transfer stopped early: got {got:,} of {length:,} bytes (connection closed). "
                f"Nothing was saved; try again. " + _hand_instructions(url, dest, rf)
            )
        _verify(tmp, rf, url, dest)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _verify(path: Path, rf: RemoteFile, url: str, dest: Path, downloaded: bool = True) -> str:
    """Check size and git blob id of ``path``; raise :class:`DownloadError` on mismatch."""
    size = path.stat().st_size
    got = git_blob_sha1(path)
    if (rf.size is None or size == rf.size) and got == rf.blob:
        return got
    expected_size = f"{rf.size:,} bytes" if rf.size is not None else "size not published"
    problem = f"expected git blob {rf.blob} ({expected_size}), got {got} ({size:,} bytes)"
    if downloaded:
        raise DownloadError(
            f"{url}: checksum mismatch: {problem}; the file was not saved. The server may hold another version "
            f"of the file (or a Git LFS pointer instead of the data). " + _hand_instructions(url, dest, rf)
        )
    raise DownloadError(
        f"{path}: this file in the cache does not match: {problem}. Fix: delete it (it is then downloaded again "
        f"from {url}) or replace it with the right file."
    )


def _extract_member(zip_path: Path, member: str, dest: Path) -> None:
    """Extract the one member of ``zip_path`` whose file name is ``member`` (it may sit in a sub-folder)
    to ``dest``, through a temporary file; nothing else is extracted."""
    want = PurePosixPath(member)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            # The output name is fixed (``dest``), so a member name can never choose where data is
            # written; members with absolute paths or ".." are refused anyway as a damaged archive.
            candidates = []
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or not parts or parts[-1] != want.name or parts[0] == "__MACOSX":
                    continue
                if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                    continue
                candidates.append(info)
            if len(candidates) != 1:
                raise DataFormatError(
                    f"{zip_path}: expected exactly one member named {member!r}, found members {names}. "
                    f"Fix: delete the zip and download it again, or unzip {member} by hand into {dest.parent}."
                )
            info = candidates[0]
            if info.file_size > MAX_EXTRACT_BYTES:
                raise DataFormatError(f"{zip_path}: member {member!r} claims {info.file_size:,} bytes; refusing to extract.")
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            tmp = Path(tmp_name)
            try:
                with zf.open(info) as src, os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)  # zipfile checks the CRC at the end
                    out.flush()
                    os.fsync(out.fileno())
                if tmp.stat().st_size != info.file_size:
                    raise DataFormatError(f"{zip_path}: member {member!r} extracted to the wrong size; the zip is damaged.")
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    except zipfile.BadZipFile as exc:
        raise DataFormatError(f"{zip_path}: not a valid zip file ({exc}); delete it and download it again.") from None


def _url_for(spec: DatasetSpec, rf: RemoteFile, base_url: str | None) -> str:
    if base_url:
        base = base_url.rstrip("/")
    elif os.environ.get("DIFFCL_MIRROR"):
        base = f"{os.environ['DIFFCL_MIRROR'].rstrip('/')}/{spec.name}"
    else:
        base = spec.base_url.rstrip("/")
    return f"{base}/{rf.path}"


def fetch(
    name: "str | DatasetSpec",
    root: "str | os.PathLike[str] | None" = None,
    download: bool = True,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    rehash: bool = False,
) -> Path:
    """Make sure every file of a remote dataset is in the cache and verified; return its folder.

    Files already verified are not fetched again (see the module docstring). With
    ``download=False`` a missing file raises :class:`DownloadError` with what to fetch by hand.
    """
    spec = REGISTRY.get(name) if isinstance(name, str) else name
    if spec is None:
        raise DiffCLError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}.")
    if spec.kind != "remote":
        raise DiffCLError(f"dataset {spec.name!r} is {spec.kind}, there is nothing to download.")
    folder = cache_dir(root) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder)
    for rf in spec.files:
        if _is_cached(folder, rf, manifest, rehash):
            continue
        url = _url_for(spec, rf, base_url)
        raw = folder / PurePosixPath(rf.path).name
        # A manifest entry that no longer matches means the cached file changed: fetch it again.
        stale = manifest.pop(rf.final_name, None) is not None
        if raw.is_file() and not stale:
            # A file put there by hand, or a zip whose extraction was interrupted: verify it.
            _verify(raw, rf, url, raw, downloaded=False)
            log.info("%s: found in the cache and verified", raw)
        elif not download:
            raise DownloadError(
                f"{spec.name}: {raw} is not in the cache (or changed since it was verified) and download=False. " + _hand_instructions(url, raw, rf)
            )
        else:
            log.info("downloading %s -> %s", url, raw)
            _download(url, raw, rf, timeout=timeout, progress=progress)
        final = folder / rf.final_name
        if rf.extract:
            _extract_member(raw, rf.extract, final)
            raw.unlink()
        manifest[rf.final_name] = {
            "blob": rf.blob,
            "size": final.stat().st_size,
            "sha1": git_blob_sha1(final) if rf.extract else rf.blob,
            "url": url,
        }
        _write_manifest(folder, manifest)
    return folder


# ====================================================================== loading
def _check_expected(ds: RecDataset, expected: dict[str, int], label: str) -> None:
    got = {
        "users": ds.n_users,
        "items": ds.n_items,
        "train": len(ds.train),
        "valid": len(ds.valid),
        "test": len(ds.test),
        "interactions": len(ds.train) + len(ds.valid) + len(ds.test),
    }
    diffs = [f"{k}: {got[k]:,} (published {v:,})" for k, v in expected.items() if k in got and got[k] != v]
    if diffs:
        log.warning("%s differs from the published sizes: %s", label, "; ".join(diffs))


def _check_mmrec_published(ds: RecDataset, folder: Path) -> None:
    key = next((k for k in (ds.name.lower(), folder.name.lower()) if k in MMREC_PUBLISHED), None)
    if key is None:
        return
    users, items, inter = MMREC_PUBLISHED[key]
    _check_expected(ds, {"users": users, "items": items, "interactions": inter}, f"{folder} (MMRec {key})")


def load(
    name: "str | os.PathLike[str] | DatasetSpec",
    root: "str | os.PathLike[str] | None" = None,
    download: bool = True,
    **kwargs: Any,
) -> RecDataset:
    """Load a dataset by name and return a validated :class:`~diffcl_lite.data.RecDataset`.

    Names: see :func:`list_datasets` — ``"synthetic"``, ``"synthetic-baby"``,
    ``"synthetic-tiktok"`` (keyword arguments go to :func:`~diffcl_lite.data.make_synthetic`),
    ``"tiktok"``, ``"baby"`` (downloaded into the cache folder ``root`` on first use; keyword
    arguments ``base_url``, ``progress``, ``timeout``, ``rehash`` go to :func:`fetch`, ``features``
    to the loader), ``"mmrec:<folder>"``, ``"diffmm:<folder>"`` or the path of an existing folder.
    Introduced in notebook 01 (data).
    """
    if isinstance(name, DatasetSpec):
        spec: DatasetSpec | None = name
    else:
        name = os.fspath(name)
        spec = REGISTRY.get(name)
    if spec is None:
        assert isinstance(name, str)
        if name.startswith("mmrec:"):
            folder = Path(name[len("mmrec:"):]).expanduser()
            ds = load_mmrec(folder, **kwargs)
            _check_mmrec_published(ds, folder)
            return ds
        if name.startswith("diffmm:"):
            return load_diffmm(Path(name[len("diffmm:"):]).expanduser(), **kwargs)
        if Path(name).expanduser().is_dir():
            ds = load_folder(Path(name).expanduser(), **kwargs)
            if ds.meta.get("format") == "mmrec":
                _check_mmrec_published(ds, Path(name).expanduser())
            return ds
        raise DiffCLError(
            f"unknown dataset {name!r}: not a registered name and not an existing folder. Known names: "
            f"{', '.join(list_datasets())}."
        )
    if spec.kind == "synthetic":
        assert spec.factory is not None
        return spec.factory(**{**spec.defaults, **kwargs})
    fetch_keys = ("base_url", "progress", "timeout", "rehash")
    fetch_kwargs = {k: kwargs.pop(k) for k in fetch_keys if k in kwargs}
    folder = fetch(spec, root=root, download=download, **fetch_kwargs)
    ds = load_folder(folder, format=spec.format, **kwargs)
    ds.name = spec.name
    ds.meta.update({"dataset": spec.name, "cache": str(folder)})
    if spec.expected:
        _check_expected(ds, spec.expected, f"dataset {spec.name!r}")
    return ds
