"""What a machine with one GPU is checked for, in at most 8 minutes (benchmarks/gpu_check.sh runs it).

    python benchmarks/gpu_check.py --out DIR [--dry] [--results F --results-md F]

1. The CUDA path of every method: a tiny `hypercl run` of each method's preset
   with `device=cuda` (HNET, HNET+ENT, HyperMask, HNET+R, HNET+TIR, the VAE and
   GAN replay models, the 1D regression).
2. SplitMNIST CL1 at the paper's settings: steps/s of the training step.
3. Sweep throughput with 1, 2, 4 and 8 trials per GPU (`--gpus-per-subsystem
   1/k`, k at once): trials per hour of the same 8-trial sweep.

`--dry` runs the same commands on the CPU, tiny, one sweep (the test suite
runs it so the script cannot rot between GPU sessions). Each command runs
through the CLI's entry point in this process: one torch import and CUDA
context for all of them. Figures merge into --results.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_record_args, merge, record  # noqa: E402
from report import render  # noqa: E402

# (what the record calls it, preset): one per method of the registry, as its preset runs it
METHOD_PRESETS = [
    ("HNET", "split_mnist_cl1"), ("HNET+ENT", "split_mnist_cl3"), ("HyperMask", "split_mnist_cl1_hypermask"),
    ("HNET+R", "split_mnist_cl3_hnet_r"), ("HNET+TIR", "split_mnist_cl3_hnet_tir"),
    ("VAE replay", "class_mnist_vae"), ("GAN replay", "class_mnist_gan"), ("HNET (1D regression)", "regression1d"),
    ("Fine-tuning", "split_mnist_cl1_finetune"), ("From scratch", "split_mnist_cl1_from_scratch"),
    ("Joint", "split_mnist_cl3_joint"), ("Online EWC", "split_mnist_cl3_ewc"), ("SI", "split_mnist_cl3_si"),
    ("DGR+distill", "split_mnist_cl3_dgr"),
]
SCENARIO = "GPU check"


def timed(cmd: list[str]) -> float:
    """Seconds `hypercl <cmd>` took; a failure stops the check."""
    from orchestrator.cli import main  # noqa: PLC0415

    start = time.perf_counter()
    code = main(cmd)
    if code:
        sys.exit(f"gpu_check: hypercl {shlex.join(cmd)} exited {code}")
    return time.perf_counter() - start


def run_cmd(preset: str, out: Path, name: str, overrides: list[str]) -> list[str]:
    cmd = ["run", "--config", preset, "--runs-dir", str(out), "--name", name, "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def check_methods(out: Path, device: str, iters: int) -> list[dict]:
    from hypercl_core.config import load_config  # noqa: PLC0415
    from orchestrator.trial import metric_for  # noqa: PLC0415

    records = []
    for method, preset in METHOD_PRESETS:
        tasks = 2 if preset != "regression1d" else 3
        overrides = [f"device={device}", f"train.iters_per_task={iters}", f"benchmark.num_tasks={tasks}"]
        cmd = run_cmd(preset, out / "methods", preset, overrides)
        wall = timed(cmd)
        summary = json.loads((out / "methods" / preset / "results.json").read_text())["summary"]
        score = metric_for(load_config(preset, overrides))[0]
        print(f"{method:24s} {device}: {score} {summary[score]:.4g}, {wall:.1f} s", flush=True)
        records.append(record("SplitMNIST" if "mnist" in preset else "Regression1D", f"{SCENARIO}: {device} path, "
                              f"{tasks} tasks x {iters} iterations", method, score, summary[score], [0], wall,
                              f"hypercl {shlex.join(cmd)}"))
    return records


def steps_per_s(out: Path, device: str, iters: int) -> list[dict]:
    cmd = run_cmd("split_mnist_cl1", out, "steps", [f"device={device}", f"train.iters_per_task={iters}"])
    wall = timed(cmd)
    results = json.loads((out / "steps" / "results.json").read_text())
    summary = results["summary"]
    print(f"SplitMNIST CL1 {device}: {summary['steps_per_s']:.1f} steps/s, final {summary['final_acc']:.2f}",
          flush=True)
    scenario = f"CL1 on {device}, paper settings, {iters} iterations per task"
    return [record("SplitMNIST", scenario, "HNET", metric, summary[metric], [0], wall, f"hypercl {shlex.join(cmd)}")
            for metric in ("steps_per_s", "final_acc")]


def sweep_throughput(out: Path, dry: bool, trials: int, iters: int, per_gpu: list[int]) -> list[dict]:
    records = []
    for k in per_gpu:
        share = ["--gpus-per-subsystem", "0", "--cpus-per-subsystem", "0.5"] if dry else [
            "--gpus-per-subsystem", f"{1 / k:g}"]
        overrides = [f"train.iters_per_task={iters}"] + (["benchmark.num_tasks=2", "device=cpu"] if dry else [])
        cmd = ["sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--num-samples", str(trials),
               "--max-concurrent", str(k), *share, "--runs-dir", str(out / "sweeps"), "--name", f"per-gpu-{k}",
               "--top", "1"]
        for item in overrides:
            cmd += ["--set", item]
        wall = timed(cmd)
        per_hour = trials / wall * 3600
        print(f"sweep, {k} trial(s) per GPU: {trials} trials in {wall:.1f} s = {per_hour:.0f} trials/h", flush=True)
        records.append(record("SplitMNIST", f"{SCENARIO}: sweep of {trials} smoke-space trials, {iters} iterations "
                              f"per task{' (dry, CPU)' if dry else ''}", f"{k} trials per GPU", "trials_per_hour",
                              per_hour, [0], wall, f"hypercl {shlex.join(cmd)}"))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folders go here")
    parser.add_argument("--dry", action="store_true", help="the same commands on the CPU, tiny")
    add_record_args(parser)
    args = parser.parse_args()
    import torch  # noqa: PLC0415

    if not args.dry and not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device here; run with --dry to check the script on a CPU")
    device = "cpu" if args.dry else "cuda"
    records = [
        *check_methods(args.out, device, iters=5 if args.dry else 100),
        *steps_per_s(args.out, device, iters=5 if args.dry else 1000),
        *sweep_throughput(args.out, args.dry, trials=2 if args.dry else 8, iters=5 if args.dry else 300,
                          per_gpu=[2] if args.dry else [1, 2, 4, 8]),
    ]
    args.results_md.write_text(render(merge(records, args.results)))
    print(f"{len(records)} figures merged into {args.results}", flush=True)


if __name__ == "__main__":
    main()
