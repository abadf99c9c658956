# The two commands of the README's quick start are `make run` and `make test`;
# each sets up the virtual environment first when pyproject.toml is newer than it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test check bench gameday chaos clean

$(BIN)/remediator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/remediator
	$(BIN)/remediator serve

test: $(BIN)/remediator
	$(BIN)/pytest

check: $(BIN)/remediator
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(BIN)/remediator
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/storm.py --store sqlite
	$(BIN)/python bench/gameday.py

gameday: $(BIN)/remediator
	$(BIN)/python bench/gameday.py

# The reliability suite at the issue's full counts; writes the figures to docs/reliability.md.
CHAOS ?= tests/reliability
chaos: $(BIN)/remediator
	REMEDIATOR_CHAOS=long REMEDIATOR_RELIABILITY_REPORT=docs/reliability.md \
		$(BIN)/pytest $(CHAOS) --timeout 3600

clean:
	rm -rf $(VENV) remediator.db remediator.db-wal remediator.db-shm
