"""The synthetic datasets are bit-identical on every machine: pinned checksums, and the same bits
under other BLAS kernels, SIMD levels and thread counts.

A failure here means the generator's numbers moved. If that was intended (a new generative story),
re-pin the checksum printed in the message and regenerate the notebooks' golden cells
(``python -m diffcl_lite.course.nbtools execute notebooks/*.ipynb``). If it was not, something in
``make_synthetic`` now depends on the machine (a BLAS product, a vectorised tanh/exp/log, the
order of an ``argpartition``): see the comment above ``data._fixed_order_dot``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diffcl_lite import datasets
from diffcl_lite.data import _fixed_order_dot, _squash, make_synthetic
from diffcl_lite.graphs import knn_indices
from diffcl_lite.runs import dataset_fingerprint

# every configuration a notebook or a preset generates, with the sha256 of its splits and features
SMALL = {
    "make_synthetic() (notebooks 00-04)": (dict(), "5bd60148eacb7fbaeb4ebc2d53fa030f00aa6b7e48416c46229b00452b3530bd"),
    "notebooks 05-08, fast mode (300 x 200)": (dict(n_users=300, n_items=200),
                                               "9bf65b24b107dab9acb036211e97982aac772dcdc389817d252912d4e2f29888"),
    "notebook 05, full mode (1000 x 600)": (dict(n_users=1000, n_items=600),
                                            "e25c21926f5f1f130aeb55dd6bb7f96de522af1dbf06452b0ef839fce6f3e3fa"),
    "notebook 06, full mode (800 x 500)": (dict(n_users=800, n_items=500),
                                           "fa7dc195dbb426ac6d616c59a2805b78ac6aa963f8ff8cdb132117771f3d85f9"),
}
PRESETS = {
    "synthetic": "5bd60148eacb7fbaeb4ebc2d53fa030f00aa6b7e48416c46229b00452b3530bd",
    "synthetic-sparse": "fa23968938bc4ebfc7320a844e97cd3bd8c4bef70a096a61a955d6e36fb9a3e0",
    "synthetic-hard": "fcf8ac13546cdc5893cfe2c6d91ae50fc0b12529401e81f5b8cf3641a0671d6c",
}
LARGE_PRESETS = {
    "synthetic-tiktok": "16d8cd82a84393f8e6a077bfc3adb786fbdb941775cd9a4d17d498e0b11b4056",
    "synthetic-baby": "a0c9ec8e8f4bd93db20974c7751bd7850a1a0903877a476fbf85905c7273ebc7",
}


def _check(label: str, ds, expected: str) -> None:
    got = dataset_fingerprint(ds)["sha256"]
    assert got == expected, (
        f"{label}: the synthetic data changed (sha256 {got}, pinned {expected}). If the generator was changed on "
        f"purpose, pin the new value here and refresh the golden cells; otherwise make_synthetic now depends on the "
        f"machine or the library version."
    )


@pytest.mark.parametrize("label", list(SMALL))
def test_notebook_configurations_are_pinned(label):
    kwargs, expected = SMALL[label]
    _check(label, make_synthetic(**kwargs), expected)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_pinned(name):
    _check(f"preset {name!r}", datasets.load(name), PRESETS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LARGE_PRESETS))
def test_large_presets_are_pinned(name):
    _check(f"preset {name!r}", datasets.load(name), LARGE_PRESETS[name])


def test_every_synthetic_preset_has_a_pinned_checksum():
    synthetic = {name for name, spec in datasets.REGISTRY.items() if spec.kind == "synthetic"}
    missing = synthetic - set(PRESETS) - set(LARGE_PRESETS)
    assert not missing, f"synthetic presets without a pinned checksum in {__file__}: {sorted(missing)}"


def _simd_features_to_disable() -> str:
    from numpy._core._multiarray_umath import __cpu_features__ as feats  # numpy >= 2

    names = [n for n in ("X86_V4", "X86_V3", "AVX512F", "AVX2", "FMA3") if feats.get(n)]
    return " ".join(names)


CONDITIONS = {
    "1 thread": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    "OpenBLAS Prescott kernel (no AVX/FMA)": {"OPENBLAS_CORETYPE": "Prescott"},
    "OpenBLAS Sandybridge kernel (AVX, no FMA)": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "NumPy without its AVX2/AVX-512 loops": "numpy-baseline",
}


@pytest.mark.slow
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_same_bits_under_other_kernels_and_threads(condition):
    env = dict(os.environ)
    extra = CONDITIONS[condition]
    if extra == "numpy-baseline":
        try:
            disable = _simd_features_to_disable()
        except ImportError:  # numpy 1.x names its features differently
            pytest.skip("NumPy < 2: feature names differ")
        if not disable:
            pytest.skip("this CPU has no NumPy SIMD level above the baseline to switch off")
        env["NPY_DISABLE_CPU_FEATURES"] = disable
    else:
        env.update(extra)
    code = ("import json; from diffcl_lite.data import make_synthetic; from diffcl_lite.runs import dataset_fingerprint; "
            "print(json.dumps([dataset_fingerprint(make_synthetic(**kw))['sha256'] for kw in "
            "[{}, {'n_users': 300, 'n_items': 200}]]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == [SMALL["make_synthetic() (notebooks 00-04)"][1], SMALL["notebooks 05-08, fast mode (300 x 200)"][1]], \
        f"make_synthetic gives other bits under {condition}"


def test_fixed_order_dot_is_the_matrix_product():
    rng = np.random.default_rng(3)
    a, b = rng.random((7, 5)), rng.standard_normal((5, 9))
    np.testing.assert_allclose(_fixed_order_dot(a, b), a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_fixed_order_dot(a[2], b), a[2] @ b, rtol=1e-12, atol=1e-12)
    assert _fixed_order_dot(a[2], b).shape == (9,)


def test_squash_is_tanh_like():
    x = np.linspace(-50, 50, 2001)
    s = _squash(x)
    assert np.all(np.abs(s) < 1) and np.all(np.diff(s) > 0)
    np.testing.assert_allclose(_squash(-x), -s)
    np.testing.assert_allclose(_squash(np.array([0.0, 1.0])), [0.0, 1 / np.sqrt(2)])


def test_knn_ties_are_broken_by_item_id_and_match_float64():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    # items 0-5 and their exact copies 6-11 (plus scaled copies 12-17: the same cosine)
    x = np.concatenate([base, base, 2 * base])
    idx, sim = knn_indices(x, k=3)
    for i in range(6):
        # the two exact ties of item i are its copies i+6 and i+12 (cosine 1), smaller id first
        assert idx[i, :2].tolist() == [i + 6, i + 12]
        assert idx[i + 6, :2].tolist() == [i, i + 12]
    # the third neighbour is the best other item by float64 cosine
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cos = unit @ unit.T
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j % 6 != i % 6]
        # j, j+6 and j+12 have bit-identical unit rows: a tie, which the smaller id wins. The BLAS product
        # above may still give them different last bits (kernel-dependent), so compare at 1e-12.
        best = max(others, key=lambda j: (round(float(cos[i, j]), 12), -j))
        assert int(idx[i, 2]) == best
    assert sim.dtype.is_floating_point and float(sim[:, 0].min()) == pytest.approx(1.0, abs=1e-6)
