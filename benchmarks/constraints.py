"""Does TPE learn the compression bound? Infeasible architectures proposed, early and late in a real sweep.

    python benchmarks/constraints.py [--seeds 0 1] [--samples 40] [--bound 0.1] [--before DIR]

A real sweep (local Ray, MLflow, Optuna TPE + ASHA) of the paper's grid on
SplitMNIST CL1 with the compression bound tightened to `--bound` (at 0.1, 235
of the grid's 441 size combinations cannot meet it), 20 iterations per task
so that the search, not the training, is what is measured. Counted per sweep:
infeasible proposals among TPE's 10 random start-up trials and among the rest.
`--before DIR` (e.g. `git worktree add /tmp/before dbf77ee`) runs that code's
`hypercl sweep` with the same seeds: there a rejected architecture was told
to the study as COMPLETE with a made-up score of 0; here it is PRUNED with a
violated constraint (orchestrator/searcher.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.records import add_record_args, merge, record  # noqa: E402
from benchmarks.report import render  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
STARTUP = 10  # TPESampler's n_startup_trials: random draws before TPE models anything


def _space(folder: Path, bound: float) -> Path:
    space = yaml.safe_load((HERE / "search_spaces" / "paper_grid.yaml").read_text())
    space.update(name=f"paper_grid_bound{bound:g}", max_compression_ratio=bound)
    path = folder / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _sweep(code: Path, space: Path, runs: Path, name: str, seed: int, samples: int) -> float:
    command = [str(HERE / ".venv" / "bin" / "hypercl"), "sweep", "--space", str(space), "--preset", "split_mnist_cl1", "--set", "train.iters_per_task=20",
               "--set", "train.eval_inferred=false", "--num-samples", str(samples), "--max-concurrent", "2",
               "--scheduler", "asha", "--seed", str(seed), "--runs-dir", str(runs), "--name", name]
    env = {**os.environ, "PYTHONPATH": str(code)}  # the code under test, in our venv (ahead of its editable install)
    start = time.perf_counter()
    subprocess.run(command, cwd=code, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _infeasible_by_number(runs: Path, name: str) -> list[bool]:
    """Per study trial, in the order TPE proposed them: was it rejected for the bound?"""
    import optuna  # noqa: PLC0415
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    folder = runs / "sweeps" / name
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    rejected = {r.data.tags.get("hypercl.trial_id") for r in client.search_runs([experiment.experiment_id])
                if "hypercl.infeasible" in r.data.tags}
    return [f"t{t.number:04d}" in rejected for t in sorted(study.trials, key=lambda t: t.number)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--bound", type=float, default=0.1)
    parser.add_argument("--before", type=Path, help="a checkout of other code, run with the same seeds")
    add_record_args(parser)
    args = parser.parse_args()
    versions = {"constraint (this code)": HERE, **({"fake zero score (before)": args.before} if args.before else {})}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        space = _space(Path(tmp), args.bound)
        for label, code in versions.items():
            early, late, wall = [], [], 0.0
            for seed in args.seeds:
                name = f"c{seed}-{'after' if code == HERE else 'before'}"
                wall += _sweep(code, space, Path(tmp) / "runs", name, seed, args.samples)
                infeasible = _infeasible_by_number(Path(tmp) / "runs", name)
                early.append(sum(infeasible[:STARTUP]))
                late.append(sum(infeasible[STARTUP:]))
                print(f"{label} seed {seed}: infeasible {early[-1]}/{STARTUP} start-up, "
                      f"{late[-1]}/{len(infeasible) - STARTUP} after", flush=True)
            later = args.samples - STARTUP
            command = (f"python benchmarks/constraints.py --seeds {' '.join(map(str, args.seeds))} --samples "
                       f"{args.samples} --bound {args.bound:g}" + (" --before <checkout of dbf77ee>" if args.before else ""))
            scenario = (f"hypercl sweep, paper_grid with compression bound {args.bound:g}, SplitMNIST CL1 20 it/task, "
                        f"TPE + ASHA, {args.samples} trials")
            detail = f"per seed: start-up {early}, later {late}"
            records += [
                record("Sweep search: compression bound", scenario, label, "infeasible_share_startup",
                       100 * sum(early) / (STARTUP * len(args.seeds)), args.seeds, wall, command, detail=detail),
                record("Sweep search: compression bound", scenario, label, "infeasible_share_later",
                       100 * sum(late) / (later * len(args.seeds)), args.seeds, wall, command, detail=detail),
            ]
    args.results_md.write_text(render(merge(records, args.results)))
    for r in records:
        print(f"{r['method']} | {r['metric']}: {r['value']} % ({r['detail']})", flush=True)


if __name__ == "__main__":
    main()
