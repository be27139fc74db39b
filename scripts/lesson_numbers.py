"""Numbers that the lesson notebooks quote in their prose, recorded from a full-mode run.

A notebook's markdown never types a full-mode result by hand. It writes the number followed by a
marker, ``0.590<!-- full:07.lightgcn_all -->`` (HTML comments do not show when the markdown is
rendered), and ``results/lessons_full.json`` holds the value that the notebook's own code computed
in full mode. ``tests/test_prose_numbers.py`` fails when a marked number and the file disagree.

    python scripts/lesson_numbers.py record [--only 07 08]   # execute in full mode, update the file
    python scripts/lesson_numbers.py check                   # compare the prose with the file
    python scripts/lesson_numbers.py show 07                 # the recorded values, formatted

``record`` executes each notebook top to bottom in full mode (``DIFFCL_FAST=0``, CPU, seed of the
notebook), then evaluates the expressions of :data:`SPEC` in the same kernel. The executed copy goes
to ``build/lesson_numbers/``; figures are saved to ``figures/`` as in ``make figures``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("lesson_numbers")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "lessons_full.json"
NOTEBOOKS = ROOT / "notebooks"
#: ``<number><!-- full:NN.key -->`` in a markdown cell
MARKER = re.compile(r"(?P<num>[-+]?\d[\d,]*(?:\.\d+)?)\s*<!--\s*full:(?P<key>\d\d\.[\w.-]+)\s*-->")

# helpers defined in the kernel before the expressions are evaluated
_PRELUDE = {
    "00": """
def _centroid_cos(clean):
    return np.concatenate([cosine_to_topic_centroid(ds.features[m], ds.item_labels)[(noisy != m) if clean else (noisy == m)]
                           for m in ds.modalities])
_cos_clean, _cos_noisy = _centroid_cos(True), _centroid_cos(False)
""",
    "01": """
_deg_desc = np.sort(ds.item_degrees("train"))[::-1]
_top10_share = _deg_desc[: len(_deg_desc) // 10].sum() / _deg_desc.sum()
""",
    "02": """
from diffcl_lite.lessons.measures.graphs import topic_agreement_sweep as _sweep
_fused_noisy_text = _sweep(ds.features, labels, k=K, image_weights=[IMAGE_WEIGHT],
                           groups={"noisy text": noisy == "text"}, fuse="graph")["noisy text"][0]
_rep = pd.DataFrame(rows).set_index("image representation")
""",
    "07": """
def _pur(name, group, src=None):
    x = (src or {**raw, **item_emb})[name]
    return float(viz.purity_per_point(x, topics, k=K_PURITY)[groups[group]].mean())
def _rho(name):
    from scipy.stats import spearmanr
    return float(spearmanr(item_degree, np.linalg.norm(item_emb[name], axis=1)).statistic)
""",
    "05": """
_t = table.set_index("view")
def _sw(kind, scale, col):
    return float(sweep_table[(sweep_table["kind"] == kind) & (sweep_table["noise_scale"] == scale)][col].iloc[0])
""",
    "06": """
def _pt(variant, view, group):
    return float(purity_table.loc[(variant, view), group])
def _mr(variant, view):
    return float(align_table.loc[(variant, view), "matched_pair_rank"])
def _ll(variant, view):
    return float(viz.link_lengths(maps[variant])[view])
_N, _I, _M = "no alignment", "InfoNCE alignment", "moment alignment"
""",
    "08": """
_abl = {label: res for label, res in rows}
_valid = [h["valid_recall@20"] for h in result.history if "valid_recall@20" in h]
""",
}

#: notebook number -> {key: (python expression in the executed notebook, format)}
SPEC: dict[str, dict[str, tuple[str, str]]] = {
    "00": {
        "interactions": ('ds.summary()["interactions"]', "d"),
        "density_pct": ('100 * ds.summary()["density"]', ".1f"),
        "denser_than_baby": ('ds.summary()["density"] / (160792 / (19445 * 7050))', ".0f"),
        "fav_topic_pct": ('100 * fav_share.mean()', ".0f"),
        "topics_for_80pct": ('topics_80.mean()', ".1f"),
        "clean_cos_p05": ('np.quantile(_cos_clean, 0.05)', ".2f"),
        "clean_cos_p95": ('np.quantile(_cos_clean, 0.95)', ".2f"),
        "noisy_cos_mean": ('_cos_noisy.mean()', ".2f"),
        "item_users": ('len(users)', "d"),
        "item_users_true_topic": ('int(fav[ds.item_labels[item]])', "d"),
    },
    "01": {
        "isolated_items": ('summary["isolated_items"]', "d"),
        "top10_edge_pct": ('100 * _top10_share', ".0f"),
        "sep_peak_L": ('int(np.argmax(sep_layer))', "d"),
        "collapse_L": ('next(L for L, c in enumerate(cos_layer) if c > 0.95)', "d"),
    },
    "02": {
        "tiny_cos_5_1": ('sim[5, 1]', ".2f"),
        "agree_image_pct": ('100 * graph_topic_agreement(G_img, labels)', ".0f"),
        "agree_text_pct": ('100 * graph_topic_agreement(G_txt, labels)', ".0f"),
        "chance": ('chance', ".2f"),
        "noisy_image_image_agree": ('table.loc["noisy image", "image kNN agreement"]', ".2f"),
        "noisy_text_text_agree": ('table.loc["noisy text", "text kNN agreement"]', ".2f"),
        "graph_fused_noisy_text": ('_fused_noisy_text', ".2f"),
        "sx_noisy_image": ('_rep.loc["S X", "noisy image"]', ".2f"),
        "xsx_noisy_image": ('_rep.loc["X + S X", "noisy image"]', ".2f"),
        "sx_noisy_text": ('_rep.loc["S X", "noisy text"]', ".2f"),
        "xsx_noisy_text": ('_rep.loc["X + S X", "noisy text"]', ".2f"),
        "clean_overlap_pct": ('100 * table.loc["clean", "image/text overlap"]', ".0f"),
        "clean_agree_pct": ('100 * min(table.loc["clean", "image kNN agreement"], table.loc["clean", "text kNN agreement"])',
                            ".0f"),
    },
    "07": {
        "recall_diffcl": ('runs["diffcl"].test["recall@20"]', ".3f"),
        "recall_lightgcn": ('runs["lightgcn"].test["recall@20"]', ".3f"),
        "lightgcn_best_epoch": ('runs["lightgcn"].best_epoch', "d"),
        "raw_image_noisy_image": ('_pur("image", "noisy image")', ".2f"),
        "raw_text_noisy_text": ('_pur("text", "noisy text")', ".2f"),
        "raw_concat_all": ('_pur("image ‖ text", "all")', ".3f"),
        "raw_concat_noisy_text": ('_pur("image ‖ text", "noisy text")', ".3f"),
        "diffcl_untrained_all": ('_pur("DiffCL (untrained)", "all")', ".3f"),
        "diffcl_untrained_noisy_image": ('_pur("DiffCL (untrained)", "noisy image")', ".3f"),
        "diffcl_untrained_noisy_text": ('_pur("DiffCL (untrained)", "noisy text")', ".3f"),
        "diffcl_noisy_text": ('_pur("DiffCL", "noisy text")', ".3f"),
        "lightgcn_all": ('_pur("LightGCN", "all")', ".3f"),
        "users_diffcl": ('viz.neighbourhood_purity(user_emb["DiffCL"], ds.user_labels, k=K_PURITY)', ".2f"),
        "users_lightgcn": ('viz.neighbourhood_purity(user_emb["LightGCN"], ds.user_labels, k=K_PURITY)', ".2f"),
        "rho_lightgcn": ('_rho("LightGCN")', ".2f"),
        "rho_diffcl": ('_rho("DiffCL")', ".2f"),
    },
    "05": {
        "align_diffusion": ('_t.loc["diffusion (model\'s own)", "alignment"]', ".3f"),
        "align_random": ('_t.loc["random, same magnitude", "alignment"]', ".2f"),
        "purity_noisy_diffusion": ('_t.loc["diffusion (model\'s own)", "purity[noisy image]"]', ".2f"),
        "purity_noisy_random": ('_t.loc["random, same magnitude", "purity[noisy image]"]', ".2f"),
        "unif_gap_small": ('_sw("diffusion", 0.1, "uniformity") - _sw("random", 0.1, "uniformity")', ".2f"),
        "unif_gap_large": ('_sw("diffusion", 40.0, "uniformity") - _sw("random", 40.0, "uniformity")', ".2f"),
        "sweep_diff_all_40": ('_sw("diffusion", 40.0, "purity[all]")', ".2f"),
        "sweep_diff_noisy_40": ('_sw("diffusion", 40.0, "purity[noisy image]")', ".2f"),
        "sweep_rand_all_40": ('_sw("random", 40.0, "purity[all]")', ".2f"),
        "sweep_rand_noisy_40": ('_sw("random", 40.0, "purity[noisy image]")', ".2f"),
    },
    "06": {
        "id_purity_low": ('min(_pt(_N, "id", g) for g in item_groups)', ".2f"),
        "id_purity_high": ('max(_pt(_N, "id", g) for g in item_groups)', ".2f"),
        "rank_infonce_image": ('_mr(_I, "image")', ".2f"),
        "rank_infonce_text": ('_mr(_I, "text")', ".2f"),
        "rank_moments_image": ('_mr(_M, "image")', ".2f"),
        "rank_moments_text": ('_mr(_M, "text")', ".2f"),
        "id_clean_none": ('_pt(_N, "id", "clean")', ".2f"),
        "id_clean_infonce": ('_pt(_I, "id", "clean")', ".2f"),
        "id_clean_moments": ('_pt(_M, "id", "clean")', ".2f"),
        "image_noisy_none": ('_pt(_N, "image", "noisy image")', ".2f"),
        "image_noisy_infonce": ('_pt(_I, "image", "noisy image")', ".2f"),
        "image_noisy_moments": ('_pt(_M, "image", "noisy image")', ".2f"),
        "text_noisy_none": ('_pt(_N, "text", "noisy text")', ".2f"),
        "text_noisy_infonce": ('_pt(_I, "text", "noisy text")', ".2f"),
        "text_noisy_moments": ('_pt(_M, "text", "noisy text")', ".2f"),
        "recall_none": ('recall[_N]', ".3f"),
        "recall_infonce": ('recall[_I]', ".3f"),
        "recall_moments": ('recall[_M]', ".3f"),
        "link_none_image": ('_ll(_N, "image")', ".2f"),
        "link_none_text": ('_ll(_N, "text")', ".2f"),
        "link_infonce_image": ('_ll(_I, "image")', ".2f"),
        "link_infonce_text": ('_ll(_I, "text")', ".2f"),
        "link_moments_image": ('_ll(_M, "image")', ".2f"),
        "link_moments_text": ('_ll(_M, "text")', ".2f"),
    },
    "08": {
        "valid_first": ('_valid[0]', ".3f"),
        "valid_low": ('min(_valid)', ".3f"),
        "valid_low_epoch": ('int(np.argmin(_valid)) + 1', "d"),
        "valid_last": ('_valid[-1]', ".3f"),
        "epochs": ('len(_valid)', "d"),
        "cl_per_term": ('result.history[-1]["loss_cl"] / (mcfg.lambda_cl * 2 * len(model.modalities))', ".1f"),
        "test_diffcl_main": ('result.test["recall@20"]', ".2f"),
        "picked_lr": ('float(picked["run"].split("=")[1])', "g"),
        "picked_epoch": ('picked["epoch"]', "d"),
        "picked_test": ('summary["valid_selected_test"]', ".3f"),
        "best_lr": ('float(best["run"].split("=")[1])', "g"),
        "best_epoch": ('best["epoch"]', "d"),
        "best_test": ('summary["best_test"]', ".3f"),
        "optimism": ('summary["optimism"]', ".3f"),
        "optimism_pct": ('100 * summary["optimism"] / summary["valid_selected_test"]', ".1f"),
        "abl_diffcl": ('_abl["diffcl"].test["recall@20"]', ".3f"),
        "abl_diffcl_seed1": ('_abl["diffcl (seed 1)"].test["recall@20"]', ".3f"),
        "abl_random": ('_abl["w/o diffusion (random views)"].test["recall@20"]', ".3f"),
        "abl_no_cl": ('_abl["w/o CL"].test["recall@20"]', ".3f"),
        "abl_no_align": ('_abl["w/o alignment"].test["recall@20"]', ".3f"),
        "abl_no_graph": ('_abl["w/o item-item graph"].test["recall@20"]', ".3f"),
        "abl_lightgcn": ('_abl["LightGCN"].test["recall@20"]', ".3f"),
        "abl_mf": ('_abl["MF-BPR"].test["recall@20"]', ".3f"),
        "abl_epochs": ('cfg["ablation_epochs"]', "d"),
    },
}


def _fmt(value: Any, fmt: str) -> str:
    return format(int(value) if fmt == "d" else float(value), fmt)


def load(path: Path = RESULTS) -> dict[str, Any]:
    """The results file, or a clear error naming it and the command that makes it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: missing; make it with: python scripts/lesson_numbers.py record") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc}); re-run: python scripts/lesson_numbers.py record") from None
    if not isinstance(data.get("values"), dict):
        raise SystemExit(f"{path}: no 'values' table; re-run: python scripts/lesson_numbers.py record")
    return data


def formatted(data: dict[str, Any]) -> dict[str, str]:
    """``{"07.key": "0.590", ...}`` with each value in the format of :data:`SPEC`."""
    out = {}
    for nb, keys in SPEC.items():
        for key, (_, fmt) in keys.items():
            full = f"{nb}.{key}"
            if full in data["values"]:
                out[full] = _fmt(data["values"][full], fmt)
    return out


def markers(notebooks: Path = NOTEBOOKS) -> list[tuple[str, int, str, str]]:
    """Every ``(notebook, cell index, key, number as written)`` marked in the markdown of 00-08."""
    found = []
    for path in sorted(notebooks.glob("0[0-8]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            for m in MARKER.finditer("".join(cell["source"])):
                found.append((path.name, i, m["key"], m["num"]))
    return found


def check(data: dict[str, Any] | None = None, notebooks: Path = NOTEBOOKS) -> list[str]:
    """Disagreements between the prose and the results file (empty when they agree)."""
    data = data if data is not None else load()
    values = formatted(data)
    problems = []
    for name, i, key, num in markers(notebooks):
        if key not in values:
            problems.append(f"{name} cell {i}: marker {key!r} has no recorded value "
                            f"(add it to SPEC in scripts/lesson_numbers.py and run record)")
        elif num != values[key]:
            problems.append(f"{name} cell {i}: prose says {num} for {key}, {RESULTS.name} says {values[key]} "
                            f"(edit the prose, or re-run: python scripts/lesson_numbers.py record --only {key[:2]})")
    return problems


def _record_one(nb_id: str, timeout: int) -> dict[str, Any]:
    import nbformat

    # the package's notebook runner (its client polls the kernel in steps: no stall after widget cells)
    from diffcl_lite.course.runner import run_notebook

    (path,) = sorted(NOTEBOOKS.glob(f"{nb_id}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    exprs = {k: e for k, (e, _) in SPEC[nb_id].items()}
    code = (_PRELUDE.get(nb_id, "") + "\nimport json as _json\n"
            f"_exprs = {exprs!r}\n"
            "_vals = {k: eval(e) for k, e in _exprs.items()}\n"
            "print('@@LESSON_NUMBERS@@' + _json.dumps({k: (int(v) if isinstance(v, int) else float(v)) "
            "for k, v in _vals.items()}))\n")
    nb.cells.append(nbformat.v4.new_code_cell(code))
    run_notebook(nb, path.parent, fast=False, timeout=timeout, env={"DIFFCL_DEVICE": "cpu"})
    out_dir = ROOT / "build" / "lesson_numbers"
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    for out in nb.cells[-1].outputs:
        for line in out.get("text", "").splitlines():
            if line.startswith("@@LESSON_NUMBERS@@"):
                return json.loads(line[len("@@LESSON_NUMBERS@@"):])
    raise SystemExit(f"{path.name}: the recording cell printed no values; see {out_dir / path.name}")


def record(only: list[str] | None, timeout: int = 3600) -> None:
    """Execute the notebooks of :data:`SPEC` (or ``only``) in full mode and write their values."""
    data = load() if RESULTS.exists() else {"values": {}, "notebooks": {}}
    for nb_id in only or sorted(SPEC):
        if nb_id not in SPEC:
            raise SystemExit(f"notebook {nb_id!r} has no numbers in SPEC; known: {sorted(SPEC)}")
        log.info("recording %s in full mode", nb_id)
        vals = _record_one(nb_id, timeout)
        data["values"] = {k: v for k, v in data["values"].items() if not k.startswith(nb_id + ".")}
        data["values"].update({f"{nb_id}.{k}": v for k, v in vals.items()})
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        data.setdefault("notebooks", {})[nb_id] = {"mode": "full", "device": "cpu", "commit": commit,
                                                   "date": _dt.date.today().isoformat()}
        data["command"] = "python scripts/lesson_numbers.py record"
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(RESULTS)
        log.info("%s: %d values written to %s", nb_id, len(vals), RESULTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("record", help="execute notebooks in full mode and record their quoted numbers")
    p.add_argument("--only", nargs="*", help="notebook numbers, e.g. 07 08")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    sub.add_parser("check", help="compare the marked numbers in the prose with the file")
    s = sub.add_parser("show", help="print the recorded values of one notebook")
    s.add_argument("notebook")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "record":
        record(args.only, args.timeout)
        return 0
    if args.cmd == "show":
        for k, v in formatted(load()).items():
            if k.startswith(args.notebook + "."):
                sys.stdout.write(f"{k} = {v}\n")
        return 0
    problems = check()
    for line in problems:
        sys.stdout.write(line + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
