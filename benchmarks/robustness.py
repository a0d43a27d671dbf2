"""The robustness study on this machine: wall time, throughput, overhead share, the plot.

    python benchmarks/robustness.py --preset split_mnist_cl1 --n-archs 100 --iters 250
    python benchmarks/robustness.py --preset permuted_mnist10_cl1 --n-archs 20 --iters 100 --set train.eval_inferred=false

Runs `hypercl robustness` (as a user would) and times the whole command.
Throughput is finished architectures per hour of that wall time; the
overhead share is the part of the trial slots' time (concurrency x wall)
not spent training or evaluating inside a trial: Ray and actor start-up,
MLflow, checkpoints, the CSV and plot. The study's CSVs, plot and study.yaml are copied
to docs/robustness/<preset>/ and the figures go to benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="split_mnist_cl1")
    parser.add_argument("--n-archs", type=int, default=100)
    parser.add_argument("--iters", type=int, default=250, help="iterations per task (the paper: 2000 / 5000)")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--resume", type=Path, help="finish an interrupted study folder (timing covers this call only)")
    args = parser.parse_args()
    name = f"robustness-{args.preset}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    hypercl = str(Path(sys.executable).parent / "hypercl")
    if args.resume:
        name = args.resume.name
        cmd = [hypercl, "robustness", "--resume", str(args.resume)]
    else:
        cmd = [hypercl, "robustness", "--config", args.preset, "--n-archs", str(args.n_archs), "--bins",
               str(args.bins), "--set", f"train.iters_per_task={args.iters}", "--max-concurrent",
               str(args.concurrency), "--runs-dir", str(args.out), "--name", name]
        for item in args.overrides:
            cmd += ["--set", item]
    start = time.perf_counter()
    returncode = subprocess.run(cmd, check=False).returncode
    wall = time.perf_counter() - start
    if returncode == 130:
        sys.exit(f"interrupted: nothing recorded; finish it with --resume {args.out / 'sweeps' / name}")

    folder = args.out / "sweeps" / name
    rows = list(csv.DictReader((folder / "study.csv").open()))
    bins = list(csv.DictReader((folder / "study_bins.csv").open()))
    done = [r for r in rows if r["status"] == "FINISHED"]
    in_trials = sum(float(r["wall_s"]) for r in done)
    overhead = 1 - in_trials / (args.concurrency * wall)
    docs = ROOT / "docs" / "robustness" / args.preset
    docs.mkdir(parents=True, exist_ok=True)
    for file in ("study.csv", "study_bins.csv", "study.png", "study.yaml"):
        shutil.copy(folder / file, docs / file)

    command = shlex.join(["python", "benchmarks/robustness.py", "--preset", args.preset, "--n-archs",
                          str(args.n_archs), "--iters", str(args.iters), "--bins", str(args.bins),
                          "--concurrency", str(args.concurrency), *[x for o in args.overrides for x in ("--set", o)]])
    scenario = f"CL1, {len(done)}/{len(rows)} random archs, {args.iters} it/task, concurrency {args.concurrency}"
    filled = [b for b in bins if int(b["n"])]
    lowest = filled[0]
    ratios = [float(r["ratio"]) for r in done]
    merge([
        record("Robustness " + args.preset, scenario, "hypercl robustness", "study_wall_s", wall, [0], wall, command),
        record("Robustness " + args.preset, scenario, "hypercl robustness", "archs_per_hour", 3600 * len(done) / wall,
               [0], wall, command),
        record("Robustness " + args.preset, scenario, "hypercl robustness", "overhead_share", overhead, [0], wall,
               command, in_trial_s=round(in_trials, 1)),
        record("Robustness " + args.preset, scenario, "HNET, lowest ratio bin", "final_acc_median",
               float(lowest["final_acc_median"]), [0], wall, command,
               bin=f"{float(lowest['ratio_lo']):.3g}-{float(lowest['ratio_hi']):.3g}", n=int(lowest["n"]),
               iqr=[round(float(lowest["final_acc_q1"]), 3), round(float(lowest["final_acc_q3"]), 3)]),
        record("Robustness " + args.preset, scenario, "HNET, all archs", "final_acc_median",
               statistics.median(float(r["final_acc"]) for r in done), [0], wall, command,
               ratio_min=round(min(ratios), 4), ratio_max=round(max(ratios), 4),
               failed=len(rows) - len(done)),
    ])
    print(f"{len(done)}/{len(rows)} architectures in {wall:.0f}s ({3600 * len(done) / wall:.1f}/h), "
          f"overhead share {100 * overhead:.1f}%; plot: {docs / 'study.png'}")


if __name__ == "__main__":
    main()
