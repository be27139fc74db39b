# diffcl_lite developer and classroom entry points (GNU make).
# `make` alone lists the targets.

PYTHON ?= python3
VENV ?= .venv
# torch goes in first; pyproject.toml only asks for torch>=2.2, which that build satisfies, so pip
# pulls no other build afterwards. TORCH_INDEX: auto (Linux without an NVIDIA GPU: PyTorch's CPU
# wheel index; otherwise the default index, i.e. the CUDA build on Linux), cpu, default or a URL.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= auto
LAB_ARGS ?=
PYTEST_ARGS ?=
# Extra prerequisites of `make test` (e.g. a student-copy check); targets
# named here run before pytest. See the `test` target.
TEST_PREREQS ?= student-verify

VENV_PY := $(VENV)/bin/python
# what the lessons need (make lab), and on top of it the course tools and the tests (make test)
LESSONS_STAMP := $(VENV)/.installed-lessons
STAMP := $(VENV)/.installed
# JupyterLab refuses to start as root without --allow-root (containers, CI).
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

# Exits non-zero with a clear message when the given interpreter is older than 3.10.
define check_python
	@command -v $(1) >/dev/null 2>&1 || { echo "error: Python interpreter '$(1)' not found; set PYTHON=/path/to/python3.10+ (e.g. make PYTHON=python3.11 install)" >&2; exit 1; }
	@$(1) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else "error: diffcl_lite needs Python >= 3.10, but $(1) is %d.%d. Install Python 3.10+ and run: make PYTHON=/path/to/python3.11 install (remove $(VENV) first if it was made with the old Python)." % v[:2])'
endef

.DEFAULT_GOAL := help
.PHONY: lesson-numbers help install venv lab test clean

help: ## List the targets
	@echo "diffcl_lite make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) TORCH_SPEC=$(TORCH_SPEC) TORCH_INDEX=$(TORCH_INDEX) LAB_ARGS=... PYTEST_ARGS=..."

install: $(STAMP) ## Create the venv (VENV): torch (CPU build without an NVIDIA GPU) + diffcl_lite[lessons,course,test], the kernel

venv: $(STAMP) ## Same as install

# The lessons only: torch, diffcl_lite[lessons], the Jupyter kernel, the notebooks' git clean filter.
$(LESSONS_STAMP): pyproject.toml scripts/install_torch.py
	$(call check_python,$(PYTHON))
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(call check_python,$(VENV_PY))
	$(VENV_PY) -m pip install --upgrade pip
	$(VENV_PY) scripts/install_torch.py --spec "$(TORCH_SPEC)" --index "$(TORCH_INDEX)"
	$(VENV_PY) -m pip install -e ".[lessons]"
	$(VENV_PY) -m ipykernel install --sys-prefix --name diffcl-lite --display-name "Python (diffcl-lite)"
	-git config filter.diffcl-strip.clean "$(VENV_PY) -m diffcl_lite.course.nbtools clean" 2>/dev/null
	-git config filter.diffcl-strip.smudge cat 2>/dev/null
	touch $@

# Everything for development: the course tools (runner, site, classroom) and the test tools.
$(STAMP): $(LESSONS_STAMP)
	$(VENV_PY) -m pip install -e ".[lessons,course,test]"
	touch $@

lab: $(LESSONS_STAMP) ## Start JupyterLab on notebooks/ (extra flags: LAB_ARGS="--no-browser --port 9999")
	@mkdir -p notebooks
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ROOT_FLAG) $(LAB_ARGS)

# One pytest run covers everything: unit tests, notebooks and classroom checks
# are collected by pytest from tests/. To run a check before pytest, add its
# target to TEST_PREREQS (e.g. `TEST_PREREQS ?= student-verify`).
test: $(STAMP) $(TEST_PREREQS) ## Run the test suite (extra flags: PYTEST_ARGS="-m 'not slow' -x")
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

.PHONY: student student-verify
student: $(STAMP) ## Build the student copies in student/ from notebooks/ (commit them with the notebooks)
	$(VENV_PY) -m diffcl_lite classroom student

student-verify: $(STAMP) ## Fail when student/ is stale (run by `make test`; fix: make student)
	$(VENV_PY) -m diffcl_lite classroom student --verify

# Lesson notebooks are committed stripped: outputs cleared except in golden cells (first line
# `# NBVAL_CHECK_OUTPUT`), which nbval compares. To refresh golden outputs after a change:
# $(VENV_PY) -m diffcl_lite.course.nbtools execute notebooks/NN_name.ipynb (see notebooks/README.md).
.PHONY: strip
strip: $(STAMP) ## Strip notebooks/*.ipynb before committing (keeps golden cells' outputs)
	$(VENV_PY) -m diffcl_lite.course.nbtools strip notebooks

# Static site: the lesson notebooks executed (SITE_MODE=fast|full) and rendered to HTML in site/,
# with the widget renderer, require.js, MathJax and plotly.js served from site/_static (works offline).
SITE_MODE ?= fast
SITE_ARGS ?=
.PHONY: site
site: $(STAMP) ## Render the executed notebooks to HTML in site/ (SITE_MODE=fast|full, SITE_ARGS="--only 03")
	$(VENV_PY) -m diffcl_lite.course.site --mode $(SITE_MODE) --out site $(SITE_ARGS)

# Figures: every notebook executed in full mode; each saves its key figures to figures/ (PNG from
# matplotlib, HTML for interactive plotly) through ctx.save_figure. Executed copies go to build/.
# (the course's notebook runner polls the kernel in short steps: plain nbconvert can stall after widget cells.)
FIGURE_NOTEBOOKS ?= $(sort $(wildcard notebooks/0*.ipynb))
.PHONY: figures bench
figures: $(STAMP) ## Execute the series in full mode and write its figures to figures/ (FIGURE_NOTEBOOKS=...)
	@mkdir -p build/executed figures
	$(VENV_PY) -m diffcl_lite.course.nbtools execute --full --timeout 3600 --output-dir build/executed $(FIGURE_NOTEBOOKS)

lesson-numbers: $(STAMP) ## Record the full-mode numbers the lessons' prose quotes into results/lessons_full.json
	$(VENV_PY) scripts/lesson_numbers.py record

bench: $(STAMP) ## Timing benchmarks by hand (not tests): training/evaluation at TikTok size, kNN graph
	$(VENV_PY) benchmarks/bench_train.py --dataset synthetic-tiktok --epochs 2
	$(VENV_PY) benchmarks/bench_knn.py

clean: ## Remove the venv (VENV), caches, build files and site/
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist site *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
