# EquiNAS Studio. `make run` starts the app; `make test` runs every test.
# Both install what they need first (into .venv, and Debian's chromium for the browser tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DB ?= data/equinas.db
PORT ?= 8501
ADDRESS ?= localhost
# pytest-xdist workers for `make test`: 3 on 2 cores overlaps the browser tests' waits with other tests'
# work, each test file on one worker (233 s against 384 s serial here); TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3

.PHONY: run test bench lint install install-dev browser data clean screenshots

$(VENV)/.stamp-run: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# the project itself on the venv's path, so `.venv/bin/python -m nas_core` works from any folder
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "equinas-studio.pth").write_text("$(CURDIR)\n")'
	@touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-run requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

install: $(VENV)/.stamp-run
install-dev: $(VENV)/.stamp-dev

# Debian's chromium drives the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

data: $(VENV)/.stamp-run
	@test -f data/default/ISIC_2019_Training_GroundTruth.csv || $(PY) -m nas_core datasets make-default --out data/default

run: $(VENV)/.stamp-run data
	$(PY) -m nas_core serve --db $(DB) --port $(PORT) --address $(ADDRESS)

test: $(VENV)/.stamp-dev browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: $(VENV)/.stamp-dev browser data
	$(PY) -m benchmarks

# Refresh the README's screenshots (taken by the browser tests).
screenshots: $(VENV)/.stamp-dev browser
	EQUINAS_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/e2e -k heuristic

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check . || true

clean:
	rm -rf $(VENV) data/default data/cache .pytest_cache
