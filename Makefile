# Two commands: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU-only torch wheel in PIP_FIND_LINKS breaks the registry's torchvision,
# so installs ignore it (see ../shared/docs/ENVIRONMENT.md).
PIP_ENV := PIP_FIND_LINKS=
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP_ENV) $(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(PIP_ENV) $(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP) $@

serve: $(STAMP)
	$(BIN)/panelbeater serve $(ARGS)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
