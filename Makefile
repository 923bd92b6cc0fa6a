# The two commands of the README: `make book` (the main job) and `make test`.
# Every install step lives here: a fresh machine needs only python3 (3.11+) and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/digits.yaml
CH     ?=
ARGS   ?=
PYTEST_ARGS ?=
# pytest-xdist workers (one intra-op thread each, tests/conftest.py), a test module or class
# (one world's chapters: tests/test_book.py) on one worker, in order; 0 runs in this process.
TEST_WORKERS ?= auto
# Which PyTorch build the first run installs (docs/install.md):
#   cpu      PyTorch's CPU-only wheels from TORCH_INDEX: no CUDA libraries
#   default  PyPI's wheels (on Linux with the CUDA libraries, several GB)
# Default: cpu on Linux where no NVIDIA driver answers (no working `nvidia-smi`).
TORCH  ?= $(if $(filter Linux,$(shell uname -s)),$(if $(shell nvidia-smi -L 2>/dev/null),default,cpu),default)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: help env book chapter test bench train colab-cells colab-requirements colab-check clean

help:
	@echo "make book    execute every chapter on PARAMS ($(PARAMS)) and build the HTML book"
	@echo "make chapter CH=02_distances PARAMS=params/digits.yaml ARGS='-p eot 5'"
	@echo "make test    install and run the test suite"
	@echo "make bench   run the benchmarks (tables printed and saved under bench/results/)"
	@echo "make colab-cells  write the Colab cell of _config.yml into every chapter (book/*.py, .ipynb)"
	@echo "make colab-check  a chapter with sliders on Colab's packages (Python 3.13 in .venv-colab; COLAB_PYTHON=$(COLAB_PYTHON))"
	@echo "make env     only create .venv (TORCH=cpu|default, here: $(TORCH)); then"
	@echo "             'source .venv/bin/activate' puts diffrob, papermill and jb on the PATH"

env: $(VENV)/.installed

# torch is capped at the release that lies on the build machines' disk (pyproject.toml).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "== PyTorch build: TORCH=$(TORCH)"
ifeq ($(TORCH),cpu)
	$(PY) scripts/install_torch.py --index-url $(TORCH_INDEX)
endif
	$(PY) -m pip install -e ".[all]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	touch $@
	@du -sh $(VENV) | sed 's/^/== installed: /'

book: env
	$(PY) scripts/build_book.py --params $(PARAMS) $(ARGS)

chapter: env
	@test -n "$(CH)" || (echo "usage: make chapter CH=02_distances [PARAMS=...] [ARGS='-p k v']"; exit 2)
	$(PY) scripts/build_book.py --params $(PARAMS) --chapter $(CH) --no-html $(ARGS)

test: env
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

bench: env
	@mkdir -p bench/results
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

train: env
	$(VENV)/bin/diffrob train $(or $(WORLD),digits)

# The chapters' first cell, from _config.yml's repository: written here only, never by
# `make book` (tests/test_build_book.py checks that the committed chapters hold it).
colab-cells: env
	$(PY) scripts/build_book.py --colab-cells

# The versions the chapters' Colab cell installs: the ones installed here (after `make test`).
colab-requirements: env
	$(PY) scripts/build_book.py --colab-requirements

# Colab's runtime as published (../shared/colab/pip-freeze.gpu.txt) in .venv-colab, the Colab
# cell's install, then one chapter with sliders on params/smoke.yaml (scripts/colab_check.py).
COLAB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) python3.13)
colab-check: env
	$(PY) scripts/colab_check.py --python $(COLAB_PYTHON) $(ARGS)

clean:
	rm -rf _build
