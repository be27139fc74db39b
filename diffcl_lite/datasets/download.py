"""Downloading the remote datasets: a bounded pooch downloader, pinned sizes and git blob ids, the cache.

Downloads
---------
Remote files are fetched with `pooch <https://www.fatiando.org/pooch/>`_ (the download layer of
SciPy, scikit-image and MNE): pooch keeps the cache folder, streams each file into a temporary
file next to its final name and moves it there only once the downloader accepted it, and
unzips. diffcl_lite supplies the downloader and the checks pooch does not have:

* **pinned size**: every file has its exact size (``size``) or, where it was never published, an
  upper bound from the published shape (``max_size``); a transfer is cut as soon as it exceeds
  it (a ``Content-Length`` above it is refused before any byte is read);
* **a deadline per file** (``timeout`` seconds for the whole transfer, connection included;
  default 60 s plus 20 s per MB) and a stall limit (no byte for 30 s), so a mirror that trickles
  one byte at a time cannot keep a download alive;
* **the git blob id** (``sha1(b"blob <size>\\0" + content)``, what ``git hash-object FILE`` prints)
  as the file's hash, a hash pooch does not know: the downloader checks it before pooch moves the
  file into place. Zipped files are verified, then only the expected member is unzipped (no other
  member, no paths, at most 4 GiB) and the zip is deleted.

Cache check: a verified file is recorded in ``<cache>/<dataset>/.diffcl_manifest.json`` with its
size, modification time and blob id. Later calls trust a file whose entry matches the registry
and whose size and modification time on disk match the entry (no re-hashing of ~100 MB on every
load); a file changed since (edited, truncated, corrupted in place) is hashed again and replaced.
``rehash=True`` (``data download NAME --rehash``) hashes everything again, and a cached file that
fails to load is re-verified at once: if it no longer matches its checksum it is downloaded again.
A file found in the cache folder without a manifest entry (for example one you downloaded by
hand) is hashed once and recorded; if it does not match, you are told, and it is left alone.

Cache folder: the ``root`` argument, else the environment variable ``DIFFCL_DATA``, else the
platform cache folder (``~/.cache/diffcl_lite`` on Linux, ``~/Library/Caches/diffcl_lite`` on
macOS, ``%LOCALAPPDATA%\\diffcl_lite\\Cache`` on Windows).

Mirrors: ``base_url=`` replaces a dataset's base URL (``<base_url>/<file>``); the environment
variable ``DIFFCL_MIRROR`` does it for all datasets (``<mirror>/<dataset>/<file>``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..errors import DataFormatError, DiffCLError, DownloadError
from ..fileutil import atomic_write_bytes
from .registry import REGISTRY, DatasetSpec, RemoteFile, list_datasets

log = logging.getLogger(__name__)

MANIFEST = ".diffcl_manifest.json"
CHUNK = 1 << 20
MAX_EXTRACT_BYTES = 4 << 30  # refuse zip members that claim more than 4 GiB
STALL_SECONDS = 30.0         # a transfer with no byte for this long fails
# default deadline per file: 60 s + 20 s per MB of its size limit (at least 50 kB/s)
DEADLINE_BASE_SECONDS = 60.0
DEADLINE_SECONDS_PER_BYTE = 20.0 / 1_000_000

__all__ = ["cache_dir", "git_blob_sha1", "BoundedDownloader", "ExtractMember", "fetch"]


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


def _cache_state(folder: Path, rf: RemoteFile, manifest: dict[str, dict[str, Any]], rehash: bool) -> str:
    """``"ok"`` (verified, trust it), ``"changed"`` (verified once, different now) or ``"unknown"``.

    A file whose size or modification time differs from its manifest entry is hashed again
    (cheap checks first: no re-hashing of unchanged files unless ``rehash``).
    """
    final = folder / rf.final_name
    entry = manifest.get(rf.final_name)
    if not entry or entry.get("blob") != rf.blob:
        return "unknown"
    if not final.is_file():
        return "changed"
    st = final.stat()
    if st.st_size != entry.get("size"):
        log.warning("%s: size %d differs from the verified size %s; fetching it again", final, st.st_size, entry.get("size"))
        return "changed"
    if rehash or st.st_mtime_ns != entry.get("mtime_ns"):
        want = entry.get("sha1") or rf.blob
        if git_blob_sha1(final) != want:
            log.warning("%s: content changed since it was verified (checksum mismatch); fetching it again", final)
            return "changed"
        if st.st_mtime_ns != entry.get("mtime_ns"):
            entry["mtime_ns"] = st.st_mtime_ns  # touched but unchanged: record the new time
    return "ok"


def _hand_instructions(url: str, dest: Path, rf: RemoteFile) -> str:
    size = f" ({rf.size:,} bytes)" if rf.size else ""
    return (
        f"To get it by hand: download {url}{size} (e.g. in a browser) and save it as {dest}; "
        f"`git hash-object {dest}` must print {rf.blob}. Then call load() again (download=False works). "
        f"A mirror can be set with the DIFFCL_MIRROR environment variable or base_url=."
    )


def _deadline_for(rf: RemoteFile, timeout: float | None) -> float:
    if timeout is not None:
        if not timeout > 0:
            raise DiffCLError(f"timeout={timeout!r} must be a positive number of seconds (--timeout).")
        return float(timeout)
    return DEADLINE_BASE_SECONDS + DEADLINE_SECONDS_PER_BYTE * (rf.limit or 0)


def _socket_of(resp: Any) -> Any:
    """The socket under a streaming ``requests`` response (urllib3 1.x and 2.x), or None."""
    raw = getattr(resp, "raw", None)
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(conn, "sock", None)


class BoundedDownloader:
    """A pooch downloader that enforces the pinned size, a deadline, and the git blob id.

    pooch calls it as ``downloader(url, output_file, pooch)`` with a temporary file next to the
    final name; pooch moves the file into place only if this returns without an exception (and
    deletes it otherwise). Reads use ``read1`` with the socket timeout set to the time left, so a
    slow or stalled server cannot exceed the deadline by more than a moment.
    """

    def __init__(self, rf: RemoteFile, dest: Path, timeout: float | None = None, progress: bool = True,
                 stall: float = STALL_SECONDS) -> None:
        self.rf = rf
        self.dest = dest
        self.deadline_s = _deadline_for(rf, timeout)
        self.stall_s = min(stall, self.deadline_s)
        self.progress = progress

    def _fail(self, url: str, what: str) -> DownloadError:
        return DownloadError(f"{url}: {what} Nothing was saved. " + _hand_instructions(url, self.dest, self.rf))

    def __call__(self, url: str, output_file: Any, pooch: Any = None, check_only: bool = False) -> Any:
        import requests
        from tqdm.auto import tqdm

        rf, limit = self.rf, self.rf.limit
        start = time.monotonic()
        deadline = start + self.deadline_s
        got, length = 0, None
        try:
            wait = min(self.stall_s, self.deadline_s)
            with requests.get(url, stream=True, timeout=(wait, wait), allow_redirects=True,
                              headers={"User-Agent": "diffcl_lite", "Accept-Encoding": "identity"}) as resp:
                if resp.status_code >= 400:
                    raise DownloadError(
                        f"{url}: the server answered HTTP {resp.status_code} ({resp.reason}). "
                        + _hand_instructions(url, self.dest, rf)
                    )
                header = resp.headers.get("Content-Length")
                length = int(header) if header and header.strip().isdigit() else None
                if check_only:
                    return True
                if limit is not None and length is not None and length > limit:
                    raise self._fail(url, f"the server announces {length:,} bytes, more than the {limit:,} bytes pinned "
                                          f"for {rf.path}; the transfer was refused. The server may hold another file.")
                sock = _socket_of(resp)
                read = getattr(resp.raw, "read1", None) or (lambda n: resp.raw.read(min(n, 1 << 14)))
                with open(output_file, "wb") as out, tqdm(
                    total=length or limit, unit="B", unit_scale=True, unit_divisor=1024, desc=self.dest.name,
                    disable=not self.progress, leave=False,
                ) as bar:
                    while True:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("deadline")
                        if sock is not None:
                            sock.settimeout(max(0.01, min(self.stall_s, left)))
                        chunk = read(CHUNK)
                        if not chunk:
                            break
                        got += len(chunk)
                        if limit is not None and got > limit:
                            raise self._fail(url, f"the server sent more than the {limit:,} bytes pinned for {rf.path}; "
                                                  f"the transfer was cut after {got:,} bytes. The server may hold "
                                                  f"another file (or a page instead of the data).")
                        out.write(chunk)
                        bar.update(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
        except DownloadError:
            raise
        except Exception as exc:  # offline, refused, timeout, reset, incomplete read, ...
            total = f"{length:,}" if length is not None else (f"at most {limit:,}" if limit else "?")
            if time.monotonic() >= deadline - 0.05 or str(exc) == "deadline":
                raise self._fail(url, f"the download did not finish within its {self.deadline_s:g} s deadline (got "
                                      f"{got:,} of {total} bytes: the server is too slow or stalls). Fix: try again, "
                                      f"pass a larger --timeout (timeout= in Python), or use a mirror.") from None
            if length is not None and 0 < got < length:
                raise self._fail(url, f"the transfer stopped early: got {got:,} of {length:,} bytes (connection "
                                      f"closed: {type(exc).__name__}). Try again.") from None
            reason = getattr(exc, "reason", None) or exc
            raise self._fail(url, f"download failed ({type(exc).__name__}: {reason}).") from None
        if length is not None and got != length:
            raise self._fail(url, f"the transfer stopped early: got {got:,} of {length:,} bytes (connection closed). "
                                  f"Try again.")
        _verify(Path(output_file), rf, url, self.dest)
        log.info("%s: %s bytes in %.1f s, checksum ok", self.dest.name, f"{got:,}", time.monotonic() - start)
        return None


def _verify(path: Path, rf: RemoteFile, url: str, dest: Path, downloaded: bool = True) -> str:
    """Check size and git blob id of ``path`` (the custom hash); raise :class:`DownloadError` on mismatch."""
    size = path.stat().st_size
    got = git_blob_sha1(path)
    if (rf.size is None or size == rf.size) and (rf.max_size is None or size <= rf.max_size) and got == rf.blob:
        return got
    expected_size = f"{rf.size:,} bytes" if rf.size is not None else f"at most {rf.max_size:,} bytes"
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


def _zip_candidate(zip_path: Path, member: str, dest: Path) -> zipfile.ZipInfo:
    """The one member of ``zip_path`` whose file name is ``member`` (it may sit in a sub-folder)."""
    want = PurePosixPath(member)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    # Members with absolute paths or ".." are refused as a damaged archive; the output name is
    # fixed (``dest``) anyway, so a member name never chooses where data is written.
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
    return info


class ExtractMember:
    """A pooch processor: unzip one checked member with :class:`pooch.Unzip`, then move it to ``dest``.

    pooch extracts into a temporary folder next to the zip; the member is checked (exactly one
    match, no paths, at most 4 GiB, CRC and size), renamed to ``dest`` and the folder removed,
    so ``dest`` never holds a partial file and no other member is ever written.
    """

    def __init__(self, member: str, dest: Path) -> None:
        self.member = member
        self.dest = dest

    def __call__(self, fname: str, action: str, pooch: Any) -> str:
        import pooch as _pooch

        zip_path = Path(fname)
        try:
            info = _zip_candidate(zip_path, self.member, self.dest)
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", suffix=".unzip", dir=self.dest.parent))
            try:
                _pooch.Unzip(members=[info.filename], extract_dir=tmp_dir.name)(str(zip_path), "download", pooch)
                out = tmp_dir / PurePosixPath(info.filename).as_posix()
                if not out.is_file() or out.stat().st_size != info.file_size:
                    raise DataFormatError(f"{zip_path}: member {self.member!r} extracted to the wrong size; the zip is damaged.")
                os.replace(out, self.dest)
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        except zipfile.BadZipFile as exc:
            raise DataFormatError(f"{zip_path}: not a valid zip file ({exc}); delete it and download it again.") from None
        return str(self.dest)


def _url_for(spec: DatasetSpec, rf: RemoteFile, base_url: str | None) -> str:
    if base_url:
        base = base_url.rstrip("/")
    elif os.environ.get("DIFFCL_MIRROR"):
        base = f"{os.environ['DIFFCL_MIRROR'].rstrip('/')}/{spec.name}"
    else:
        base = spec.base_url.rstrip("/")
    return f"{base}/{rf.path}"


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _fetch(
    spec: DatasetSpec, root: "str | os.PathLike[str] | None", download: bool, base_url: str | None, progress: bool,
    timeout: float | None, rehash: bool, retries: int = 0,
) -> tuple[Path, list[str]]:
    """:func:`fetch`, also returning the names of the files that were (re)downloaded or re-extracted."""
    import pooch

    folder = cache_dir(root) / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"{folder}: cannot create the dataset cache folder ({exc.strerror or exc}). Fix: pass a writable "
            f"--data-root (root= in Python) or set DIFFCL_DATA."
        ) from None
    manifest = _read_manifest(folder)
    fetched: list[str] = []
    for rf in spec.files:
        state = _cache_state(folder, rf, manifest, rehash)
        if state == "ok":
            continue
        url = _url_for(spec, rf, base_url)
        raw_name = PurePosixPath(rf.path).name
        raw = folder / raw_name
        final = folder / rf.final_name
        if state == "changed":  # verified once, different now: never trust it again
            manifest.pop(rf.final_name, None)
            _write_manifest(folder, manifest)
            for stale in {raw, final}:
                stale.unlink(missing_ok=True)
        if raw.is_file():
            # A file put there by hand, or a zip whose extraction was interrupted: verify it.
            _verify(raw, rf, url, raw, downloaded=False)
            log.info("%s: found in the cache and verified", raw)
        elif not download:
            raise DownloadError(
                f"{spec.name}: {raw} is not in the cache (or changed since it was verified) and download=False. "
                + _hand_instructions(url, raw, rf)
            )
        else:
            log.info("downloading %s -> %s", url, raw)
        store = pooch.create(path=folder, base_url="", registry={raw_name: None}, urls={raw_name: url},
                             retry_if_failed=retries)
        processor = ExtractMember(rf.extract, final) if rf.extract else None
        with _quiet_pooch():  # our own log lines follow --log-level; pooch's logger prints at INFO
            store.fetch(raw_name, downloader=BoundedDownloader(rf, raw, timeout=timeout, progress=progress),
                        processor=processor)
        if rf.extract:
            raw.unlink()
        st = final.stat()
        manifest[rf.final_name] = {
            "blob": rf.blob,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha1": git_blob_sha1(final) if rf.extract else rf.blob,
            "url": url,
        }
        _write_manifest(folder, manifest)
        fetched.append(rf.final_name)
    if not fetched and manifest != _read_manifest(folder):
        _write_manifest(folder, manifest)  # modification times refreshed
    return folder, fetched


def fetch(
    name: "str | DatasetSpec",
    root: "str | os.PathLike[str] | None" = None,
    download: bool = True,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    rehash: bool = False,
    retries: int = 0,
) -> Path:
    """Make sure every file of a remote dataset is in the cache and verified; return its folder.

    Files already verified are not fetched again (see the module docstring). ``timeout`` is the
    deadline in seconds for each file's whole transfer (default: 60 s + 20 s per MB of its
    pinned size); ``rehash=True`` hashes every cached file again; ``retries`` retries a failed
    transfer. With ``download=False`` a missing file raises :class:`DownloadError` with what to
    fetch by hand.
    """
    spec = REGISTRY.get(name) if isinstance(name, str) else name
    if spec is None:
        raise DiffCLError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}.")
    if spec.kind != "remote":
        raise DiffCLError(f"dataset {spec.name!r} is {spec.kind}, there is nothing to download.")
    return _fetch(spec, root, download, base_url, progress, timeout, rehash, retries)[0]

