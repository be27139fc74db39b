import numpy as np
import pytest
import torch

from diffcl_lite.lessons.measures.alignment import anchor_agreement, matched_pair_rank
from diffcl_lite.lessons.checks import check, run_check
from diffcl_lite.lessons.notebook import fast_mode, setup_notebook
from diffcl_lite.lessons.viz import embed_2d, knn_for_umap, neighbourhood_purity, pca_2d


def test_knn_for_umap_matches_brute_force():
    x = np.random.default_rng(0).standard_normal((60, 5)).astype(np.float32)
    idx, dist = knn_for_umap(x, 6, block_size=7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - xn @ xn.T
    np.fill_diagonal(d, -1)
    ref = np.argsort(d, axis=1)[:, :6]
    assert (idx[:, 0] == np.arange(60)).all() and dist[:, 0].tolist() == [0.0] * 60
    assert all(set(a) == set(b) for a, b in zip(idx, ref))


def test_pca_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (30, 8)), rng.normal(3, 0.1, (30, 8))])
    a = pca_2d(x)
    # independent reference: the top eigenvectors of the covariance matrix, up to the sign of each axis
    xc = x - x.mean(0)
    _, vecs = np.linalg.eigh(xc.T @ xc)
    ref = xc @ vecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(a), np.abs(ref), rtol=1e-4, atol=1e-4)
    # the sign rule: on each axis the loading of largest magnitude is positive
    comps = np.linalg.lstsq(x - x.mean(0), a.astype(np.float64), rcond=None)[0].T
    assert (comps[np.arange(2), np.abs(comps).argmax(1)] > 0).all()
    assert abs(a[:30, 0].mean() - a[30:, 0].mean()) > 5
    assert embed_2d(x, method="pca").shape == (60, 2)


def test_neighbourhood_purity_extremes():
    rng = np.random.default_rng(2)
    centers = rng.normal(0, 5, (3, 4))
    labels = np.repeat(np.arange(3), 20)
    x = centers[labels] + rng.normal(0, 0.01, (60, 4))
    assert neighbourhood_purity(x, labels, k=5) == pytest.approx(1.0)
    assert neighbourhood_purity(rng.normal(size=(60, 4)), labels, k=5) < 0.6


def test_alignment_measures():
    a = torch.randn(20, 8)
    assert matched_pair_rank(a, a) == 1.0 and anchor_agreement(a, a) == pytest.approx(1.0)
    assert matched_pair_rank(a, torch.randn(20, 8)) < 0.5


def test_check_messages():
    ok = check("sum", np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert ok.passed and "correct" in ok.message
    bad_shape = check("v", np.zeros((64, 1)), shape=(64,))
    assert not bad_shape.passed and "expected shape (64,), got (64, 1)" in bad_shape.message
    wrong = check("x", 0.5, 0.25, hint="divide by K")
    assert not wrong.passed and "0.25" not in wrong.message and "Hint" in wrong.message
    assert "0.25" in check("x", 0.5, 0.25, reveal=True).message
    assert not check("n", None, 1.0).passed
    crash = run_check("boom", lambda: 1 / 0, 1.0)
    assert not crash.passed and "ZeroDivisionError" in crash.message
    assert "not filled" in run_check("todo", lambda: (_ for _ in ()).throw(NotImplementedError()), 1).message


def test_setup_notebook_fast_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFCL_FAST", "1")
    monkeypatch.setenv("DIFFCL_FIGURES", str(tmp_path / "figs"))
    assert fast_mode()
    monkeypatch.setenv("DIFFCL_DEVICE", "cpu")  # the environment variable wins over "auto"
    ctx = setup_notebook(seed=3)
    assert ctx.fast and ctx.device == torch.device("cpu") and ctx.pick(100, 5) == 5
    # seeded: the next draw is the one torch.manual_seed(3) gives
    draw = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(draw, torch.rand(3))
    assert (tmp_path / "figs").is_dir()
    monkeypatch.setenv("DIFFCL_FAST", "0")
    assert not fast_mode()


def test_defined_in_names_the_file_and_line_where_the_def_stands():
    from pathlib import Path

    from diffcl_lite.errors import DiffCLError
    from diffcl_lite.lessons.notebook import defined_in
    from diffcl_lite.losses import info_nce
    from diffcl_lite.model import DiffCL

    root = Path(__file__).resolve().parents[1]
    for obj, keyword in ((info_nce, "def info_nce("), (DiffCL, "class DiffCL(")):
        where = defined_in(obj)
        assert where.path == f"diffcl_lite/{obj.__module__.split('.', 1)[1].replace('.', '/')}.py"
        file_lines = (root / where.path).read_text(encoding="utf-8").splitlines()
        def_line = next(i for i, text in enumerate(file_lines, 1) if text.lstrip().startswith(keyword))
        assert where.line <= def_line < where.line + 5  # decorators may stand above the def
        assert file_lines[where.line - 1] == where.source.splitlines()[0]
        assert where.path in where._repr_markdown_() and keyword in where._repr_markdown_()
    with pytest.raises(DiffCLError, match="not part of diffcl_lite"):
        defined_in(len)
