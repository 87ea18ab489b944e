# Two commands do everything on a fresh machine:
#   make demo   -> virtual environment + locked dependencies, then the demo study end to end
#   make test   -> the same, plus system packages (R, Chromium), then lint, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs venv system-deps lock reference bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

system-deps:
	bash scripts/setup-system.sh

demo: venv
	$(BIN)/retrocohort demo --out demo-output --force

# Lint, format check and type check; settings live in pyproject.toml ([tool.ruff], [tool.mypy]).
# `test` depends on it, so CI fails on a lint finding before pytest starts.
lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The API reference: docs/*.md as guide pages plus pages built from the docstrings (mkdocs.yml).
# --strict turns every warning (a broken link or cross-reference, a docstring mkdocstrings cannot parse)
# into a failure.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# pytest exits 5 when it collected no test; that is a failure here like any non-zero code.
# Test workers: the cores, at most 4 (each may start a Spark JVM). --dist loadscope keeps each test module on
# one worker, so a module's expensive fixtures (Spark runs, study runs) are built once, not once per worker.
TEST_WORKERS ?= $(shell python3 -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))' 2>/dev/null || echo 2)

test: venv system-deps lint docs
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

reference: venv system-deps
	Rscript tests/reference/make_reference.R

bench: venv system-deps
	$(BIN)/python benchmarks/run_all.py

# Regenerate the lock after changing pyproject.toml's dependencies.
lock:
	rm -rf /tmp/retrocohort-lock && $(PYTHON) -m venv /tmp/retrocohort-lock
	/tmp/retrocohort-lock/bin/pip install --quiet --upgrade pip
	/tmp/retrocohort-lock/bin/pip install --quiet ".[spark,test,docs]"
	/tmp/retrocohort-lock/bin/pip freeze --exclude-editable | grep -v '^retrocohort' > requirements.lock

clean:
	rm -rf $(VENV) demo-output site .ruff_cache .mypy_cache
