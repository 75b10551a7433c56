# Two commands: `make run` starts an agent on the embedded store; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install

$(BIN)/roost: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/roost

run: $(BIN)/roost
	$(BIN)/roost agent --data-dir roost-data

lint: $(BIN)/roost
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(BIN)/roost
	./scripts/install-test-deps
	$(MAKE) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider
