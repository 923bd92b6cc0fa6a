# The two commands of the README: `make book` (the main job) and `make test`.
# Every install step lives here: a fresh machine needs only python3 (3.11+) and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/digits.yaml
CH     ?=
ARGS   ?=

.PHONY: help env book chapter test test-fast bench train clean

help:
	@echo "make book    execute every chapter on PARAMS ($(PARAMS)) and build the HTML book"
	@echo "make chapter CH=02_distances PARAMS=params/digits.yaml ARGS='-p eot 5'"
	@echo "make test    install and run the test suite"
	@echo "make bench   run the benchmarks (tables printed and saved under bench/results/)"

env: $(VENV)/.installed

# torch is capped at the release that lies on the build machines' disk (pyproject.toml).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[all]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	touch $@

book: env
	$(PY) scripts/build_book.py --params $(PARAMS) $(ARGS)

chapter: env
	@test -n "$(CH)" || (echo "usage: make chapter CH=02_distances [PARAMS=...] [ARGS='-p k v']"; exit 2)
	$(PY) scripts/build_book.py --params $(PARAMS) --chapter $(CH) --no-html $(ARGS)

test: env
	$(VENV)/bin/pytest

bench: env
	@mkdir -p bench/results
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

train: env
	$(VENV)/bin/diffrob train $(or $(WORLD),digits)

clean:
	rm -rf _build
