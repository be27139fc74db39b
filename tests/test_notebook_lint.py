"""Static checks of the lesson notebooks (the notebook conventions) and of ``diffcl_lite.course.nbtools``.

Every ``notebooks/*.ipynb`` that exists is checked; the lessons that are not written yet are
skipped. Running the notebooks themselves is nbval's job (``pytest`` collects ``notebooks/``).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from diffcl_lite.course import nbtools

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
REPO_URL = __import__("tomllib").loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
    "project"]["urls"]["Repository"]
COLAB_PREFIX = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/") + "/blob/main/notebooks/"
LESSONS = [
    "00_welcome.ipynb",
    "01_user_item_graph.ipynb",
    "02_item_item_graph.ipynb",
    "03_forward_diffusion.ipynb",
    "04_reverse_diffusion.ipynb",
    "05_contrastive_views.ipynb",
    "06_modality_alignment.ipynb",
    "07_embedding_atlas.ipynb",
    "08_full_training.ipynb",
    "09_verdict.ipynb",
]
NAMES = sorted(set(LESSONS) | {p.name for p in NOTEBOOK_DIR.glob("*.ipynb")})
EXERCISE_TAGS = ("exercise", "solution", "self-check", "hidden-check")
UNIX_PATH = re.compile(r"(?<![\w.~-])/(home|work|tmp|Users|root|mnt)/")
WINDOWS_PATH = re.compile(r"(?<![\w\\])[A-Za-z]:\\[\w.-]+\\")


def _load(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOK_DIR / name
    if not path.exists():
        pytest.skip(f"{name} is not written yet")
    return nbformat.read(path, as_version=4)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _exercise_id(cell) -> str | None:
    return cell.get("metadata", {}).get("diffcl", {}).get("exercise")


def _where(name: str, i: int, cell) -> str:
    first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else "<empty>"
    return f"{name} cell {i} ({cell.cell_type}: {first!r})"


@pytest.fixture(params=NAMES)
def nb(request):
    return request.param, _load(request.param)


# ------------------------------------------------------------------ structure
def test_valid_nbformat_and_kernelspec(nb):
    name, book = nb
    nbformat.validate(book)
    ks = book.metadata.get("kernelspec", {})
    assert ks.get("name") == "diffcl-lite", f"{name}: kernelspec name is {ks.get('name')!r}, expected 'diffcl-lite'"
    ids = [c.get("id") for c in book.cells]
    assert len(ids) == len(set(ids)), f"{name}: duplicate cell ids"


def test_goals_cell_comes_first(nb):
    name, book = nb
    first = book.cells[0]
    assert first.cell_type == "markdown" and "goals" in _tags(first), f"{name}: the first cell must be markdown tagged 'goals'"
    number = name[:2]
    assert first.source.lstrip().startswith(f"# {number} · "), f"{name}: the goals cell must start with '# {number} · Title'"


def test_one_parameters_cell_then_setup(nb):
    name, book = nb
    tagged = [i for i, c in enumerate(book.cells) if "parameters" in _tags(c)]
    assert len(tagged) == 1, f"{name}: expected exactly one cell tagged 'parameters', found {len(tagged)} at {tagged}"
    i = tagged[0]
    cell = book.cells[i]
    assert cell.cell_type == "code" and i == 1, f"{name}: the parameters cell must be the second cell (code)"
    tree = ast.parse(cell.source)
    assert all(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in tree.body), \
        f"{name}: the parameters cell may only assign values (SEED, sizes, epochs)"
    assigned = {t.id for s in tree.body for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
                if isinstance(t, ast.Name)}
    assert "SEED" in assigned, f"{name}: the parameters cell must define SEED"
    setup = book.cells[2]
    assert setup.cell_type == "code" and "setup_notebook(" in setup.source, \
        f"{name}: the cell after the parameters must import and call setup_notebook(seed=SEED)"


def test_exercise_convention(nb):
    name, book = nb
    number = name[:2]
    cells = book.cells
    stubs = [i for i, c in enumerate(cells) if "exercise" in _tags(c)]
    ids = [_exercise_id(cells[i]) for i in stubs]
    assert len(set(ids)) >= 2, f"{name}: needs at least 2 exercises, found {sorted(filter(None, set(ids)))}"
    assert len(ids) == len(set(ids)), f"{name}: an exercise id is used by more than one stub: {ids}"
    for i in stubs:
        stub = cells[i]
        ex = _exercise_id(stub)
        assert ex and re.fullmatch(rf"{number}\.\d+", ex), f"{_where(name, i, stub)}: exercise id {ex!r} must be '{number}.k'"
        points = stub.metadata["diffcl"].get("points")
        assert isinstance(points, (int, float)) and points > 0, f"{_where(name, i, stub)}: needs diffcl.points > 0"
        assert stub.cell_type == "code" and "TODO" in stub.source, f"{_where(name, i, stub)}: stub needs a '# TODO:' comment"
        assert i + 1 < len(cells), f"{name}: exercise {ex} has no solution cell"
        sol = cells[i + 1]
        assert "solution" in _tags(sol) and _exercise_id(sol) == ex, \
            f"{name}: the cell right after stub {ex} must be its solution (tag 'solution', same id)"
        func = re.search(r"^def (\w+)\(", stub.source, re.M)
        assert func, f"{_where(name, i, stub)}: the stub must define a function"
        assert re.search(rf"^def {func.group(1)}\(", sol.source, re.M), \
            f"{name}: solution {ex} must redefine {func.group(1)}()"
        checks = [j for j, c in enumerate(cells) if "self-check" in _tags(c) and _exercise_id(c) == ex]
        assert checks and checks[0] > i + 1, f"{name}: exercise {ex} needs a self-check cell after its solution"
        for j in checks:
            src = cells[j].source
            assert "check(" in src and re.search(rf"""exercise\s*=\s*["']{re.escape(ex)}["']""", src), \
                f"{_where(name, j, cells[j])}: self-check must call check(..., exercise=\"{ex}\")"
            last = ast.parse(src).body[-1]
            assert isinstance(last, ast.Expr), f"{_where(name, j, cells[j])}: must end with the check(...) expression"
    for i, c in enumerate(cells):
        tags = [t for t in _tags(c) if t in EXERCISE_TAGS]
        if tags:
            assert _exercise_id(c) in ids, f"{_where(name, i, c)}: tagged {tags} but its id {_exercise_id(c)!r} has no stub"


def test_ends_with_summary_questions_next(nb):
    name, book = nb
    headings = [(i, line.strip()) for i, c in enumerate(book.cells) if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")]
    last3 = [h for _, h in headings[-3:]]
    assert last3 == ["## Summary", "## Check your understanding", "## Next"], \
        f"{name}: the last level-2 headings must be Summary, Check your understanding, Next; got {last3}"
    summary_at = headings[-3][0]
    after = [i for i, c in enumerate(book.cells) if i >= summary_at and c.cell_type == "code"]
    assert not after, f"{name}: no code cells after '## Summary' (found at {after})"
    cyu = next(c for c in book.cells if c.cell_type == "markdown" and "## Check your understanding" in c.source)
    body = cyu.source.split("## Check your understanding", 1)[1].split("## Next", 1)[0]
    questions = re.findall(r"^\s*\d+\.\s", body, re.M)
    assert 3 <= len(questions) <= 5, f"{name}: 'Check your understanding' needs 3-5 numbered questions, has {len(questions)}"


def test_links_point_to_lessons(nb):
    name, book = nb
    for i, c in enumerate(book.cells):
        if c.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#\s]+\.ipynb)", c.source):
            if target.startswith(COLAB_PREFIX):  # the Colab badge opens this very notebook
                assert target == COLAB_PREFIX + name, f"{_where(name, i, c)}: the Colab badge must open {name}"
                continue
            assert target in LESSONS, f"{_where(name, i, c)}: link to {target!r}, which is not a lesson notebook"
    nxt = [c for c in book.cells if c.cell_type == "markdown" and "## Next" in c.source]
    if name != LESSONS[-1]:
        assert nxt and ".ipynb)" in nxt[-1].source, f"{name}: '## Next' must link the next notebook"


# ------------------------------------------------------------------ portability
def test_no_absolute_paths_or_installs(nb):
    name, book = nb
    for i, c in enumerate(book.cells):
        texts = [c.source]
        for out in c.get("outputs", []):
            texts.append(json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", "")))
        for text in texts:
            m = UNIX_PATH.search(text)
            assert not m, f"{_where(name, i, c)}: absolute path {m.group(0)!r}; use paths relative to the repository"
        if c.cell_type != "code":
            continue
        m = WINDOWS_PATH.search(c.source)
        assert not m, f"{_where(name, i, c)}: absolute Windows path {m.group(0)!r}"
        for line in c.source.splitlines():
            stripped = line.strip()
            assert not re.search(r"(^|[\s!%])pip3?\s+install\b", stripped), \
                f"{_where(name, i, c)}: no 'pip install' in notebooks; dependencies belong in pyproject.toml"
            assert not re.match(r"[!%]\s*(pip|conda|mamba|apt|apt-get|wget|curl|git)\b", stripped), \
                f"{_where(name, i, c)}: no shell commands that need the network: {stripped[:40]!r}"


def test_widgets_are_no_grade_cells(nb):
    name, book = nb
    for i, c in enumerate(book.cells):
        if c.cell_type == "code" and re.search(r"static_then_interactive\(|\binteract(ive)?\(", c.source):
            assert "no-grade" in _tags(c), f"{_where(name, i, c)}: widget cells must be tagged 'no-grade'"


# ------------------------------------------------------------------ committed state
def test_committed_stripped_with_golden_outputs(nb):
    name, _ = nb
    problems = nbtools.check_notebook(NOTEBOOK_DIR / name)
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_has_golden_cells_with_plain_text(nb):
    name, book = nb
    golden = [c for c in book.cells if nbtools.is_golden(c)]
    assert golden, f"{name}: needs at least one golden cell (first line '# NBVAL_CHECK_OUTPUT')"
    for c in golden:
        for out in c.get("outputs", []):
            kinds = set(out.get("data", {})) - {"text/plain"}
            assert not kinds, f"{name}: golden cell output must be plain text, has {sorted(kinds)}"


# ------------------------------------------------------------------ nbtools
def _tiny_notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.7"},
                   "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}}
    plain = nbformat.v4.new_code_cell("x = 1\nx", execution_count=3,
                                      outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "1"},
                                                                      execution_count=3)])
    plain.metadata = {"tags": ["keep"], "execution": {"iopub.status.busy": "2026"}, "scrolled": True}
    golden = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('a')\nprint('b')", execution_count=7,
                                       outputs=[nbformat.v4.new_output("stream", name="stdout", text="a\nb\n")])
    unrun_golden = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)")
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), plain, golden, unrun_golden]
    return json.loads(nbformat.writes(nb))


def test_strip_keeps_only_golden_outputs_and_is_idempotent():
    raw = _tiny_notebook()
    out = nbtools.strip_notebook(raw)
    plain, golden, unrun = out["cells"][1:]
    assert plain["outputs"] == [] and plain["execution_count"] is None
    assert plain["metadata"] == {"tags": ["keep"]}
    assert golden["execution_count"] == 2 and golden["outputs"][0]["text"] == ["a\n", "b\n"]
    assert unrun["outputs"] == [] and unrun["execution_count"] is None
    assert out["metadata"]["kernelspec"]["name"] == "diffcl-lite"
    assert set(out["metadata"]) == {"kernelspec", "language_info"}
    assert nbtools.dumps(nbtools.strip_notebook(out)) == nbtools.dumps(out)
    nbformat.validate(nbformat.reads(nbtools.dumps(out), as_version=4))


def test_check_and_cli(tmp_path, capsys):
    path = tmp_path / "00_x.ipynb"
    path.write_text(json.dumps(_tiny_notebook()), encoding="utf-8")
    problems = nbtools.check_notebook(path)
    assert any("not stripped" in p for p in problems)
    assert any("has outputs but is not a golden cell" in p for p in problems)
    assert any("no committed output" in p for p in problems)  # the unrun golden cell
    assert nbtools.main(["check", str(path)]) == 1
    assert nbtools.main(["strip", str(tmp_path)]) == 0
    after = nbtools.check_notebook(path)
    assert after == [next(p for p in problems if "no committed output" in p)]
    text = path.read_text(encoding="utf-8")
    assert nbtools.strip_file(path) is False and path.read_text(encoding="utf-8") == text
    with pytest.raises(nbtools.DiffCLError, match="not a notebook"):
        nbtools.main(["strip", str(tmp_path / "x.py")])


# ------------------------------------------------------------------ the lint itself can fail
def _break_solution_order(book):
    i = next(i for i, c in enumerate(book.cells) if "solution" in _tags(c))
    book.cells[i - 1], book.cells[i] = book.cells[i], book.cells[i - 1]
    return test_exercise_convention


def _break_pip(book):
    book.cells[3] = nbformat.v4.new_code_cell("!pip install umap-learn")
    return test_no_absolute_paths_or_installs


def _break_path(book):
    book.cells[3] = nbformat.v4.new_markdown_cell("data in /home/me/data")
    return test_no_absolute_paths_or_installs


def _break_ending(book):
    book.cells.append(nbformat.v4.new_code_cell("x = 1"))
    return test_ends_with_summary_questions_next


def _break_parameters(book):
    book.cells[1].source += "\nimport os"
    return test_one_parameters_cell_then_setup


def _break_widget_tag(book):
    c = next(c for c in book.cells if "static_then_interactive(" in c.source)
    c.metadata["tags"] = []
    return test_widgets_are_no_grade_cells


@pytest.mark.parametrize("breaker", [_break_solution_order, _break_pip, _break_path, _break_ending,
                                     _break_parameters, _break_widget_tag])
def test_lint_rejects_broken_notebooks(breaker):
    name = "01_user_item_graph.ipynb"
    book = _load(name)
    check_fn = breaker(book)
    with pytest.raises(AssertionError):
        check_fn((name, book))


def test_lint_rejects_unstripped_notebook(tmp_path):
    name = "00_welcome.ipynb"
    book = _load(name)
    code = next(c for c in book.cells if c.cell_type == "code" and not nbtools.is_golden(c))
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    code.execution_count = 4
    path = tmp_path / name
    nbformat.write(book, path)
    assert any("not a golden cell" in p for p in nbtools.check_notebook(path))


def test_outputs_only_in_keep_output_cells(nb):
    """Committed outputs live only in cells tagged keep_output (nbstripout's convention), i.e. golden cells."""
    name, book = nb
    for i, c in enumerate(book.cells):
        if c.cell_type != "code":
            continue
        tagged = "keep_output" in c.metadata.get("tags", [])
        assert tagged == nbtools.is_golden(c), f"{name} cell {i}: keep_output tag must mark exactly the golden cells"
        if c.get("outputs"):
            assert tagged, f"{name} cell {i}: outputs outside a keep_output cell"


def test_strip_tags_golden_cells_keep_output():
    out = nbtools.strip_notebook(_tiny_notebook())
    plain, golden, unrun = out["cells"][1:]
    assert "keep_output" in golden["metadata"]["tags"] and "keep_output" in unrun["metadata"]["tags"]
    assert "keep_output" not in plain["metadata"]["tags"]


def test_colab_badge_and_install_cell(nb):
    """Each notebook opens in Colab from a badge under its title, and its set-up cell installs the package
    from the repository named in pyproject.toml when it is missing (a no-op where it is installed)."""
    name, book = nb
    assert f"]({COLAB_PREFIX}{name})" in book.cells[0].source, f"{name}: the goals cell needs the Colab badge"
    setup = book.cells[2].source
    assert f"git+{REPO_URL}" in setup and 'find_spec("diffcl_lite") is None' in setup, \
        f"{name}: the set-up cell must install diffcl-lite from {REPO_URL} when it is missing"


def test_parameters_are_scalars(nb):
    """papermill's -p NAME VALUE overrides any parameter: the parameters cell assigns scalars only."""
    name, book = nb
    tree = ast.parse(book.cells[1].source)
    for stmt in tree.body:
        value = stmt.value
        if isinstance(value, ast.UnaryOp):
            value = value.operand
        assert isinstance(value, ast.Constant), \
            f"{name}: parameter {ast.unparse(stmt.targets[0])} must be a scalar (number, string, bool or None); " \
            f"put fast/full choices in the set-up cell with ctx.param(NAME, full=..., fast=...)"
