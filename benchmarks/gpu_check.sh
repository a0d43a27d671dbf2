#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): every method's CUDA path, SplitMNIST CL1 steps/s, and sweep
# throughput with 1, 2, 4 and 8 trials per GPU, in at most 8 minutes on a machine with one GPU.
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--dry]        (figures merge into benchmarks/results.json)
# On the device machine, with the project's Python environment there:
#   bash benchmarks/gpu_check.sh "$OUT/gpu" --results "$OUT/results.json" --results-md "$OUT/RESULTS.md"
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/benchmarks/gpu_check}
shift || true
PYTHON=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$PYTHON"):$PATH"
PYTHONPATH=. timeout 480 "$PYTHON" benchmarks/gpu_check.py --out "$out" "$@"
