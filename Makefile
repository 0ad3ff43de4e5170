# `make demo` runs sloscale on the local sandbox; `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install test lint typecheck layers unit demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check operator tests

typecheck: install
	$(VENV)/bin/mypy

layers: install
	$(VENV)/bin/lint-imports

test: lint typecheck layers
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
