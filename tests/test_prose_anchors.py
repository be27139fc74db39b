"""Published anchors quoted in the lessons' prose agree with results/anchors.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _paragraphs_citing_anchors():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for para in "".join(cell["source"]).split("\n\n"):
                if "results/anchors.json" in para:
                    yield path.name, para


def test_every_recall_quoted_beside_the_anchors_file_is_an_anchor():
    anchors = json.loads((ROOT / "results" / "anchors.json").read_text(encoding="utf-8"))["anchors"]
    values = [a["recall@20"] for a in anchors]
    found = 0
    for name, para in _paragraphs_citing_anchors():
        for num in re.findall(r"(?<![\d.])0\.\d{3,4}(?!\d)", para):
            digits = len(num) - 2
            assert any(f"{v:.{digits}f}" == num for v in values), f"{name}: {num} is not an anchor of results/anchors.json"
            found += 1
    assert found >= 3, "notebook 08 quotes the anchors beside results/anchors.json"
