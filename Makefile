# Two commands: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installs take every package from the registry, never from PIP_FIND_LINKS: a CPU-only
# torch 2.13.0 wheel there breaks the registry's torchvision (its `torchvision::nms`
# operator is missing).
PIP_ENV := PIP_FIND_LINKS=
# Every install takes the versions recorded in requirements.lock (a pip constraints file
# that `make lock` writes from a fresh, unconstrained install), so a release elsewhere
# cannot change what `make serve` and `make test` run.
LOCK := requirements.lock
LS_LOCK := .ci/label_studio.constraints.txt
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: serve test lint lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_ENV) $(BIN)/pip install -q -c $(LOCK) -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_ENV) $(BIN)/pip install -q -c $(LOCK) -e ".[dev]"
	touch $(STAMP) $@

serve: $(STAMP)
	$(BIN)/panelbeater serve $(ARGS)

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Re-resolve every dependency from pyproject.toml (and Label Studio's from its pinned
# release) into fresh virtual environments and record the versions. Run it when you change
# a dependency in pyproject.toml, or to take newer releases; then run `make test`.
lock:
	rm -rf .lock-venv .lock-ls-venv
	$(PYTHON) -m venv .lock-venv
	$(PIP_ENV) .lock-venv/bin/pip install -q --upgrade pip
	$(PIP_ENV) .lock-venv/bin/pip install -q ".[dev]"
	{ echo "# Resolved versions of pyproject.toml's dependencies (dev extras included)."; \
	  echo "# Written by \`make lock\`; installs use it as pip constraints (-c)."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^panelbeater'; } >$(LOCK)
	$(PYTHON) -m venv .lock-ls-venv
	$(PIP_ENV) .lock-ls-venv/bin/pip install -q --upgrade pip
	$(PIP_ENV) .lock-ls-venv/bin/pip install -q "$$(grep -E '^label-studio==' $(LS_LOCK))" "sentry-sdk<3"
	{ grep '^#' $(LS_LOCK); .lock-ls-venv/bin/pip freeze | grep -v '^pip=='; } >$(LS_LOCK).new
	mv $(LS_LOCK).new $(LS_LOCK)
	rm -rf .lock-venv .lock-ls-venv

clean:
	rm -rf $(VENV) .pytest_cache
