#!/usr/bin/env bash
# The PermutedMNIST-10 rows of Table 1 on one GPU: fine-tuning, online EWC, SI and DGR+distill in CL1/CL2/CL3
# (12 presets, 50,000 steps of a 1000-1000 MLP each; tens of minutes apiece on 2 CPU cores) as one
# `hypercl compare`, every subsystem on a share of the GPU. An interrupted comparison resumes.
#   bash benchmarks/table1_gpu.sh [RUNS_DIR] [SEEDS]
# Then, with the SplitMNIST comparison beside it (its sweep folder, wherever it ran):
#   python benchmarks/table1.py --name runs/sweeps/table1-split --name RUNS_DIR/sweeps/table1-permuted
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
seeds=${2:-1}
PYTHON=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$PYTHON"):$PATH"
presets=()
for scenario in cl1 cl2 cl3; do
  for method in finetune ewc si dgr; do presets+=("permuted_mnist10_${scenario}_${method}"); done
done
folder="$runs/sweeps/table1-permuted"
if [ -f "$folder/sweep.yaml" ]; then
  hypercl compare --resume "$folder"
else
  hypercl compare --configs "${presets[@]}" --seeds "$seeds" --name table1-permuted --runs-dir "$runs" \
      --gpus-per-subsystem 0.125 --cpus-per-subsystem 0.5 --max-concurrent 12
fi
hypercl table --name table1-permuted --runs-dir "$runs" --paper
