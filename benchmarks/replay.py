"""A replay model (VAE or GAN) on class-incremental MNIST: sample grid and classifier agreement.

    python benchmarks/replay.py [--model vae|gan] [--iters N] [--seed 0]

1. `hypercl run --config class_mnist_<model>` learns the ten digits one after another
   (--iters overrides the preset's iterations per digit).
2. `hypercl samples` draws the grid: per digit, samples right after learning it
   and after learning all ten (the paper's Fig. A8).
3. An MNIST classifier trained here, independently of the VAE (an MLP on the
   full training set), labels 100 fresh samples per digit from the final model;
   the figure is how often its label is the digit the sample was generated for.
4. Agreement alone cannot tell a collapsed model (one good image per digit) from
   a working one, so the diversity figure is the pixel std across those 100
   samples relative to the same for 100 real test images of the digit
   (1 = as varied as real digits, ~0 = one image repeated).
Figures go to benchmarks/results.json, the grid to docs/replay/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import merge, record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train_judge(seed: int) -> tuple[torch.nn.Module, float]:
    """An ordinary MNIST MLP (784-400-400-10, 3 epochs of Adam): the independent labeller."""
    from hypercl_core.data.mnist import load_mnist, resolve_data_root, to_unit_float  # noqa: PLC0415

    mnist = load_mnist(resolve_data_root())
    x = torch.from_numpy(to_unit_float(mnist.train_x))
    y = torch.from_numpy(mnist.train_y.astype("int64"))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 400),
                              torch.nn.ReLU(), torch.nn.Linear(400, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(3):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        test_acc = (net(torch.from_numpy(to_unit_float(mnist.test_x))).argmax(-1).numpy() == mnist.test_y).mean()
    return net.eval(), 100.0 * float(test_acc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("vae", "gan"), default="vae")
    parser.add_argument("--iters", type=int, default=None, help="iterations per digit (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    preset = f"class_mnist_{args.model}"
    name = f"{preset}-it{args.iters or 'preset'}-seed{args.seed}"
    run_dir = args.out / name
    iters = ["--set", f"train.iters_per_task={args.iters}"] if args.iters else []
    cmd = ["hypercl", "run", "--config", preset, *iters, "--set", f"seed={args.seed}", "--runs-dir", str(args.out),
           "--name", name, "--no-progress"]
    start = time.perf_counter()
    resumed = (run_dir / "checkpoint.pt").is_file()
    if resumed and not (run_dir / "results.json").is_file():
        subprocess.run([str(bin_dir / "hypercl"), "run", "--resume", str(run_dir), "--no-progress"], check=True)
    elif not (run_dir / "results.json").is_file():
        subprocess.run([str(bin_dir / "hypercl"), *cmd[1:]], check=True)
    wall = time.perf_counter() - start
    subprocess.run([str(bin_dir / "hypercl"), "samples", str(run_dir)], check=True)

    from hypercl_core.experiment import resume_run  # noqa: PLC0415

    exp = resume_run(run_dir)
    judge, judge_acc = train_judge(args.seed)
    tasks = list(range(exp.tasks_done))
    with torch.no_grad():
        samples = exp.learner.sample(tasks, 100, torch.Generator().manual_seed(args.seed)).cpu()
        labels = judge(samples.reshape(-1, 784)).argmax(-1).reshape(len(tasks), -1)
    digits = torch.tensor([exp.learner.bench.tasks[t].class_offset for t in tasks]).unsqueeze(1)
    per_digit = (100.0 * (labels == digits).float().mean(1)).tolist()
    agreement = sum(per_digit) / len(per_digit)
    real = torch.stack([exp.learner.bench.tasks[t].x_test[:100].cpu() for t in tasks])
    diversity_per_digit = (samples.std(1).mean(-1) / real.std(1).mean(-1)).tolist()
    diversity = sum(diversity_per_digit) / len(diversity_per_digit)

    docs = ROOT / "docs" / "replay"
    docs.mkdir(parents=True, exist_ok=True)
    grid = docs / f"{preset}_samples.png"
    shutil.copy(run_dir / "samples.png", grid)
    results = json.loads((run_dir / "results.json").read_text())
    summary = results["summary"]
    # A resumed run's process saw only part of the work: take the run's own train + eval time.
    wall = summary["wall_s"] if resumed else wall
    command = shlex.join(["python", "benchmarks/replay.py", "--model", args.model, "--seed", str(args.seed),
                          *(["--iters", str(args.iters)] if args.iters else [])])
    scenario = f"class-incremental, 10 digits, {results['config']['train']['iters_per_task']} it/task"
    bench, method = f"Replay {args.model.upper()} (MNIST)", f"hnet-protected {args.model.upper()}"
    records = [
        record(bench, scenario, method, "sample_agreement_after_all", agreement, [args.seed], wall, command,
               per_digit=[round(v, 1) for v in per_digit], judge_test_acc=round(judge_acc, 2)),
        record(bench, scenario, method, "sample_diversity_vs_real", diversity, [args.seed], wall, command,
               per_digit=[round(v, 2) for v in diversity_per_digit]),
        record(bench, scenario, method, "final_sample_drift", summary["final_sample_drift"], [args.seed], wall,
               command),
    ]
    if "final_nll" in summary:  # the GAN has no likelihood
        records.append(record(bench, scenario, method, "final_nll", summary["final_nll"], [args.seed], wall, command,
                              during_nll=round(summary["during_nll"], 2)))
    merge(records)
    print(f"agreement {agreement:.1f}% (per digit {[round(v, 1) for v in per_digit]}), judge test acc "
          f"{judge_acc:.2f}%, diversity vs real {diversity:.2f}, grid: {grid}")


if __name__ == "__main__":
    main()
