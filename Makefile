# The two commands of the README: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo serve test lint bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/glasskey demo

serve: install
	$(BIN)/glasskey serve

lint: install
	$(BIN)/ruff check --no-cache src tests
	$(BIN)/ruff format --no-cache --check src tests
	$(BIN)/mypy

# The suite on two workers (pytest-xdist), then the multi-process, flood and kill tests alone
# (marked `serial` in tests/conftest.py): about half the time of one worker on 2 cores.
test: lint
	$(BIN)/pytest -n 2 -m "not serial"
	$(BIN)/pytest -m serial

# The benchmark harness (bench/run.py): 12–20 minutes on 2 cores, everything on loopback; it
# rewrites docs/performance.md. `make bench BENCH_ARGS=--quick` is a 2-minute smoke run.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) glasskey-data .pytest_cache .mypy_cache .ruff_cache
