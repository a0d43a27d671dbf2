"""The output regularizer's cost in one sitting: hypercl against the plain-network limit, and against other code.

    python benchmarks/regularizer_speed.py split   [--pairs 2] [--before DIR]
    python benchmarks/regularizer_speed.py perm10  [--pairs 2] [--iters 200] [--before DIR]
    python benchmarks/regularizer_speed.py perm100 [--iters 100] [--tasks 100]
    python benchmarks/regularizer_speed.py arch    [--pairs 2] [--iters 40] [--before DIR]

`split`: SplitMNIST CL1 at the paper's settings, full run (5 x 2,000 steps),
train time against the same 10,000 steps of the plain target MLP alone (a
fresh net per task, no hypernetwork: what no hypernetwork method can beat),
alternated A B A B in one sitting. `--before DIR` (a checkout of other code,
e.g. `git worktree add /tmp/before <rev>`) runs that code's hypercl in the same
rotation, so its ratio to the limit is measured beside ours.

`perm10`: PermutedMNIST-10 CL1 at the paper's settings, full regularizer:
ms/step at every task over `--iters` steps per task (evaluation skipped),
ours and (with `--before`) the other code's, alternated.

`perm100`: PermutedMNIST with the PermutedMNIST-10 hypernetwork settings over
`--tasks` tasks at `--iters` steps per task, full regularizer: ms/step per
task, the memory the regularizer holds at the last task (Gram form, and what
the explicit form would hold), and the final accuracy after the last task.
Evaluation runs once, at the end (it is not what is measured).

`arch`: SplitMNIST CL1 with three of the robustness study's hypernetworks
(chunks of 10, 100 and 1,000: 47,681 to 477 chunks), ms/step at tasks 1-3 on
one torch thread as a study's trial runs, ours and the other code's, alternated.

Each measurement runs in a subprocess of its own, so runs do not share warm
caches or allocator state. Figures merge into --results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from records import add_record_args, merge, record  # noqa: E402
from report import render  # noqa: E402

ROOT = HERE.parent


def _hypercl_split(seed: int) -> dict:
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.methods import build_learner  # noqa: PLC0415

    cfg = load_config("split_mnist_cl1", [f"seed={seed}"])
    learner = build_learner(cfg)
    train = [learner.learn_task(t)["train_s"] for t in range(cfg.benchmark.num_tasks)]
    acc = learner.evaluate(cfg.benchmark.num_tasks - 1)["acc_task_given"]
    return {"train_s": sum(train), "per_task_s": train, "final_acc": sum(acc) / len(acc)}


def _plain_split(seed: int) -> dict:
    """The limit: the same steps, batches, optimizer and target, with its weights trained directly."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    from hypercl_core.allocator import keep_freed_memory  # noqa: PLC0415
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.data.benchmarks import build_benchmark  # noqa: PLC0415
    from hypercl_core.device import resolve_device  # noqa: PLC0415
    from hypercl_core.nets.mlp import TargetMLP  # noqa: PLC0415
    from hypercl_core.seeding import task_generator  # noqa: PLC0415

    cfg = load_config("split_mnist_cl1", [f"seed={seed}"])
    device = resolve_device(cfg.device)
    keep_freed_memory()  # the allocator the protected loop trains with (build_subsystem sets it there)
    bench = build_benchmark(cfg.benchmark, cfg.seed, device, None)
    target = TargetMLP(bench.input_dim, cfg.target.hidden, bench.outputs_per_task, 1, cfg.target.activation)
    torch.manual_seed(seed)
    train, correct, total = [], 0, 0
    for t, task in enumerate(bench.tasks):
        weights = torch.nn.Parameter(target.init_weights().to(device))
        opt = torch.optim.Adam([weights], lr=cfg.train.lr, fused=True)  # as fast as the protected loop's
        gen = task_generator(cfg.seed, t, device)
        start = time.perf_counter()
        for _ in range(cfg.train.iters_per_task):
            opt.zero_grad(set_to_none=True)
            x, y = task.train_batch(torch.randint(task.num_train, (cfg.train.batch_size,), generator=gen,
                                                  device=device))
            F.cross_entropy(target(x, weights, 0), y).backward()
            opt.step()
        train.append(time.perf_counter() - start)
        with torch.no_grad():
            for x, y in task.test_batches(cfg.train.eval_batch_size):
                correct += (target(x, weights, 0).argmax(-1) == y).sum().item()
                total += len(y)
    return {"train_s": sum(train), "per_task_s": train, "final_acc": 100.0 * correct / total}


def _step_ms(preset: str, iters: int, tasks: int, *sets: str) -> list[float]:
    """ms per training step at every task (evaluation skipped)."""
    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.methods import build_learner  # noqa: PLC0415

    cfg = load_config(preset, [f"benchmark.num_tasks={tasks}", f"train.iters_per_task={iters}", *sets])
    learner = build_learner(cfg)
    return [1000.0 * learner.learn_task(t)["train_s"] / iters for t in range(tasks)]


# The robustness study's extremes and middle on SplitMNIST: (chunk size, hnet hidden, chunk embedding).
ARCHS = [(10, "[20,20]", 8), (100, "[50]", 24), (1000, "[100,100]", 96)]


def _arch_steps(iters: int, chunk: int, hidden: str, cemb: int) -> list[float]:
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)  # as a study's trial actor runs
    return _step_ms("split_mnist_cl1", iters, 3, f"hnet.chunk_dim={chunk}", f"hnet.hidden={hidden}",
                    f"hnet.cemb_dim={cemb}")


def _perm100(iters: int, tasks: int) -> dict:
    import torch  # noqa: PLC0415

    from hypercl_core.config import load_config  # noqa: PLC0415
    from hypercl_core.gram_regularizer import GramOutputRegularizer  # noqa: PLC0415
    from hypercl_core.methods import build_learner  # noqa: PLC0415

    # Scored with the task given (CL1): inferring it would run all 100 networks on every test batch of every task.
    cfg = load_config("permuted_mnist10_cl1", [f"benchmark.num_tasks={tasks}", f"train.iters_per_task={iters}",
                                               "train.eval_inferred=false"])
    learner = build_learner(cfg)
    ms = []
    for t in range(tasks):
        ms.append(1000.0 * learner.learn_task(t)["train_s"] / iters)
        print(f"task {t + 1}: {ms[-1]:.1f} ms/step", file=sys.stderr, flush=True)
    hnet, masks = learner.hnet, learner.head_masks
    earlier = learner.embeddings.stacked(range(tasks - 1), detach=True)
    held = GramOutputRegularizer(hnet, earlier, cfg.method.beta, masks[: tasks - 1].float()).held_bytes()
    explicit = (tasks - 1) * hnet.num_chunks * hnet.chunk_dim * 4  # every earlier task's padded outputs, float32
    start = time.perf_counter()
    acc = learner.evaluate(tasks - 1)["acc_task_given"]
    return {"ms_per_step": ms, "held_mb": held / 2**20, "explicit_held_mb": explicit / 2**20,
            "final_acc": sum(acc) / len(acc), "eval_s": time.perf_counter() - start,
            "threads": torch.get_num_threads()}


def _child(code: Path, part: str, *args: str) -> dict:
    """One measurement in a fresh interpreter on the code under `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, __file__, "--child", part, *args], env=env, cwd=code, check=True,
                         stdout=subprocess.PIPE, text=True).stdout  # its progress goes to stderr as it comes
    return json.loads(out.strip().splitlines()[-1])


def _before(args) -> str:
    """The method name of the other code's records."""
    return f"HNET, {args.before_label} (code before)"


def split(args) -> list[dict]:
    variants = {"hypercl": (ROOT, "hypercl"), "plain": (ROOT, "plain")}
    if args.before:
        variants["before"] = (Path(args.before).resolve(), "hypercl")
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for pair in range(args.pairs):
        for name, (code, part) in variants.items():
            runs[name].append(_child(code, part, str(args.seed)))
            print(f"pair {pair + 1} {name}: train {runs[name][-1]['train_s']:.1f} s, "
                  f"final {runs[name][-1]['final_acc']:.2f}", flush=True)
    median = {name: statistics.median(r["train_s"] for r in rs) for name, rs in runs.items()}
    ratios = [h["train_s"] / p["train_s"] for h, p in zip(runs["hypercl"], runs["plain"])]
    command = f"python benchmarks/regularizer_speed.py split --pairs {args.pairs} --seed {args.seed}" + (
        f" --before <checkout: {args.before_label}>" if args.before else "")
    scenario = "CL1, paper settings, full run (5 x 2,000 steps), one sitting"
    wall = sum(r["train_s"] for rs in runs.values() for r in rs)
    out = [
        record("SplitMNIST", scenario, "HNET", "train_s", median["hypercl"], [args.seed], wall, command,
               runs=[round(r["train_s"], 1) for r in runs["hypercl"]],
               per_task_s=[round(s, 1) for s in runs["hypercl"][-1]["per_task_s"]]),
        record("SplitMNIST", scenario, "HNET", "final_acc", runs["hypercl"][-1]["final_acc"], [args.seed], wall,
               command),
        record("SplitMNIST", scenario, "plain target MLP per task (the limit)", "train_s", median["plain"],
               [args.seed], wall, command, runs=[round(r["train_s"], 1) for r in runs["plain"]]),
        record("SplitMNIST", scenario, "HNET", "train_time_over_plain_limit", statistics.median(ratios),
               [args.seed], wall, command, pairs=[round(r, 3) for r in ratios]),
    ]
    if args.before:
        before = [b["train_s"] / p["train_s"] for b, p in zip(runs["before"], runs["plain"])]
        out += [
            record("SplitMNIST", scenario, _before(args), "train_s", median["before"],
                   [args.seed], wall, command, runs=[round(r["train_s"], 1) for r in runs["before"]]),
            record("SplitMNIST", scenario, _before(args), "train_time_over_plain_limit",
                   statistics.median(before), [args.seed], wall, command, pairs=[round(r, 3) for r in before]),
            record("SplitMNIST", scenario, _before(args), "final_acc",
                   runs["before"][-1]["final_acc"], [args.seed], wall, command),
        ]
    return out


def perm10(args) -> list[dict]:
    variants = {"HNET": ROOT, **({_before(args): Path(args.before).resolve()}
                                 if args.before else {})}
    runs: dict[str, list[list[float]]] = {name: [] for name in variants}
    for pair in range(args.pairs):
        for name, code in variants.items():
            runs[name].append(_child(code, "perm10", str(args.iters)))
            print(f"pair {pair + 1} {name}: {[round(m, 1) for m in runs[name][-1]]}", flush=True)
    command = f"python benchmarks/regularizer_speed.py perm10 --pairs {args.pairs} --iters {args.iters}" + (
        f" --before <checkout: {args.before_label}>" if args.before else "")
    scenario = f"CL1, full regularizer, {args.iters} iterations per task, one sitting"
    out = []
    for name, per_run in runs.items():
        per_task = [statistics.median(r[t] for r in per_run) for t in range(len(per_run[0]))]
        wall = sum(sum(r) for r in per_run) * args.iters / 1000
        extra = {"per_task": [round(m, 1) for m in per_task], "runs": [[round(m, 1) for m in r] for r in per_run]}
        out += [record("PermutedMNIST-10", scenario, name, "ms_per_step_second_task", per_task[1], [0], wall, command,
                       **extra),
                record("PermutedMNIST-10", scenario, name, "ms_per_step_last_task", per_task[-1], [0], wall, command,
                       **extra),
                record("PermutedMNIST-10", scenario, name, "last_over_second_task_step", per_task[-1] / per_task[1],
                       [0], wall, command)]
    return out


def arch(args) -> list[dict]:
    variants = {"HNET": ROOT, **({_before(args): Path(args.before).resolve()} if args.before else {})}
    command = f"python benchmarks/regularizer_speed.py arch --pairs {args.pairs} --iters {args.iters}" + (
        f" --before <checkout: {args.before_label}>" if args.before else "")
    out = []
    for chunk, hidden, cemb in ARCHS:
        runs: dict[str, list[list[float]]] = {name: [] for name in variants}
        for pair in range(args.pairs):
            for name, code in variants.items():
                runs[name].append(_child(code, "arch", str(args.iters), str(chunk), hidden, str(cemb)))
                print(f"chunk {chunk} pair {pair + 1} {name}: {[round(m, 1) for m in runs[name][-1]]}", flush=True)
        scenario = (f"CL1, hnet {hidden.strip('[]')} chunks of {chunk} cemb {cemb}, tasks 1-3 at {args.iters} "
                    "iterations, one torch thread, one sitting")
        for name, per_run in runs.items():
            per_task = [statistics.median(r[t] for r in per_run) for t in range(3)]
            wall = sum(sum(r) for r in per_run) * args.iters / 1000
            out.append(record("SplitMNIST", scenario, name, "ms_per_step_third_task", per_task[-1], [0], wall, command,
                              per_task=[round(m, 1) for m in per_task]))
    return out


def perm100(args) -> list[dict]:
    result = _child(ROOT, "perm100", str(args.iters), str(args.tasks))
    ms = result["ms_per_step"]
    command = f"python benchmarks/regularizer_speed.py perm100 --iters {args.iters} --tasks {args.tasks}"
    bench = f"PermutedMNIST-{args.tasks}"
    scenario = f"CL1, PermutedMNIST-10 hnet settings, {args.iters} iterations per task, full regularizer"
    wall = sum(ms) * args.iters / 1000 + result["eval_s"]
    per_task = [round(m, 1) for m in ms]
    return [
        record(bench, scenario, "HNET", "ms_per_step_second_task", ms[1], [0], wall, command, per_task=per_task),
        record(bench, scenario, "HNET", "ms_per_step_last_task", ms[-1], [0], wall, command, per_task=per_task),
        record(bench, scenario, "HNET", "last_over_second_task_step", ms[-1] / ms[1], [0], wall, command),
        record(bench, scenario, "HNET", "regularizer_held_mb_last_task", result["held_mb"], [0], wall, command,
               explicit_form_would_hold_mb=round(result["explicit_held_mb"], 1)),
        record(bench, scenario, "HNET", "final_acc", result["final_acc"], [0], wall, command),
    ]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        part, rest = sys.argv[2], sys.argv[3:]
        result = {"hypercl": lambda: _hypercl_split(int(rest[0])), "plain": lambda: _plain_split(int(rest[0])),
                  "perm10": lambda: _step_ms("permuted_mnist10_cl1", int(rest[0]), 10),
                  "arch": lambda: _arch_steps(int(rest[0]), int(rest[1]), rest[2], int(rest[3])),
                  "perm100": lambda: _perm100(int(rest[0]), int(rest[1]))}[part]()
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["split", "perm10", "perm100", "arch"])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", help="a checkout of other code to time in the same rotation")
    parser.add_argument("--before-label", default="explicit regularizer of 8a22986",
                        help="what --before is, for the records: 'HNET, <label> (code before)'")
    parser.add_argument("--iters", type=int, default=None, help="steps per task (perm10: 200, perm100: 100, arch: 40)")
    parser.add_argument("--tasks", type=int, default=100)
    add_record_args(parser)
    args = parser.parse_args()
    if args.iters is None:
        args.iters = {"perm10": 200, "arch": 40}.get(args.part, 100)
    records = {"split": split, "perm10": perm10, "perm100": perm100, "arch": arch}[args.part](args)
    args.results_md.write_text(render(merge(records, args.results)))
    for r in records:
        print(f"{r['benchmark']} | {r['method']} | {r['metric']}: {r['value']}", flush=True)


if __name__ == "__main__":
    main()
