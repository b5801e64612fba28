# make demo: the main job on built-in data.  make test: the test suite.  make bench: the
# benchmarks and their report (make bench BENCH_ARGS=--quick: the small run).  All create .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m fdiv.demo

# The tests run one torch thread each, on up to 4 processes; a file's tests stay in one process
# (its module fixtures, such as the Triton compilation for sm_80 / sm_90, are built once).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: $(STAMP)
	$(PY) -m fdiv.cli bench $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
