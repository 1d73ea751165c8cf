# Mentoring Lab. `make lab` and `make test` are the two commands a learner needs;
# both create .venv on first use and reinstall only when pyproject.toml changes.
# Python 3.11 (torch==2.13.0 is pinned for it): python3.11 if present, else python3.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8888
NB     ?=
VERIFY_SEEDS ?= 0 1 2 3 4
LAB_ARGS ?=
# Jupyter refuses to run as root unless told; containers and CI often are root.
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.DEFAULT_GOAL := help
.PHONY: help setup lab test test-unit test-nb verify test-browser bench book index guides slides lint reset clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  NB=notebooks/01_optimization.ipynb make test-nb   runs one notebook's checks"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || \
	  { echo "make setup needs Python 3.11, found '$(PYTHON)' ($$($(PYTHON) --version 2>&1)): install python3.11 (apt-get install python3.11 python3.11-venv, pyenv install 3.11, or conda) or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

# nbstripout as a git filter: a notebook run and saved in JupyterLab is staged without outputs
# and without metadata.language_info (the Python version of whoever saved it),
# so a learner's working copy never breaks `make test` (.gitattributes names the filter).
GITFILTER := $(shell git rev-parse --git-dir 2>/dev/null)/.nbstripout
NBSTRIP := --keep-id --extra-keys metadata.language_info
$(GITFILTER): $(STAMP) Makefile
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '"$(abspath $(PY))" -m nbstripout $(NBSTRIP)' && \
	  git config filter.nbstripout.smudge cat && touch $@; fi

setup: $(STAMP) $(if $(shell git rev-parse --git-dir 2>/dev/null),$(GITFILTER)) ## create .venv if missing and install (idempotent)

lab: setup ## open JupyterLab on notebooks/ (PORT=8888)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --port=$(PORT) --ServerApp.ip=127.0.0.1 $(AS_ROOT) $(LAB_ARGS)

test: setup ## unit tests and every notebook (nbval)
	$(PY) -m pytest

test-unit: setup ## unit tests only
	$(PY) -m pytest tests

test-nb: setup ## one notebook: NB=notebooks/00_pytorch_primer.ipynb
	$(PY) -m pytest -n 0 $(NB)

verify: setup ## every notebook at LAB_SEED 0-4 (1 thread), then seed 0 with 2 threads
	@for s in $(VERIFY_SEEDS); do \
	  echo "== make verify: LAB_SEED=$$s LAB_THREADS=1"; \
	  LAB_SEED=$$s LAB_THREADS=1 LAB_VERDICT_DIR=build/verify/seed$$s $(PY) -m pytest -q notebooks || exit 1; \
	done
	@echo "== make verify: LAB_SEED=0 LAB_THREADS=2 (verdicts must not hinge on the thread count)"
	LAB_SEED=0 LAB_THREADS=2 LAB_VERDICT_DIR=build/verify/seed0-threads2 $(PY) -m pytest -q -n 1 notebooks

bench: setup ## time every notebook and the ratio benchmarks into build/bench.md
	$(PY) -m utils.tooling.bench --out build/bench.md

book: setup ## execute notebooks into build/html with an index of verdicts (edits no tracked file)
	$(PY) -m utils.tooling.book --out build/book

index: setup ## refresh README's answer index and docs/questions.md from the last run's verdicts
	$(PY) -m utils.tooling.answer_index --readme README.md
	$(PY) -m utils.tooling.catalogue

test-browser: setup ## JupyterLab in headless Chromium (Debian's; apt-get install chromium fonts-noto-cjk)
	$(PY) -m pytest -q -p no:cacheprovider -n 0 tests_browser

guides: setup ## facilitator guides from docs/facilitator/src + build/timings (bench) + build/verify
	$(PY) -m utils.tooling.guides

slides: setup ## (re)apply the RISE slide metadata rule to every notebook
	$(PY) -m utils.tooling.slides

lint: setup ## the pre-commit checks: ruff (lint + format) and nbstripout --verify on the notebooks
	$(VENV)/bin/ruff check utils tests notebooks
	$(VENV)/bin/ruff format --check utils tests
	$(VENV)/bin/nbstripout $(NBSTRIP) --verify notebooks/*.ipynb

reset: ## restore a notebook to its shipped state: NB=notebooks/00_pytorch_primer.ipynb
	@test -n "$(NB)" || { echo "usage: make reset NB=notebooks/<name>.ipynb"; exit 2; }
	git checkout -- $(NB)

clean: ## remove build outputs and caches (keeps .venv)
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
