# Two commands do everything on a fresh machine: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is installed first and pinned: a bare `torch` requirement can pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install tools test faults attacks demo lint bench clean

install: $(STAMP)

# Re-installs when pyproject.toml changes (a stale .venv) or when .venv is missing.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System tools some tests use: promtool (Debian's prometheus package) checks and unit-tests the alert
# rules; chromium runs the review app's browser tests. Needs root (or sudo) and apt; tests that need a
# missing tool are skipped outside CI and fail in CI.
TOOLS_PKGS := $(if $(shell command -v promtool),,prometheus) $(if $(shell command -v chromium),,chromium)
tools:
	@if [ -n "$(strip $(TOOLS_PKGS))" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(TOOLS_PKGS) >/dev/null; fi
	@promtool --version 2>&1 | head -1; chromium --version

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The fault-injection suite alone (it also runs in `make test`), with its table of figures at the end.
faults: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/faults -m faults

# The red-team attack suite alone (it also runs in `make test`): each attack of docs/security.md's table.
attacks: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m attack

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/vigil demo

# ruff, mypy on every package, and the package layers (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy vigil_core kafka_io safety_gate models evaluators pipeline incidents review demo vigil
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/classifier.py
	HF_HUB_OFFLINE=1 $(PY) bench/gate.py
	HF_HUB_OFFLINE=1 $(PY) bench/scoring_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
