"""Conv targets on real data and their step time, where no CIFAR is at hand.

    python benchmarks/conv_targets.py learn --target zenke [--epochs 2]
    python benchmarks/conv_targets.py learn --target resnet32 [--epochs 2]
    python benchmarks/conv_targets.py speed [--iters 30]

`learn`: SplitMNIST as 3x32x32 images (zero-padded, channel-replicated: what a
CIFAR conv net reads), CL1, 5 tasks, a few epochs per task, from the split CIFAR
preset of that target (ResNet-32: its hypernetwork as it is; ZenkeNet: SplitMNIST's
hypernetwork, see ON_MNIST_HNET); records final accuracy, forgetting and wall time.
`speed`: ms per training step at batch 32 on CIFAR-size input, hypernetwork and
output regularizer included (the second task, so one earlier task is
protected), for both targets with their presets' hypernetworks.

The full split CIFAR-10/100 run, for a machine with the CIFAR archives under its
data root and a GPU (200 epochs x 6 tasks):
    hypercl run --config split_cifar_resnet32 --set device=cuda --data-root DATA
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_record_args, merge, record  # noqa: E402
from report import render  # noqa: E402

PRESETS = {"resnet32": ("split_cifar_resnet32", "HNET, ResNet-32"), "zenke": ("split_cifar_zenke", "HNET, ZenkeNet")}
ON_MNIST = ["benchmark.name=split_mnist", "benchmark.num_tasks=5", "benchmark.as_rgb32=true",
            "train.eval_batch_size=500"]
# ZenkeNet with its CIFAR preset's hypernetwork (100,150,200 ELU, chunks of 5,500, e 48, c 80) at
# lr 1e-3 stayed at 53.66 % on the first task (one class for every image) through 1,175 steps here;
# with SplitMNIST's hypernetwork (10,10 ELU, chunks of 42,000, e = c = 96) it learns.
ON_MNIST_HNET = {"zenke": ["hnet.hidden=[10, 10]", "hnet.chunk_dim=42000", "hnet.temb_dim=96", "hnet.cemb_dim=96",
                           "train.lr=0.001"],
                 "resnet32": []}


def learn(args: argparse.Namespace) -> list[dict]:
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.experiment import start_run  # noqa: PLC0415

    preset, method = PRESETS[args.target]
    overrides = [*ON_MNIST, f"train.epochs_per_task={args.epochs}", f"seed={args.seed}", *ON_MNIST_HNET[args.target]]
    cfg = load_config(preset, overrides)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = start_run(cfg, run_dir).run(show_progress=True)
    wall = time.perf_counter() - began
    s = result["summary"]
    command = f"python benchmarks/conv_targets.py learn --target {args.target} --epochs {args.epochs} --seed {args.seed}"
    scenario = f"SplitMNIST as 3x32x32 images, CL1, 5 tasks x {args.epochs:g} epochs (preset {preset} + {' '.join(overrides)})"
    extra = {"matrix": result["matrices"]["acc_task_given"], "params": result["params"]}
    print(f"{method}: final {s['final_acc']:.2f} during {s['during_acc']:.2f} forgetting {s['forgetting']:.2f} "
          f"in {wall:.0f} s", flush=True)
    return [record("Conv targets", scenario, method, metric, s[metric], [args.seed], wall, command, **extra)
            for metric in ("final_acc", "during_acc", "forgetting")]


def speed(args: argparse.Namespace) -> list[dict]:
    import torch  # noqa: PLC0415

    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.methods import build_learner  # noqa: PLC0415

    records = []
    for target, (preset, method) in PRESETS.items():
        cfg = load_config(preset, [*ON_MNIST, "benchmark.num_tasks=2", "train.epochs_per_task=null",
                                   f"train.iters_per_task={args.iters}", "device=cpu"])
        learner = build_learner(cfg)
        learner.learn_task(0)
        began = time.perf_counter()
        stats = learner.learn_task(1)
        ms = 1000.0 / stats["steps_per_s"]
        command = f"python benchmarks/conv_targets.py speed --iters {args.iters}"
        scenario = (f"batch 32, 3x32x32 input, {preset}'s hypernetwork and regularizer (task 2 of 2), "
                    f"CPU, {torch.get_num_threads()} threads")
        records.append(record("Conv target step", scenario, method, "ms_per_step", ms, [0],
                              time.perf_counter() - began, command))
        print(f"{method}: {ms:.0f} ms/step", flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("learn", help="SplitMNIST as 3x32x32 through an hnet-generated conv target")
    p.add_argument("--target", choices=sorted(PRESETS), required=True)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("speed", help="ms per training step of both conv targets")
    s.add_argument("--iters", type=int, default=30)
    for each in (p, s):
        add_record_args(each)
    args = parser.parse_args()
    records = learn(args) if args.command == "learn" else speed(args)
    args.results_md.write_text(render(merge(records, args.results)))


if __name__ == "__main__":
    main()
