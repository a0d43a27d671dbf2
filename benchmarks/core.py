"""Core benchmarks: the paper's settings through `hypercl run`, figures recorded.

    python benchmarks/core.py --only split_cl1 split_cl2 ... [--seeds 0 1 2]   (default: all, seed 0)

Each entry runs the real command line in a subprocess, reads results.json
from its run folder, and merges its figures into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_record_args, merge, record  # noqa: E402
from report import render  # noqa: E402

# name: (preset, overrides, [(benchmark, scenario, method, summary metric)])
Wanted = list[tuple[str, str, str, str]]
INFERRED = "CL3 (multi-head CL1 run, task inferred)"


def figures(benchmark: str, scenario: str, method: str, *metrics: str) -> Wanted:
    return [(benchmark, scenario, method, metric) for metric in metrics]


def cl1_figures(benchmark: str, method: str) -> Wanted:
    """A multi-head CL1 run: accuracy, speed, and the same run scored with the task inferred by entropy."""
    return [*figures(benchmark, "CL1", method, "final_acc", "during_acc"),
            (benchmark, INFERRED, f"{method}+ENT", "final_acc_task_inferred"),
            *figures(benchmark, "CL1", method, "steps_per_s", "wall_s")]


def tir_figures(benchmark: str, scenario: str, method: str = "HNET+TIR") -> Wanted:
    return figures(benchmark, scenario, method, "final_acc", "final_task_inference_acc", "wall_s")


ENTRIES: dict[str, tuple[str, list[str], Wanted]] = {
    "split_cl1": ("split_mnist_cl1", [], cl1_figures("SplitMNIST", "HNET")),
    "split_cl2": ("split_mnist_cl2", [], figures("SplitMNIST", "CL2", "HNET+ENT", "final_acc", "during_acc")),
    "split_cl3": ("split_mnist_cl3", [], figures("SplitMNIST", "CL3", "HNET+ENT", "final_acc", "during_acc")),
    # The SplitMNIST CL3 winner of benchmarks/tuned.py's paper-grid sweep, on CL2 unchanged.
    "split_cl2_tuned": ("split_mnist_cl3_tuned", ["benchmark.scenario=cl2"], figures(
        "SplitMNIST", "CL2, config swept on CL3 (split_mnist_cl3_tuned)", "HNET+ENT", "final_acc", "during_acc")),
    "split_cl1_finetune": ("split_mnist_cl1", ["method.beta=0"], figures(
        "SplitMNIST", "CL1", "fine-tuning (beta=0)", "final_acc", "during_acc", "forgetting")),
    "perm_cl1": ("permuted_mnist10_cl1", [], cl1_figures("PermutedMNIST-10", "HNET")),
    "hypermask_split_cl1": ("split_mnist_cl1_hypermask", [], cl1_figures("SplitMNIST", "HyperMask")),
    "hypermask_perm_cl1": ("permuted_mnist10_cl1_hypermask", [], cl1_figures("PermutedMNIST-10", "HyperMask")),
    **{f"hnet_r_split_{sc}": (f"split_mnist_{sc}_hnet_r", [], figures(
        "SplitMNIST", sc.upper(), "HNET+R", "final_acc", "during_acc", "wall_s")) for sc in ("cl1", "cl2", "cl3")},
    **{f"hnet_tir_split_{sc}": (f"split_mnist_{sc}_hnet_tir", [], tir_figures("SplitMNIST", sc.upper()))
       for sc in ("cl2", "cl3")},
    # The task-inference loss weighting of the other SplitMNIST TIR preset, each way.
    "hnet_tir_split_cl3_half": ("split_mnist_cl3_hnet_tir", ["replay.current_weight=0.5"],
                                tir_figures("SplitMNIST", "CL3", "HNET+TIR, task-inference loss 0.5 / 0.5 (authors')")),
    "hnet_tir_split_cl2_balanced": ("split_mnist_cl2_hnet_tir", ["replay.current_weight=null"],
                                    tir_figures("SplitMNIST", "CL2", "HNET+TIR, task-inference loss balanced")),
    # The replay decoder of the authors' published code (300,150) instead of the paper's appendix (50,150).
    "hnet_tir_split_cl3_dec300": ("split_mnist_cl3_hnet_tir", ["replay.current_weight=0.5", "replay.decoder_hidden=[300,150]"],
                                  tir_figures("SplitMNIST", "CL3", "HNET+TIR, replay decoder 300,150")),
    "hnet_tir_perm_cl3": ("permuted_mnist10_cl3_hnet_tir", [], tir_figures("PermutedMNIST-10", "CL3")),
    "regression": ("regression1d", [], [("1D regression", "CL1", "HNET", "final_mse")]),
    "regression_paper_beta": ("regression1d", ["method.beta=0.005"],
                              [("1D regression", "CL1", "HNET (beta 0.005, Fig. 2)", "final_mse")]),
    "regression_finetune": ("regression1d", ["method.beta=0"],
                            [("1D regression", "CL1", "fine-tuning (beta=0)", "final_mse")]),
}


def run_entry(name: str, out: Path, seed: int) -> list[dict]:
    preset, overrides, wanted = ENTRIES[name]
    run_name = f"{name}-s{seed}"
    cmd = ["hypercl", "run", "--config", preset, "--runs-dir", str(out), "--name", run_name, "--no-progress",
           "--set", f"seed={seed}"]
    for item in overrides:
        cmd += ["--set", item]
    resumed = (out / run_name / "checkpoint.pt").exists()
    run = ["hypercl", "run", "--resume", str(out / run_name), "--no-progress"] if resumed else cmd
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "hypercl"), *run[1:]], check=True)
    results = json.loads((out / run_name / "results.json").read_text())
    summary = results["summary"]
    # A resumed run's process saw only part of the work: take the run's own train + eval time.
    wall = summary["wall_s"] if resumed else time.perf_counter() - start
    command = shlex.join(cmd)
    records = [record(b, s, m, metric, summary[metric], [seed], wall, command) for b, s, m, metric in wanted]
    if name.startswith("regression"):
        mse = results["matrices"]["mse"][-1]
        records += [record(wanted[0][0], "CL1", wanted[0][2], f"final_mse_task{j}", v, [seed], wall, command)
                    for j, v in enumerate(mse)]
    print(json.dumps({r["metric"]: r["value"] for r in records}), flush=True)
    return records


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    """One record per metric: the mean over seeds, with every seed's value kept."""
    if len(per_seed) == 1:
        return per_seed[0]
    merged = []
    for group in zip(*per_seed):
        values = [r["value"] for r in group]
        first = dict(group[0])
        first.update(value=round(sum(values) / len(values), 4), per_seed=values,
                     seeds=[s for r in group for s in r["seeds"]], wall_s=round(sum(r["wall_s"] for r in group), 1),
                     command=group[0]["command"].replace(f"seed={group[0]['seeds'][0]}", "seed=<seed>"))
        merged.append(first)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(ENTRIES), default=sorted(ENTRIES))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--label", help="appended to each record's scenario, so a rerun of changed code is "
                                        "recorded beside the figures it is compared with instead of over them")
    add_record_args(parser)
    args = parser.parse_args()
    for name in args.only:
        records = aggregate([run_entry(name, args.out, seed) for seed in args.seeds])
        if args.label:
            records = [{**r, "scenario": f"{r['scenario']} [{args.label}]"} for r in records]
        args.results_md.write_text(render(merge(records, args.results)))


if __name__ == "__main__":
    main()
