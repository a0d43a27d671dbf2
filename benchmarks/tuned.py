"""A preset tuned the way a researcher would: sweep the paper's grid, export the winner, rerun it over seeds.

    python benchmarks/tuned.py [--preset split_mnist_cl3] [--space paper_grid] [--samples 12] [--seeds 3]

1. `hypercl sweep` (ASHA, one trial at a time) searches `--space` over the preset.
2. `hypercl best --export` writes the winner's config from MLflow.
3. `hypercl rerun` runs it over seeds 0..`--seeds`-1.
The sweep ranks trials by their test accuracy on seed 0 (as the paper's search
did), so seed 0 of the rerun is the seed the winner was picked on; the record
keeps every seed's figure so the other seeds can be read on their own. A step
whose folder already exists under runs/sweeps is not run again (an interrupted
one resumes with the command it printed). Figures go to benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402


def parent_seconds(uri: str, name: str, kind: str) -> float:
    """Wall time of a sweep or rerun: its parent MLflow run, Ray start to last trial."""
    from orchestrator.best import open_sweep_experiment  # noqa: PLC0415
    from orchestrator.tracking import KIND  # noqa: PLC0415

    client, experiment = open_sweep_experiment(uri, name)
    run = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = '{kind}'", max_results=1)[0]
    return (run.info.end_time - run.info.start_time) / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="split_mnist_cl3")
    parser.add_argument("--space", default="paper_grid")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--name", default=None, help="sweep name (default: <preset>-<space>-tuned)")
    parser.add_argument("--rerun-name", default=None, help="rerun name (default: <sweep name>-rerun)")
    args = parser.parse_args()
    hypercl = str(Path(sys.executable).parent / "hypercl")
    name = args.name or f"{args.preset}-{args.space}-tuned"
    rerun = args.rerun_name or f"{name}-rerun"
    sweeps = args.runs_dir / "sweeps"
    exported = sweeps / name / "best.yaml"
    steps = [
        (sweeps / name, ["hypercl", "sweep", "--space", args.space, "--config", args.preset, "--num-samples",
                         str(args.samples), "--scheduler", "asha", "--max-concurrent", "1", "--name", name,
                         "--runs-dir", str(args.runs_dir)]),
        (exported, ["hypercl", "best", "--name", name, "--top", "1", "--export", str(exported), "--runs-dir",
                    str(args.runs_dir)]),
        (sweeps / rerun, ["hypercl", "rerun", "--config", str(exported), "--seeds", str(args.seeds), "--max-concurrent", "2",
                          "--name", rerun, "--runs-dir", str(args.runs_dir)]),
    ]
    for done_when, cmd in steps:
        if not done_when.exists():
            subprocess.run([hypercl, *cmd[1:]], check=True)

    from hypercl_core.config import load_config  # noqa: PLC0415
    from orchestrator.best import KEY_PARAMS, best_runs  # noqa: PLC0415
    from orchestrator.tracking import decode_params, embedded_uri  # noqa: PLC0415

    sweep_uri, rerun_uri = embedded_uri(sweeps / name), embedded_uri(sweeps / rerun)
    winner = best_runs(sweep_uri, name, "final_acc", 1)[0]
    reruns = best_runs(rerun_uri, rerun, "final_acc", args.seeds)
    by_seed = sorted((int(decode_params(r.data.params)["seed"]), r.data.metrics["final_acc"]) for r in reruns)
    wall = parent_seconds(sweep_uri, name, "sweep") + parent_seconds(rerun_uri, rerun, "rerun")
    params = decode_params(winner.data.params)
    chosen = {k: params[k] for k in KEY_PARAMS}
    cfg = load_config(args.preset)
    benchmark = {"split_mnist": "SplitMNIST", "permuted_mnist": "PermutedMNIST-10"}.get(cfg.benchmark.name,
                                                                                        cfg.benchmark.name)
    scenario = f"{cfg.benchmark.scenario.upper()}, {args.space} sweep ({args.samples} trials, ASHA) then rerun"
    method = "HNET+ENT" if cfg.benchmark.scenario != "cl1" else "HNET"
    command = " && ".join(shlex.join(cmd) for _, cmd in steps)
    values = [v for _, v in by_seed]
    records = [
        record(benchmark, scenario, method, "final_acc", sum(values) / len(values), [s for s, _ in by_seed], wall,
               command, per_seed=[round(v, 2) for v in values], chosen=chosen),
        record(benchmark, scenario, method, "sweep_best_final_acc", winner.data.metrics["final_acc"], [0], wall,
               command),
    ]
    merge(records)
    print(f"winner {chosen}: sweep {winner.data.metrics['final_acc']:.2f}, rerun "
          f"{[round(v, 2) for v in values]} (mean {sum(values) / len(values):.2f})")


if __name__ == "__main__":
    main()
