"""Bit-identity fingerprints of short experiments, to prove a refactor changed no result.

A refactor of hypercl_core should leave every score and every learned weight exactly as
it was. This script runs a few short continual-learning experiments in-process (2 tasks,
30 iterations each, on the CPU) and writes a fingerprint of each: every score matrix
entry exactly (float.hex, nothing rounded) and SHA-256 hashes over the final learner
state in the run's checkpoint.pt (one over everything, one per tensor path, so a
mismatch points at the tensor). The config is recorded for information only.

Before/after a refactor:

    git worktree add /tmp/identity-before <old commit>
    cp benchmarks/identity.py /tmp/identity-before/benchmarks/
    (cd /tmp/identity-before && PYTHONPATH=$PWD python benchmarks/identity.py --out before.json)
    python benchmarks/identity.py --out after.json           # in the refactored tree
    python benchmarks/identity.py --compare /tmp/identity-before/before.json after.json

    python benchmarks/identity.py --out FILE.json [--only LABEL ...] [--threads N]
    python benchmarks/identity.py --compare A.json B.json     # exit 0 identical, 1 differs, 2 bad input

The JSON's "source" says which hypercl_core was imported (check it when running a
worktree: PYTHONPATH must win over the venv's editable install). MNIST comes from
$HYPERCL_DATA. Torch runs on a fixed number of threads (default 1) so the sums inside
matrix products are done in the same order on any machine.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["device=cpu", "benchmark.num_tasks=2", "train.iters_per_task=30"]
RUNS: dict[str, tuple[str, list[str]]] = {
    "HNET CL1": ("split_mnist_cl1", COMMON),
    "HNET CL3": ("split_mnist_cl3", COMMON),
    "HyperMask CL1": ("split_mnist_cl1_hypermask", COMMON),
    "HNET+R CL1": ("split_mnist_cl1_hnet_r", COMMON),
    "HNET+TIR CL2": ("split_mnist_cl2_hnet_tir", COMMON),
    "VAE": ("class_mnist_vae", COMMON),
    "GAN": ("class_mnist_gan", COMMON),
    "regression1d": ("regression1d", COMMON),
    "PermutedMNIST CL1": ("permuted_mnist10_cl1", COMMON),
}


class BadInput(Exception):
    """One line for stderr, exit 2."""


# -- fingerprints -------------------------------------------------------------

def leaves(node, path: str = ""):
    """(path, leaf) in a canonical order: dict keys sorted, lists in order; empty containers yield nothing."""
    if isinstance(node, dict):
        for key in sorted(node, key=lambda k: (type(k).__name__, k)):
            yield from leaves(node[key], f"{path}/{key}" if isinstance(key, str) else f"{path}/{key!r}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, node


def leaf_bytes(leaf) -> bytes:
    """A tensor as dtype, shape and raw bytes; any other leaf (an optimizer step, a flag) as its type and value."""
    import torch
    if isinstance(leaf, torch.Tensor):
        t = leaf.detach().contiguous().cpu()
        try:
            raw = t.numpy().tobytes()
        except TypeError:  # a dtype numpy lacks (bfloat16): its bytes all the same
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        return f"tensor {t.dtype} {tuple(t.shape)}\n".encode() + raw
    return f"{type(leaf).__name__} {leaf.hex() if isinstance(leaf, float) else repr(leaf)}".encode()


def state_hashes(state) -> tuple[str, dict[str, str]]:
    whole = hashlib.sha256()
    per_path = {}
    for path, leaf in leaves(state):
        data = leaf_bytes(leaf)
        whole.update(f"{len(path)}:{path}{len(data)}:".encode() + data)
        per_path[path] = hashlib.sha256(data).hexdigest()
    return whole.hexdigest(), per_path


def fingerprint(label: str, data_root: str | None) -> dict:
    import torch
    from hypercl_core.config import load_config
    from hypercl_core.experiment import start_run

    preset, overrides = RUNS[label]
    cfg = load_config(preset, overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        exp = start_run(cfg, Path(tmp) / "run", data_root=data_root)
        exp.run(show_progress=False)
        state = torch.load(Path(tmp) / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    learner_sha256, tensors = state_hashes(state["learner"])
    return {
        "preset": preset,
        "overrides": overrides,
        "matrices": {name: [[None if v is None else v.hex() for v in row] for row in m.to_list()]
                     for name, m in exp.matrices.items()},
        "learner_sha256": learner_sha256,
        "tensors": tensors,
        "wall_s": round(time.perf_counter() - start, 1),
        "config": cfg.flat(),  # information only, not compared
    }


def source_info() -> dict:
    import hypercl_core
    import torch
    package = Path(hypercl_core.__file__).resolve().parent
    checkout = package.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.rstrip("\n") if done.returncode == 0 else None

    tracked = git("status", "--porcelain", "--untracked-files=no")
    new_in_package = git("status", "--porcelain", "--untracked-files=all", "--", package.name)
    changed = [line[3:] for line in (tracked or "").splitlines()]
    changed += [line[3:] for line in (new_in_package or "").splitlines() if line.startswith("??")]
    return {
        "source": hypercl_core.__file__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if tracked is None else bool(changed),
        "dirty_paths": changed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
    }


def capture(out: Path, labels: list[str], threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    data_root = os.environ.get("HYPERCL_DATA")
    doc = {**source_info(), "runs": {}}
    print(f"hypercl_core from {doc['source']} (commit {doc['git_commit']}{', dirty' if doc['git_dirty'] else ''})")
    start = time.perf_counter()
    for label in labels:
        run = doc["runs"][label] = fingerprint(label, data_root)
        print(f"{label:18} {run['learner_sha256'][:16]}  {len(run['tensors'])} tensors  {run['wall_s']:.1f} s",
              flush=True)
    doc["wall_s"] = round(time.perf_counter() - start, 1)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({doc['wall_s']:.0f} s)")


# -- comparison -----------------------------------------------------------------

def read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), dict):
        raise BadInput(f"{path} is not an identity.py fingerprint (no 'runs')")
    return doc


def differences(a: dict, b: dict) -> list[str]:
    out = []
    for name in sorted(set(a["matrices"]) | set(b["matrices"])):
        ma, mb = a["matrices"].get(name), b["matrices"].get(name)
        if ma is None or mb is None:
            out.append(f"matrix {name} only in {'A' if mb is None else 'B'}")
        elif len(ma) != len(mb) or any(len(ra) != len(rb) for ra, rb in zip(ma, mb)):
            out.append(f"matrix {name} has another shape")
        else:
            for i, (ra, rb) in enumerate(zip(ma, mb)):
                for j, (va, vb) in enumerate(zip(ra, rb)):
                    if va != vb:
                        show = [v if v is None else float.fromhex(v) for v in (va, vb)]
                        out.append(f"matrix {name}[{i}][{j}]: {show[0]!r} vs {show[1]!r}")
    if a["learner_sha256"] != b["learner_sha256"]:
        ta, tb = a["tensors"], b["tensors"]
        for path in sorted(set(ta) | set(tb)):
            if path not in tb or path not in ta:
                out.append(f"state {path} only in {'A' if path not in tb else 'B'}")
            elif ta[path] != tb[path]:
                out.append(f"state {path} differs")
        if list(ta) != list(tb) and set(ta) == set(tb):
            out.append("state holds the same paths in another order")
        if len(out) == 0:
            out.append("learner state hash differs")
    return out


def compare(path_a: Path, path_b: Path, record_as: str | None = None) -> int:
    a, b = read(path_a), read(path_b)
    print(f"A: {path_a} (commit {a.get('git_commit')}, {a.get('source')})")
    print(f"B: {path_b} (commit {b.get('git_commit')}, {b.get('source')})")
    if a.get("machine") != b.get("machine"):
        print(f"note: captured on different machines/versions: {a.get('machine')} vs {b.get('machine')}")
    differs = False
    for label in [*a["runs"], *(k for k in b["runs"] if k not in a["runs"])]:
        if label not in a["runs"] or label not in b["runs"]:
            print(f"{label}: only in {'A' if label in a['runs'] else 'B'}")
            differs = True
            continue
        found = differences(a["runs"][label], b["runs"][label])
        differs |= bool(found)
        print(f"{label}: {'identical' if not found else 'DIFFERS'}")
        for line in found:
            print(f"    {line}")
    if record_as is not None:
        _record(a, b, path_a, path_b, record_as)
    return 1 if differs else 0


def _record(a: dict, b: dict, path_a: Path, path_b: Path, what: str) -> None:
    """One results.json record: how many runs came out bit-identical (the fingerprint files hold the hashes)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from records import merge, record  # noqa: PLC0415
    from report import render  # noqa: PLC0415

    labels = [label for label in a["runs"] if label in b["runs"]]
    same = [label for label in labels if not differences(a["runs"][label], b["runs"][label])]
    scenario = f"{len(labels)} short runs (2 tasks x 30 it, CPU, 1 thread): {', '.join(labels)}"
    method = f"{what}: {str(a.get('git_commit'))[:7]} vs {str(b.get('git_commit'))[:7]}"
    command = f"python benchmarks/identity.py --compare {path_a} {path_b} --record {what!r}"
    rec = record("Refactor identity", scenario, method, "runs_bit_identical", len(same), [0], 0.0, command,
                 runs=len(labels), fingerprints=f"{path_a}, {path_b}")
    results = Path(__file__).resolve().parent / "results.json"
    results.with_name("RESULTS.md").write_text(render(merge([rec], results)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help=f"runs to do (default all): {', '.join(RUNS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two fingerprint files")
    parser.add_argument("--record", metavar="WHAT", help="with --compare: record the outcome in results.json as WHAT")
    args = parser.parse_args(argv)
    try:
        if args.compare:
            return compare(*args.compare, record_as=args.record)
        if args.out is None:
            raise BadInput("give --out FILE.json or --compare A.json B.json")
        unknown = [label for label in args.only or [] if label not in RUNS]
        if unknown:
            raise BadInput(f"unknown label {unknown[0]!r}; known: {', '.join(RUNS)}")
        if args.threads < 1:
            raise BadInput("--threads must be at least 1")
        if not args.out.parent.is_dir():
            raise BadInput(f"folder {args.out.parent} does not exist")
        from hypercl_core.errors import UserError
        try:
            capture(args.out, args.only or list(RUNS), args.threads)
        except UserError as exc:  # a preset that refuses an override, no MNIST under $HYPERCL_DATA, ...
            raise BadInput(str(exc).splitlines()[0]) from None
        return 0
    except BadInput as exc:
        print(f"identity.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
