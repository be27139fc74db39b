"""File formats: MMRec (.inter + *_feat.npy) and DiffMM (pickled sparse matrices + *_feat.npy)."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from diffcl_lite.errors import DataFormatError
from diffcl_lite.datasets.formats import detect_format, load_diffmm, load_folder, load_mmrec, save_diffmm, save_mmrec
from diffcl_lite.datasets.pickles import safe_load_pickle, save_sparse_pickle
from diffcl_lite.datasets.remap import remap_folder, remap_ids

try:
    from fixtures_data import (
        RunsCommand,
        inter_rows,
        old_scipy_pickle_bytes,
        pickle_globals,
        tiny_dataset,
        write_inter,
    )
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import (
        RunsCommand,
        inter_rows,
        old_scipy_pickle_bytes,
        pickle_globals,
        tiny_dataset,
        write_inter,
    )

HEADER = "userID\titemID\trating\ttimestamp\tx_label"


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset()


def mmrec_folder(tmp_path: Path, ds, rows: list[str] | None = None, header: str = "userID\titemID\tx_label") -> Path:
    """An MMRec folder for ``ds``; ``rows`` replaces the interaction lines."""
    folder = tmp_path / "mm"
    folder.mkdir()
    write_inter(folder / "tiny.inter", header, inter_rows(ds) if rows is None else rows)
    for name, arr in ds.features.items():
        np.save(folder / f"{name}_feat.npy", arr)
    return folder


def sorted_pairs(p: np.ndarray) -> np.ndarray:
    return p[np.lexsort((p[:, 1], p[:, 0]))]


# ---------------------------------------------------------------------- round trips
def test_mmrec_round_trip(tmp_path, ds):
    path = save_mmrec(ds, tmp_path / "out")
    assert path.name == "tiny.inter"
    back = load_mmrec(tmp_path / "out")
    assert (back.n_users, back.n_items) == (ds.n_users, ds.n_items)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(back.split(split), ds.split(split))
    assert list(back.features) == ["image", "text"]
    for name in ds.features:
        np.testing.assert_array_equal(back.features[name], ds.features[name])
    assert back.meta["format"] == "mmrec"
    assert not list((tmp_path / "out").glob("*.tmp")), "atomic writes left temporary files"


def test_diffmm_round_trip_float16_features_become_float32(tmp_path, ds):
    save_diffmm(ds, tmp_path / "dm", feature_dtype=np.float16)
    assert np.load(tmp_path / "dm" / "image_feat.npy").dtype == np.float16
    back = load_diffmm(tmp_path / "dm")
    assert (back.n_users, back.n_items) == (ds.n_users, ds.n_items)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(back.split(split), sorted_pairs(ds.split(split)))
    for name, arr in ds.features.items():
        assert back.features[name].dtype == np.float32
        np.testing.assert_array_equal(back.features[name], arr.astype(np.float16).astype(np.float32))


def test_mmrec_float16_features_become_float32(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds)
    np.save(folder / "image_feat.npy", ds.features["image"].astype(np.float16))
    back = load_mmrec(folder)
    assert back.features["image"].dtype == np.float32
    np.testing.assert_allclose(back.features["image"], ds.features["image"], atol=1e-2)


def test_load_folder_detects_the_format(tmp_path, ds):
    save_mmrec(ds, tmp_path / "a")
    save_diffmm(ds, tmp_path / "b")
    assert detect_format(tmp_path / "a") == "mmrec"
    assert detect_format(tmp_path / "b") == "diffmm"
    assert load_folder(tmp_path / "a").meta["format"] == "mmrec"
    assert load_folder(tmp_path / "b").meta["format"] == "diffmm"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("x")
    with pytest.raises(DataFormatError, match=r"cannot tell the dataset format.*notes\.txt"):
        load_folder(tmp_path / "c")


def test_features_argument_selects_and_orders_modalities(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds)
    assert list(load_mmrec(folder, features=["text", "image"]).features) == ["text", "image"]
    assert list(load_mmrec(folder, features=["text"]).features) == ["text"]
    assert load_mmrec(folder, features=[]).features == {}
    with pytest.raises(DataFormatError, match=r"audio_feat\.npy.*available: \['image', 'text'\]"):
        load_mmrec(folder, features=["audio"])


def test_inter_file_choice(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds)
    write_inter(folder / "other.inter", "userID\titemID\tx_label", inter_rows(ds))
    with pytest.raises(DataFormatError, match=r"several \.inter files \(other\.inter, tiny\.inter\)"):
        load_mmrec(folder)
    assert load_mmrec(folder, name="other").name == "other"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no .inter file found"):
        load_mmrec(empty)


def test_optional_rating_timestamp_columns_are_accepted(tmp_path, ds):
    rows = [f"{r.split(chr(9))[0]}\t{r.split(chr(9))[1]}\t5\t\t{r.split(chr(9))[2]}" for r in inter_rows(ds)]
    folder = mmrec_folder(tmp_path, ds, rows=rows, header=HEADER)
    assert len(load_mmrec(folder).train) == len(ds.train)


# ---------------------------------------------------------------------- bad MMRec input
def test_inter_missing_columns(tmp_path, ds):
    rows = ["\t".join(r.split("\t")[:2]) for r in inter_rows(ds)]
    folder = mmrec_folder(tmp_path, ds, rows=rows, header="userID\titemID")
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert "tiny.inter" in msg and "missing column(s) ['x_label']" in msg and "found columns ['userID', 'itemID']" in msg


def test_inter_comma_separated_gets_a_hint(tmp_path, ds):
    rows = [r.replace("\t", ",") for r in inter_rows(ds)]
    folder = mmrec_folder(tmp_path, ds, rows=rows, header="userID,itemID,x_label")
    with pytest.raises(DataFormatError, match="comma- or space-separated"):
        load_mmrec(folder)


def test_inter_unparsable_row(tmp_path, ds):
    rows = inter_rows(ds)
    rows[2] = "3\tabc\t0"
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert "tiny.inter, line 4" in msg and "itemID='abc'" in msg and "'3\\tabc\\t0'" in msg and "Fix" in msg


def test_inter_row_with_extra_fields(tmp_path, ds):
    rows = inter_rows(ds)
    rows[0] = rows[0] + "\t99"
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError, match=r"tiny\.inter, line 2: .*more tab-separated fields"):
        load_mmrec(folder)


def test_inter_negative_id(tmp_path, ds):
    rows = inter_rows(ds)
    rows[5] = "-1\t3\t0"
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError, match=r"tiny\.inter, line 7: negative userID -1"):
        load_mmrec(folder)


def test_inter_x_label_out_of_range(tmp_path, ds):
    rows = inter_rows(ds)
    rows[1] = "0\t1\t3"
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError, match=r"tiny\.inter, line 3: x_label=3 is not 0, 1 or 2"):
        load_mmrec(folder)


def test_item_id_out_of_range_for_features(tmp_path, ds):
    rows = inter_rows(ds) + [f"0\t{ds.n_items + 5}\t0"]
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert "tiny.inter" in msg and f"itemID {ds.n_items + 5} is out of range" in msg and f"has {ds.n_items} rows" in msg


def test_feature_rows_disagree(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds)
    np.save(folder / "text_feat.npy", ds.features["text"][:-1])
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert f"image_feat.npy: {ds.n_items} rows" in msg and f"text_feat.npy: {ds.n_items - 1} rows" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(tmp_path, ds, bad):
    folder = mmrec_folder(tmp_path, ds)
    img = ds.features["image"].copy()
    img[7, 2] = bad
    np.save(folder / "image_feat.npy", img)
    with pytest.raises(DataFormatError, match=r"image_feat\.npy: 1 rows hold NaN or inf \(first: row 7"):
        load_mmrec(folder)


def test_object_feature_file_is_refused(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds)
    np.save(folder / "image_feat.npy", np.array([[object()]], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"image_feat\.npy: cannot load"):
        load_mmrec(folder)


def test_split_with_no_users(tmp_path, ds):
    rows = [r for r in inter_rows(ds) if not r.endswith("\t1")]
    folder = mmrec_folder(tmp_path, ds, rows=rows)
    with pytest.raises(DataFormatError, match=r"tiny\.inter: the valid split has no users: no line has x_label=1"):
        load_mmrec(folder)


# ---------------------------------------------------------------------- pickles
def test_pickle_with_forbidden_class_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "trnMat.pkl"
    path.write_bytes(pickle.dumps(RunsCommand(f"echo pwned > {marker}")))
    with pytest.raises(DataFormatError) as err:
        safe_load_pickle(path)
    msg = str(err.value)
    assert str(path) in msg and "refusing to unpickle" in msg and ".system" in msg and "If you trust this file" in msg
    assert not marker.exists()


@pytest.mark.parametrize("proto", [0, 2, 4])
def test_old_scipy_pickle_loads(tmp_path, proto):
    m = sp.coo_matrix((np.array([1.0, 1.0, 1.0], np.float32), ([0, 1, 2], [3, 0, 2])), shape=(3, 4))
    data = old_scipy_pickle_bytes(m, proto)
    names = pickle_globals(data)
    assert "scipy.sparse.coo.coo_matrix" in names and "numpy.core.multiarray._reconstruct" in names
    assert not any("_coo" in n or "numpy._core" in n for n in names)
    (tmp_path / "m.pkl").write_bytes(data)
    back = safe_load_pickle(tmp_path / "m.pkl")
    assert isinstance(back, sp.coo_matrix) and back.shape == (3, 4)
    np.testing.assert_array_equal(back.toarray(), m.toarray())


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_current_scipy_pickles_load(tmp_path, proto):
    m = sp.random(5, 6, density=0.4, format="coo", random_state=0, dtype=np.float32)
    for mat in (m, m.tocsr()):
        (tmp_path / "m.pkl").write_bytes(pickle.dumps(mat, protocol=proto))
        np.testing.assert_array_equal(safe_load_pickle(tmp_path / "m.pkl").toarray(), m.toarray())


def test_pickle_that_is_not_a_sparse_matrix(tmp_path):
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(np.arange(5)))
    with pytest.raises(DataFormatError, match=r"m\.pkl: holds a numpy\.ndarray, expected a scipy sparse matrix"):
        safe_load_pickle(tmp_path / "m.pkl")


def test_damaged_pickles(tmp_path):
    m = sp.coo_matrix((np.ones(2, np.float32), ([0, 1], [1, 2])), shape=(2, 3))
    m.coords = (np.array([0, 7]), np.array([1, 2]))  # row 7 in a 2-row matrix
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(m))
    with pytest.raises(DataFormatError, match=r"bad\.pkl: .*row indices outside 0\.\.1"):
        safe_load_pickle(tmp_path / "bad.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(sp.coo_matrix(np.eye(3)))[:40])
    with pytest.raises(DataFormatError, match=r"cut\.pkl: cannot read the file as a pickle"):
        safe_load_pickle(tmp_path / "cut.pkl")


# ---------------------------------------------------------------------- bad DiffMM input
def test_diffmm_binarises_non_binary_values_with_a_warning(tmp_path, ds, caplog):
    save_diffmm(ds, tmp_path)
    trn = safe_load_pickle(tmp_path / "trnMat.pkl")
    data = trn.data.copy()
    data[:3] = [2.0, 5.0, 0.0]  # two non-binary values and one explicit zero
    zero_pair = (int(trn.row[2]), int(trn.col[2]))
    save_sparse_pickle(sp.coo_matrix((data, (trn.row, trn.col)), shape=trn.shape), tmp_path / "trnMat.pkl")
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        back = load_diffmm(tmp_path)
    assert any("trnMat.pkl: 2 stored values are not 0/1; binarised" in r.getMessage() for r in caplog.records)
    assert len(back.train) == len(ds.train) - 1
    assert zero_pair not in set(map(tuple, back.train.tolist()))


def test_diffmm_shapes_must_agree(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    save_sparse_pickle(sp.coo_matrix(([1.0], ([0], [0])), shape=(ds.n_users, ds.n_items + 1)), tmp_path / "tstMat.pkl")
    with pytest.raises(DataFormatError, match=rf"disagree on their shape .*tstMat\.pkl: {ds.n_users} x {ds.n_items + 1}"):
        load_diffmm(tmp_path)


def test_diffmm_missing_valmat(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    (tmp_path / "valMat.pkl").unlink()
    with pytest.raises(DataFormatError, match=r"valMat\.pkl: missing"):
        load_diffmm(tmp_path)


def test_diffmm_feature_rows_must_match_items(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    for name in ("image", "text"):
        np.save(tmp_path / f"{name}_feat.npy", ds.features[name][:-2])
    with pytest.raises(DataFormatError, match=rf"image_feat\.npy: has {ds.n_items - 2} rows but trnMat\.pkl has {ds.n_items} items"):
        load_diffmm(tmp_path)


def test_diffmm_empty_split(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    save_sparse_pickle(sp.coo_matrix((ds.n_users, ds.n_items), dtype=np.float32), tmp_path / "tstMat.pkl")
    with pytest.raises(DataFormatError, match=r"tstMat\.pkl: the test split has no users"):
        load_diffmm(tmp_path)


# ---------------------------------------------------------------------- id sanity, duplicates, overlapping splits
def test_unremapped_user_id_is_refused_and_remap_folder_fixes_it(tmp_path, ds):
    rows = inter_rows(ds)
    u, i, k = rows[0].split("\t")
    rows[0] = f"50000000\t{i}\t{k}"  # one raw id among 30 users
    folder = mmrec_folder(tmp_path, ds, rows)
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert str(folder / "tiny.inter") in msg and "50,000,000" in msg and "line 2" in msg
    assert f"python -m diffcl_lite data remap {folder} {folder}-remapped" in msg and "remap_folder" in msg
    out = remap_folder(folder, tmp_path / "fixed")
    back = load_mmrec(out)
    assert back.n_users == ds.n_users + 1 and back.n_items == ds.n_items  # items keep their feature rows
    ids = (out / "user_ids.csv").read_text().splitlines()
    assert ids[0] == "new_id,original_id" and ids[-1] == f"{back.n_users - 1},50000000"
    assert not (out / "item_ids.csv").exists()
    np.testing.assert_array_equal(back.features["image"], ds.features["image"])


def test_pickled_shape_beyond_memory_is_refused(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    trn = safe_load_pickle(tmp_path / "trnMat.pkl")
    for name in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl"):
        m = safe_load_pickle(tmp_path / name)
        save_sparse_pickle(sp.coo_matrix((m.data, (m.row, m.col)), shape=(10**12, ds.n_items)), tmp_path / name)
    with pytest.raises(DataFormatError) as err:
        load_diffmm(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "trnMat.pkl") in msg and "1,000,000,000,000 x" in msg and "data remap" in msg
    back = load_diffmm(remap_folder(tmp_path, tmp_path.parent / (tmp_path.name + "-fixed")))
    assert back.n_users == len(np.unique(np.concatenate([ds.train[:, 0], ds.valid[:, 0], ds.test[:, 0]])))
    assert len(back.train) == len(trn.data)


def test_duplicate_lines_are_dropped_with_a_count(tmp_path, ds, caplog):
    rows = inter_rows(ds)
    folder = mmrec_folder(tmp_path, ds, rows + rows[:3])
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        back = load_mmrec(folder)
    assert any("dropped 3 duplicate interaction row(s)" in r.getMessage() and f"line {len(rows) + 2}" in r.getMessage()
               for r in caplog.records)
    assert len(back.train) == len(ds.train)


def test_pair_in_two_splits_is_an_error_unless_allowed(tmp_path, ds, caplog):
    rows = inter_rows(ds)
    u, i, _ = rows[0].split("\t")  # a train row
    folder = mmrec_folder(tmp_path, ds, rows + [f"{u}\t{i}\t2"])
    with pytest.raises(DataFormatError) as err:
        load_mmrec(folder)
    msg = str(err.value)
    assert str(folder / "tiny.inter") in msg and "line 2 (train) and line" in msg and "(test)" in msg
    assert "allow_split_overlap=True" in msg and "--allow-split-overlap" in msg
    with caplog.at_level(logging.WARNING, logger="diffcl_lite.datasets"):
        back = load_folder(folder, allow_split_overlap=True)
    assert len(back.test) == len(ds.test) + 1
    assert any("appear in two splits" in r.getMessage() for r in caplog.records)


def test_diffmm_pair_in_two_matrices_is_an_error(tmp_path, ds):
    save_diffmm(ds, tmp_path)
    tst = safe_load_pickle(tmp_path / "tstMat.pkl")
    u, i = (int(x) for x in ds.train[0])
    save_sparse_pickle(sp.coo_matrix((np.r_[tst.data, 1.0], (np.r_[tst.row, u], np.r_[tst.col, i])), shape=tst.shape),
                       tmp_path / "tstMat.pkl")
    with pytest.raises(DataFormatError, match=rf"1 \(user, item\) pair\(s\) appear in two splits \(first: user {u}, item {i} in train and test\)"):
        load_diffmm(tmp_path)
    assert len(load_diffmm(tmp_path, allow_split_overlap=True).test) == len(ds.test) + 1


def test_header_without_lines_says_what_to_do(tmp_path, ds):
    folder = mmrec_folder(tmp_path, ds, [])
    with pytest.raises(DataFormatError, match=r"header but no interaction lines\. Fix: add one line per interaction"):
        load_mmrec(folder)


def test_remap_ids_round_trip():
    new, original = remap_ids(np.array([40, 7, 40, 1_000_000]))
    assert new.tolist() == [1, 0, 1, 2] and original.tolist() == [7, 40, 1_000_000]
    assert original[new].tolist() == [40, 7, 40, 1_000_000]
