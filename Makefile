# `make run` and `make test` work on a fresh clone: they create .venv and install when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit install reset clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/geosaga dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# The demo data, and nothing else: .data/ holds the regions' stores, the gateway's ledger and the
# dev server's history. Not while a stack runs on them (the port check of `geosaga dev`).
reset:
	@if test -x $(BIN)/geosaga; then $(BIN)/geosaga dev --check || \
		{ echo "make reset: nothing deleted; stop the running stack first (Ctrl-C where make run runs)"; exit 1; }; fi
	rm -rf .data
	@echo "the next make run starts with fresh demo stock and no orders"

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
