"""Orchestration overhead: the same trials through `hypercl sweep` vs one after another in-process.

    python benchmarks/orchestration.py [--samples 8] [--iters 350] [--concurrency 1]

1. `hypercl sweep` (smoke space, SplitMNIST CL1, `--iters` per task) runs
   `--samples` trials `--concurrency` at a time; its wall time is measured
   around the whole command (Ray start, actors, MLflow, checkpoints included).
2. The exact configs those trials ran are read back from MLflow and run
   in-process with `Experiment`, one after another, each with as many torch
   threads as a trial's actor gets (one).
Overhead = sweep wall / in-process total - 1 (at concurrency 1 the two do the
same work serially). Figures go to benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--iters", type=int, default=350)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    name = f"overhead-{dt.datetime.now():%Y%m%d-%H%M%S}"
    cmd = ["hypercl", "sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--set",
           f"train.iters_per_task={args.iters}", "--num-samples", str(args.samples), "--max-concurrent",
           str(args.concurrency), "--runs-dir", str(args.out), "--name", name]
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "hypercl"), *cmd[1:]], check=True)
    sweep_wall = time.perf_counter() - start

    import torch  # noqa: PLC0415

    from hypercl_core.config import config_from_flat  # noqa: PLC0415
    from hypercl_core.experiment import start_run  # noqa: PLC0415
    from orchestrator.tracking import SweepTracker, decode_params, embedded_uri  # noqa: PLC0415

    torch.set_num_threads(1)
    folder = args.out / "sweeps" / name
    runs = SweepTracker(embedded_uri(folder), name).trial_runs()
    configs = [config_from_flat(decode_params(r.data.params), saved=True) for r in runs if r.data.params]
    per_trial = []
    for i, cfg in enumerate(configs):
        t0 = time.perf_counter()
        start_run(cfg, folder / "inprocess" / f"trial{i}").run(show_progress=False)
        per_trial.append(time.perf_counter() - t0)
    inprocess = sum(per_trial)
    overhead = sweep_wall / inprocess - 1
    command = shlex.join(["python", "benchmarks/orchestration.py", "--samples", str(args.samples), "--iters",
                          str(args.iters), "--concurrency", str(args.concurrency)])
    scenario = f"CL1, {len(configs)} trials, {args.iters} it/task, concurrency {args.concurrency}"
    merge([
        record("Sweeps", scenario, "hypercl sweep", "sweep_wall_s", sweep_wall, [0], sweep_wall, command),
        record("Sweeps", scenario, "in-process, serial", "inprocess_total_s", inprocess, [0], inprocess, command,
               per_trial_s=[round(x, 1) for x in per_trial]),
        record("Sweeps", scenario, "hypercl sweep", "overhead_fraction", overhead, [0], sweep_wall, command),
    ])
    print(f"sweep {sweep_wall:.1f}s, in-process {inprocess:.1f}s ({len(configs)} trials, min "
          f"{min(per_trial):.1f}s), overhead {100 * overhead:.1f}%")


if __name__ == "__main__":
    main()
