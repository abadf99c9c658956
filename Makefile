# The two commands of the README's quick start are `make run` and `make test`;
# each sets up the virtual environment first when pyproject.toml is newer than it.
# `make run` installs only what running needs; the dev extra (test, lint and type-check
# tools: most of the first start's time) comes with `make test` and the targets after it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test check bench gameday chaos clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(RUNTIME)
	$(BIN)/remediator serve

test: $(DEV)
	$(BIN)/pytest

check: $(DEV)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(DEV)
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/storm.py --store sqlite
	$(BIN)/python bench/approvals.py
	$(BIN)/python bench/approvals.py --store sqlite
	$(BIN)/python bench/gameday.py
	$(BIN)/python bench/console.py

gameday: $(DEV)
	$(BIN)/python bench/gameday.py

# The reliability suite at the issue's full counts; writes the figures to docs/reliability.md.
CHAOS ?= tests/reliability
chaos: $(DEV)
	REMEDIATOR_CHAOS=long REMEDIATOR_RELIABILITY_REPORT=docs/reliability.md \
		$(BIN)/pytest $(CHAOS) --timeout 3600

clean:
	rm -rf $(VENV) remediator.db remediator.db-wal remediator.db-shm
