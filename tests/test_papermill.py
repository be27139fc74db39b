"""papermill runs every lesson notebook with a `-p NAME VALUE` override, in fast mode.

The parameters cell holds scalars only and each notebook resolves ``None`` to its fast/full default
after ``setup_notebook`` (``ctx.param``), so an override wins in both modes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# one override per notebook (a size or a step count, chosen to keep the run short), and a text the
# executed notebook must then contain when the override is visible in an output (None: not printed)
OVERRIDES = {
    "00_welcome.ipynb": ({"N_USERS": 500}, "users: 500"),
    "01_user_item_graph.ipynb": ({"MAX_LAYERS": 14}, None),
    "02_item_item_graph.ipynb": ({"K": 8}, None),
    "03_forward_diffusion.ipynb": ({"N_STATS": 2000}, None),
    "04_reverse_diffusion.ipynb": ({"EMB_TRAIN_STEPS": 120}, "after 120 steps"),
    "05_contrastive_views.ipynb": ({"N_USERS": 250}, None),
    "06_modality_alignment.ipynb": ({"EPOCHS": 2}, None),
    "07_embedding_atlas.ipynb": ({"EPOCHS": 2}, None),
    "08_full_training.ipynb": ({"EPOCHS": 2}, "up to 2 epochs"),
    "09_verdict.ipynb": ({"LIVE_USERS": 100}, "100 users"),
}


def test_every_lesson_has_an_override():
    assert sorted(OVERRIDES) == sorted(p.name for p in NOTEBOOKS.glob("0*.ipynb"))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_papermill_runs_with_an_override(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCL_FAST", "1")
    params, expected = OVERRIDES[name]
    out = tmp_path / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=params, kernel_name="python3",
                               cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=600)
    nb = json.loads(out.read_text())
    injected = [i for i, c in enumerate(nb["cells"]) if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected == [2], f"{name}: papermill must inject the parameters right after the parameters cell"
    text = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                   for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    if expected is not None:
        assert expected in text, f"{name}: the override {params} is not visible in the outputs"
