# Two entry points, each sets up .venv on first use:
#   make demo   - the main job: a real sweep on local Ray with MLflow on SQLite
#   make test   - the test suite on real MNIST (tiny iteration counts)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUNS ?= runs

.PHONY: setup demo test run-core benchmark-core clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/hypercl run --config split_mnist_cl1 --runs-dir $(RUNS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

benchmark-core: $(STAMP)
	$(BIN)/python benchmarks/core.py --out $(RUNS)/benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
