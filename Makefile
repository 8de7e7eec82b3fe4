# The two commands of the README: `make run` and `make test`.  Both make ./.venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint bench schema clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ needed, this is " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/otrs-mailgate init
	$(BIN)/otrs-mailgate serve

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest -ra

bench: $(BIN)/.installed
	$(BIN)/python bench/ingest.py

schema: $(BIN)/.installed
	$(BIN)/otrs-mailgate schema > schema.sql

clean:
	rm -rf $(VENV) build *.egg-info
