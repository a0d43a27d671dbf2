"""One HNET+TIR trial: its three subsystems as concurrent Ray actors vs one process.

    python benchmarks/concurrency.py [--iters 500] [--preset split_mnist_cl2_hnet_tir]

1. In-process: `hypercl run` (torch with its default threads) learns the
   classifier, the replay VAE and the task-inference net one after another.
2. Actors: `hypercl rerun --seeds 1` runs the same config as one trial whose
   three subsystems are actors (0.5 CPU each here, so trial + actors fit on 2
   cores) learning each task side by side.
Both wall times cover the whole command; the per-subsystem training seconds
come from each run's task statistics, so the table shows where the time goes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402

PARTS = ("classifier_train_s", "replay_train_s", "task_inference_train_s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="split_mnist_cl2_hnet_tir")
    parser.add_argument("--iters", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    overrides = ["--set", f"train.iters_per_task={args.iters}"]

    name = f"tir-inprocess-{stamp}"
    start = time.perf_counter()
    subprocess.run([str(bin_dir / "hypercl"), "run", "--config", args.preset, *overrides, "--runs-dir",
                    str(args.out), "--name", name, "--no-progress"], check=True)
    inprocess_wall = time.perf_counter() - start
    inprocess = json.loads((args.out / name / "results.json").read_text())

    config = args.out / name / "config.yaml"
    rerun = f"tir-actors-{stamp}"
    start = time.perf_counter()
    subprocess.run([str(bin_dir / "hypercl"), "rerun", "--config", str(config), "--seeds", "1", "--cpus-per-subsystem", "0.5",
                    "--runs-dir", str(args.out), "--name", rerun], check=True)
    actors_wall = time.perf_counter() - start
    trial_results = next((args.out / "sweeps" / rerun / "tune").glob("*/run/results.json"))
    actors = json.loads(trial_results.read_text())

    def parts(results: dict) -> dict[str, float]:
        return {k: round(sum(s[k] for s in results["task_stats"]), 1) for k in (*PARTS, "train_s", "eval_s")}

    command = shlex.join(["python", "benchmarks/concurrency.py", "--preset", args.preset, "--iters", str(args.iters)])
    scenario = f"{args.preset}, {args.iters} it/task, one trial"
    merge([
        record("Subsystem concurrency", scenario, "one process (hypercl run)", "wall_s", inprocess_wall, [0],
               inprocess_wall, command, **parts(inprocess), final_acc=round(inprocess["summary"]["final_acc"], 2)),
        record("Subsystem concurrency", scenario, "3 concurrent actors (hypercl rerun)", "wall_s", actors_wall, [0],
               actors_wall, command, **parts(actors), final_acc=round(actors["summary"]["final_acc"], 2)),
        record("Subsystem concurrency", scenario, "3 concurrent actors (hypercl rerun)", "speedup_in_training",
               parts(inprocess)["train_s"] / parts(actors)["train_s"], [0], actors_wall, command),
    ])
    print(f"in-process {inprocess_wall:.0f}s {parts(inprocess)}; actors {actors_wall:.0f}s {parts(actors)}")


if __name__ == "__main__":
    main()
