"""Step time per task: how the output regularizer's cost grows with the number of tasks.

    python benchmarks/speed.py [--iters 200]

Trains the paper presets for `--iters` steps per task (evaluation skipped: this
measures the training step only) and records ms/step at every task, for the
full regularizer and for the stochastic K=2 subset. Whole-run wall times of
the paper settings come from benchmarks/core.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402

VARIANTS = {
    ("PermutedMNIST-10", "CL1, full regularizer"): ("permuted_mnist10_cl1", []),
    ("PermutedMNIST-10", "CL1, K=2 regularizer subset"): ("permuted_mnist10_cl1", ["method.reg_subset=2"]),
    ("SplitMNIST", "CL1, full regularizer"): ("split_mnist_cl1", []),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.methods import build_learner  # noqa: PLC0415

    records = []
    for (bench, scenario), (preset, overrides) in VARIANTS.items():
        cfg = load_config(preset, [f"train.iters_per_task={args.iters}", *overrides])
        learner = build_learner(cfg)
        per_task = [round(1000.0 / learner.learn_task(t)["steps_per_s"], 1) for t in range(cfg.benchmark.num_tasks)]
        command = f"python benchmarks/speed.py --iters {args.iters}"
        wall = sum(per_task) * args.iters / 1000
        records += [
            record(bench, scenario, "HNET", "ms_per_step_second_task", per_task[1], [0], wall, command,
                   per_task=per_task),
            record(bench, scenario, "HNET", "ms_per_step_last_task", per_task[-1], [0], wall, command,
                   per_task=per_task),
        ]
        print(bench, scenario, per_task, flush=True)
    merge(records)


if __name__ == "__main__":
    main()
