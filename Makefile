# Two entry points, each sets up .venv on first use:
#   make demo   - the main job: a real sweep on local Ray with MLflow on SQLite
#   make test   - the test suite on real MNIST (tiny iteration counts)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUNS ?= runs

.PHONY: setup demo test benchmark-core benchmark-chaos benchmark-faults benchmark-bad-inputs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# 8 trials of SplitMNIST CL1 (300 iterations per task) from the smoke space,
# Optuna TPE + ASHA, 2 at a time on local Ray, tracked in MLflow (SQLite).
demo: $(STAMP)
	$(BIN)/hypercl sweep --space smoke --config split_mnist_cl1 --set train.iters_per_task=300 \
		--num-samples 8 --max-concurrent 2 --scheduler asha --runs-dir $(RUNS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

benchmark-core: $(STAMP)
	$(BIN)/python benchmarks/core.py --out $(RUNS)/benchmarks

# The sweep driver SIGKILLed at 20 seeded random moments over 4 small sweeps, each resumed to the end
# and audited from MLflow and the Optuna study (duplicated or lost runs, tasks logged twice).
benchmark-chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py --kills 20 --sweeps 4 --seed 0 --out $(RUNS)/benchmarks/chaos

# Below the driver: a trial's Ray worker SIGKILLed 3 times over a 2-seed rerun (against an uninterrupted twin),
# and the MLflow tracking server SIGKILLed mid-rerun, down 30 s, restarted; audited from MLflow.
benchmark-faults: $(STAMP)
	$(BIN)/python benchmarks/faults.py --worker-kills 3 --outage-s 30 --seeds 2 --out $(RUNS)/benchmarks/faults

# Bad inputs through the real CLI: exit 2, one stderr line, no traceback, nothing written.
benchmark-bad-inputs: $(STAMP)
	$(BIN)/python benchmarks/bad_inputs.py --out $(RUNS)/benchmarks/bad_inputs

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
