"""Dataset registry, downloads (against a local HTTP server), cache and data cards."""
from __future__ import annotations

import io
import logging
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from diffcl_lite import datasets
from diffcl_lite.datasets import download
from diffcl_lite.datasets import DatasetSpec, RemoteFile
from diffcl_lite.errors import DataFormatError, DiffCLError, DownloadError
from diffcl_lite.datasets.formats import save_diffmm, save_mmrec

try:
    from fixtures_data import free_port, git_blob_sha1, old_scipy_pickle_bytes, tiny_dataset, zip_bytes
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import (
        free_port,
        git_blob_sha1,
        old_scipy_pickle_bytes,
        tiny_dataset,
        zip_bytes,
    )

try:
    from http_mirrors import Mirror
except ImportError:  # tests/ imported as a package
    from tests.http_mirrors import Mirror

NAME = "fake-tiny"


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset()


@pytest.fixture(scope="module")
def files(ds, tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a tiny DiffMM dataset as a server would hold them (text features zipped)."""
    folder = tmp_path_factory.mktemp("src")
    save_diffmm(ds, folder, feature_dtype=np.float16)
    out = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "text_feat.npy"}
    trn = pickle.loads(out["trnMat.pkl"])  # our own file, written just above
    out["trnMat.pkl"] = old_scipy_pickle_bytes(trn, protocol=2)  # as an old scipy wrote it
    out["text_feat.npy.zip"] = zip_bytes(
        {"text_feat.npy": (folder / "text_feat.npy").read_bytes(), "__MACOSX/._text_feat.npy": b"junk"}
    )
    return out


def make_spec(files: dict[str, bytes], base_url: str, **overrides) -> DatasetSpec:
    remote = []
    for name, data in files.items():
        extract = name[:-4] if name.endswith(".zip") else None
        remote.append(RemoteFile(name, git_blob_sha1(data), len(data), extract=extract))
    args = dict(name=NAME, kind="remote", description="test", card="# fake\n", files=tuple(remote), base_url=base_url)
    args.update(overrides)
    return DatasetSpec(**args)


@pytest.fixture
def server(files):
    with Mirror({f"/fake/{k}": v for k, v in files.items()}) as srv:
        yield srv


@pytest.fixture
def spec(files, server):
    s = datasets.register(make_spec(files, server.url + "/fake"))
    yield s
    datasets.unregister(NAME)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


def assert_same(back, ds):
    assert (back.n_users, back.n_items) == (ds.n_users, ds.n_items)
    for split in ("train", "valid", "test"):
        assert sorted(map(tuple, back.split(split).tolist())) == sorted(map(tuple, ds.split(split).tolist()))
    for name, arr in ds.features.items():
        assert back.features[name].dtype == np.float32
        np.testing.assert_array_equal(back.features[name], arr.astype(np.float16).astype(np.float32))


# ---------------------------------------------------------------------- downloads
def test_download_verify_extract_and_load(tmp_path, ds, spec, server):
    back = datasets.load(NAME, root=tmp_path, progress=False)
    assert_same(back, ds)
    assert back.name == NAME and back.meta["format"] == "diffmm"
    folder = tmp_path / NAME
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([".diffcl_manifest.json", "trnMat.pkl", "valMat.pkl", "tstMat.pkl", "image_feat.npy", "text_feat.npy"])
    assert not (folder / "__MACOSX").exists(), "only the expected zip member may be extracted"
    assert len(server.requests) == 5


def test_second_call_uses_the_cache(tmp_path, ds, spec, server):
    datasets.load(NAME, root=tmp_path, progress=False)
    n = len(server.requests)
    assert_same(datasets.load(NAME, root=tmp_path, progress=False), ds)
    assert_same(datasets.load(NAME, root=tmp_path, download=False), ds)
    assert len(server.requests) == n


def test_cached_file_with_wrong_size_is_fetched_again(tmp_path, spec, server):
    datasets.load(NAME, root=tmp_path, progress=False)
    with open(tmp_path / NAME / "valMat.pkl", "ab") as fh:
        fh.write(b"garbage")
    n = len(server.requests)
    datasets.load(NAME, root=tmp_path, progress=False)
    assert server.requests[n:] == ["/fake/valMat.pkl"]


def test_wrong_checksum(tmp_path, files, server):
    bad = make_spec(files, server.url + "/fake")
    bad.files = tuple(RemoteFile(f.path, "0" * 40, f.size, f.extract) if f.path == "image_feat.npy" else f for f in bad.files)
    with pytest.raises(DownloadError) as err:
        datasets.load(bad, root=tmp_path, progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "0" * 40 in msg and git_blob_sha1(files["image_feat.npy"]) in msg
    assert f"{server.url}/fake/image_feat.npy" in msg and str(tmp_path / NAME / "image_feat.npy") in msg
    assert not (tmp_path / NAME / "image_feat.npy").exists()
    assert leftovers(tmp_path) == []


def test_wrong_size(tmp_path, files, server):
    bad = make_spec(files, server.url + "/fake")
    bad.files = tuple(RemoteFile(f.path, f.blob, f.size + 1, f.extract) if f.path == "tstMat.pkl" else f for f in bad.files)
    with pytest.raises(DownloadError, match=r"tstMat\.pkl: checksum mismatch: .*\(\d[\d,]* bytes\), got"):
        datasets.load(bad, root=tmp_path, progress=False)
    assert not (tmp_path / NAME / "tstMat.pkl").exists()
    assert leftovers(tmp_path) == []


def test_interrupted_transfer(tmp_path, spec, server):
    server.truncate.add("/fake/trnMat.pkl")
    with pytest.raises(DownloadError) as err:
        datasets.load(NAME, root=tmp_path, progress=False, timeout=5)
    msg = str(err.value)
    assert f"{server.url}/fake/trnMat.pkl" in msg and ("stopped early" in msg or "IncompleteRead" in msg)
    assert not (tmp_path / NAME / "trnMat.pkl").exists()
    assert leftovers(tmp_path) == []


def test_server_down(tmp_path, files):
    url = f"http://127.0.0.1:{free_port()}/fake"
    with pytest.raises(DownloadError) as err:
        datasets.load(make_spec(files, url), root=tmp_path, progress=False, timeout=5)
    msg = str(err.value)
    first = next(iter(files))
    assert f"{url}/{first}" in msg and str(tmp_path / NAME / first) in msg and git_blob_sha1(files[first]) in msg
    assert "git hash-object" in msg and leftovers(tmp_path) == []


def test_http_error(tmp_path, spec, server):
    del server.routes["/fake/valMat.pkl"]
    with pytest.raises(DownloadError, match=r"valMat\.pkl: the server answered HTTP 404"):
        datasets.load(NAME, root=tmp_path, progress=False)
    assert not (tmp_path / NAME / "valMat.pkl").exists()


def test_download_false_names_what_to_fetch(tmp_path, spec, server):
    with pytest.raises(DownloadError, match=r"trnMat\.pkl is not in the cache .*and download=False"):
        datasets.load(NAME, root=tmp_path, download=False)
    assert server.requests == []


def test_hand_placed_files_are_verified(tmp_path, ds, files, spec, server):
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "trnMat.pkl").write_bytes(files["trnMat.pkl"])
    assert_same(datasets.load(NAME, root=tmp_path, progress=False), ds)
    assert "/fake/trnMat.pkl" not in server.requests
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / NAME).mkdir()
    (tmp_path / "other" / NAME / "trnMat.pkl").write_bytes(b"not the file")
    with pytest.raises(DownloadError, match=r"trnMat\.pkl: this file in the cache does not match"):
        datasets.load(NAME, root=tmp_path / "other", progress=False)


def test_zip_with_path_traversal_is_refused(tmp_path, files, server):
    evil = zip_bytes({"../text_feat.npy": b"x", "/abs/text_feat.npy": b"y", "__MACOSX/text_feat.npy": b"z"})
    server.routes["/evil/text_feat.npy.zip"] = evil
    spec = make_spec({"text_feat.npy.zip": evil}, server.url + "/evil")
    with pytest.raises(DataFormatError, match=r"expected exactly one member named 'text_feat.npy'.*\.\./text_feat\.npy"):
        datasets.fetch(spec, root=tmp_path / "cache", progress=False)
    assert sorted(p.name for p in tmp_path.rglob("text_feat.npy")) == []
    assert not (tmp_path / "abs").exists() and leftovers(tmp_path) == []


def test_zip_member_in_a_sub_folder_is_extracted(tmp_path, files, server):
    inner = io.BytesIO()
    np.save(inner, np.ones((3, 2), np.float16))
    packed = zip_bytes({"baby/": b"", "baby/text_feat.npy": inner.getvalue(), "__MACOSX/baby/._text_feat.npy": b"junk"})
    server.routes["/sub/text_feat.npy.zip"] = packed
    folder = datasets.fetch(make_spec({"text_feat.npy.zip": packed}, server.url + "/sub"), root=tmp_path, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [".diffcl_manifest.json", "text_feat.npy"]
    np.testing.assert_array_equal(np.load(folder / "text_feat.npy"), np.ones((3, 2), np.float16))


def test_mirror_environment_variable(tmp_path, ds, files, server, monkeypatch):
    for k, v in files.items():
        server.routes[f"/mirror/{NAME}/{k}"] = v
    spec = datasets.register(make_spec(files, "http://127.0.0.1:9/never-used"))
    try:
        monkeypatch.setenv("DIFFCL_MIRROR", server.url + "/mirror/")
        monkeypatch.setenv("DIFFCL_DATA", str(tmp_path / "envcache"))
        assert_same(datasets.load(NAME, progress=False), ds)
    finally:
        datasets.unregister(spec.name)
    assert all(r.startswith(f"/mirror/{NAME}/") for r in server.requests)
    assert (tmp_path / "envcache" / NAME / "trnMat.pkl").is_file()


def test_published_size_mismatch_warns(tmp_path, files, server, caplog):
    spec = make_spec(files, server.url + "/fake", expected={"users": 12_345, "test": 1})
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        datasets.load(spec, root=tmp_path, progress=False)
    assert any("differs from the published sizes" in r.getMessage() and "12,345" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- registry & cache folder
def test_git_blob_sha1(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert datasets.git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert datasets.git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCL_DATA", str(tmp_path / "env"))
    assert datasets.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert datasets.cache_dir() == tmp_path / "env"
    monkeypatch.delenv("DIFFCL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert datasets.cache_dir() == tmp_path / "xdg" / "diffcl_lite"


def test_real_remote_entries_are_pinned():
    for name, n_files in (("tiktok", 6), ("baby", 5)):
        spec = datasets.REGISTRY[name]
        assert len(spec.files) == n_files
        assert all(re.fullmatch(r"[0-9a-f]{40}", f.blob) for f in spec.files)
        url = download._url_for(spec, spec.files[0], None)
        assert url == f"https://raw.githubusercontent.com/HKUDS/DiffMM/{datasets.DIFFMM_COMMIT}/Datasets/{name}/trnMat.pkl"
    assert [f.final_name for f in datasets.REGISTRY["baby"].files][-1] == "image_feat.npy"


def test_register_rejects_duplicates():
    with pytest.raises(DiffCLError, match="already registered"):
        datasets.register(DatasetSpec(name="tiktok", kind="remote", description="x"))


def test_list_datasets_and_data_cards():
    names = datasets.list_datasets()
    for n in ("synthetic", "synthetic-baby", "synthetic-tiktok", "tiktok", "baby", "mmrec:<folder>", "diffmm:<folder>"):
        assert n in names
    for n in ("synthetic", "synthetic-baby", "synthetic-tiktok", "tiktok", "baby", "mmrec:/x", "diffmm:/x"):
        card = datasets.data_card(n)
        for section in ("## Source", "## Terms", "## Size", "## Modalities", "## Citation", "## Notes"):
            assert section in card, (n, section)
    assert "https://github.com/enoche/MMRec#dataset" in datasets.data_card("mmrec:/x")
    assert "never ships or redistributes" in datasets.data_card("tiktok")
    assert "e2592cf4a18e9ddcd6a0814679d4faf34d08a373" in datasets.data_card("tiktok")
    assert "n_users=19445" in datasets.data_card("synthetic-baby")
    with pytest.raises(DiffCLError, match="unknown dataset 'nope'"):
        datasets.data_card("nope")


def test_unknown_name():
    with pytest.raises(DiffCLError, match=r"unknown dataset 'no-such-thing'.*synthetic"):
        datasets.load("no-such-thing")


# ---------------------------------------------------------------------- synthetic and folders
def test_synthetic_names_pass_arguments_through():
    small = datasets.load("synthetic", n_users=40, n_items=30, n_topics=3, interactions_per_user=6.0, seed=3)
    assert (small.n_users, small.n_items) == (40, 30)
    tk = datasets.load("synthetic-tiktok", n_users=40, n_items=30, interactions_per_user=6.0)
    assert {k: v.shape[1] for k, v in tk.features.items()} == {"audio": 128, "image": 128, "text": 768}
    assert tk.name == "synthetic-tiktok"


def test_synthetic_scales_match_the_published_datasets():
    baby = datasets.REGISTRY["synthetic-baby"].defaults
    assert (baby["n_users"], baby["n_items"], baby["modality_dims"]) == (19_445, 7_050, {"image": 4096, "text": 384})
    assert abs(baby["n_users"] * baby["interactions_per_user"] - 160_792) < 500
    tk = datasets.REGISTRY["synthetic-tiktok"].defaults
    assert (tk["n_users"], tk["n_items"]) == (9_308, 6_710)
    assert abs(tk["n_users"] * tk["interactions_per_user"] - (59_541 + 3_051 + 6_130)) < 500


def test_folder_prefixes_and_plain_paths(tmp_path, ds, caplog):
    save_mmrec(ds, tmp_path / "baby", name="baby")
    save_diffmm(ds, tmp_path / "dm")
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        a = datasets.load(f"mmrec:{tmp_path / 'baby'}")
    assert a.meta["format"] == "mmrec"
    assert any("MMRec baby" in r.getMessage() and "19,445" in r.getMessage() for r in caplog.records)
    assert datasets.load(f"diffmm:{tmp_path / 'dm'}").meta["format"] == "diffmm"
    assert datasets.load(str(tmp_path / "dm")).meta["format"] == "diffmm"
    assert datasets.load(tmp_path / "baby", features=["text"]).modalities == ["text"]


# ---------------------------------------------------------------------- hostile mirrors and a corrupt cache
def test_trickling_mirror_is_stopped_by_the_deadline(tmp_path, files, spec, server):
    # one byte every 0.05 s: the whole file would take minutes, each read arrives well within the stall limit
    path = "/fake/trnMat.pkl"
    server.trickle[path] = 0.05
    assert len(files["trnMat.pkl"]) * 0.05 > 60
    with pytest.raises(DownloadError) as err:
        datasets.load(NAME, root=tmp_path, progress=False, timeout=0.5)
    msg = str(err.value)
    assert f"{server.url}{path}" in msg and "0.5 s deadline" in msg and "--timeout" in msg
    assert server.sent[path] < len(files["trnMat.pkl"])  # the transfer was given up, not finished
    assert not (tmp_path / NAME / "trnMat.pkl").exists() and leftovers(tmp_path) == []


def test_oversized_mirror_is_cut_at_the_pinned_size(tmp_path, files, spec, server):
    path = "/fake/valMat.pkl"
    server.endless[path] = 64 << 20  # 64 MB of junk without a Content-Length, for a file pinned at about 1 kB
    with pytest.raises(DownloadError) as err:
        datasets.load(NAME, root=tmp_path, progress=False, timeout=30)
    msg = str(err.value)
    pinned = len(files["valMat.pkl"])
    assert f"{server.url}{path}" in msg and f"more than the {pinned:,} bytes pinned" in msg and "cut after" in msg
    assert "Nothing was saved" in msg and "git hash-object" in msg
    assert server.sent.get(path, 0) < (16 << 20)  # the client hung up long before 64 MB
    assert not (tmp_path / NAME / "valMat.pkl").exists() and leftovers(tmp_path) == []


def test_announced_length_beyond_the_pin_is_refused_before_reading(tmp_path, spec, server):
    server.announce["/fake/tstMat.pkl"] = 10**9
    with pytest.raises(DownloadError, match=r"tstMat\.pkl: the server announces 1,000,000,000 bytes, more than the"):
        datasets.load(NAME, root=tmp_path, progress=False)
    assert not (tmp_path / NAME / "tstMat.pkl").exists() and leftovers(tmp_path) == []


def test_every_registered_file_has_a_pinned_size():
    for spec in datasets.REGISTRY.values():
        for rf in spec.files:
            assert rf.limit is not None and rf.limit > 0, (spec.name, rf.path)
    with pytest.raises(DiffCLError, match=r"no pinned size.*size=.*max_size="):
        datasets.register(DatasetSpec(name="unsized", kind="remote", description="x", files=(RemoteFile("a.npy", "0" * 40),)))
    assert "unsized" not in datasets.REGISTRY


def _corrupt_in_place(path: Path, keep_mtime: bool) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[: min(64, len(data))] = b"\xff" * min(64, len(data))
    with open(path, "r+b") as fh:  # same size, same inode
        fh.write(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_file_changed_in_place_is_hashed_again_and_replaced(tmp_path, ds, spec, server):
    datasets.load(NAME, root=tmp_path, progress=False)
    _corrupt_in_place(tmp_path / NAME / "trnMat.pkl", keep_mtime=False)
    n = len(server.requests)
    assert_same(datasets.load(NAME, root=tmp_path, progress=False), ds)
    assert server.requests[n:] == ["/fake/trnMat.pkl"]


def test_corrupt_file_with_its_old_mtime_is_reverified_when_it_fails_to_load(tmp_path, ds, spec, server, caplog):
    datasets.load(NAME, root=tmp_path, progress=False)
    _corrupt_in_place(tmp_path / NAME / "tstMat.pkl", keep_mtime=True)  # the cheap checks cannot see it
    n = len(server.requests)
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        assert_same(datasets.load(NAME, root=tmp_path, progress=False), ds)
    assert server.requests[n:] == ["/fake/tstMat.pkl"]
    assert any("tstMat.pkl changed since it was verified" in r.getMessage() for r in caplog.records)
    # offline, the same damage names the file and the fix instead of trusting the manifest again
    _corrupt_in_place(tmp_path / NAME / "tstMat.pkl", keep_mtime=True)
    with pytest.raises(DownloadError, match=r"tstMat\.pkl is not in the cache \(or changed since it was verified\)"):
        datasets.load(NAME, root=tmp_path, download=False)


def test_rehash_finds_a_silent_change(tmp_path, files, spec, server):
    datasets.fetch(NAME, root=tmp_path, progress=False)
    path = tmp_path / NAME / "image_feat.npy"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one feature value changes: the file still loads
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    n = len(server.requests)
    datasets.fetch(NAME, root=tmp_path, progress=False)
    assert server.requests[n:] == []  # trusted: same size and time
    datasets.fetch(NAME, root=tmp_path, progress=False, rehash=True)
    assert server.requests[n:] == ["/fake/image_feat.npy"]
    assert path.read_bytes() == files["image_feat.npy"]


@pytest.mark.parametrize("spec_text", ["mmrec:", "diffmm:", "mmrec:  "])
def test_empty_folder_after_a_prefix_is_an_error(spec_text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path must not load the current folder
    with pytest.raises(DiffCLError, match=r"the folder after '(mmrec|diffmm):' is empty. Fix: name the folder, e.g. --dataset"):
        datasets.load(spec_text)
