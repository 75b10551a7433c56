# Two commands: `make run` starts an agent on the embedded store; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install

SOURCES := pyproject.toml setup.py $(shell find src -name '*.py' -o -name py.typed)

# A regular (not editable) install: the gateway's data path is compiled with mypyc (setup.py),
# and the tests run what a user's `pip install` gets. Editing src/ reinstalls on the next make.
$(BIN)/roost: $(SOURCES)
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || ./scripts/apt-install python3-venv
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '.[test]'
	touch $@

install: $(BIN)/roost

run: $(BIN)/roost
	$(BIN)/roost agent --data-dir roost-data

lint: $(BIN)/roost
	$(BIN)/ruff check setup.py src tests bench
	$(BIN)/ruff format --check setup.py src tests bench
	$(BIN)/mypy

test: $(BIN)/roost
	./scripts/install-test-deps
	$(MAKE) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider
