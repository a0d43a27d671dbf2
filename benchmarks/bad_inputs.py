"""Bad inputs through the real `hypercl` command: one line on stderr, exit 2, nothing written.

    python benchmarks/bad_inputs.py [--only CASE ...] [--out runs/benchmarks/bad_inputs]

Each case runs `python -m orchestrator.cli ...` in a subprocess, in a fresh
temporary folder that is also its working directory (its runs folder is
`runs/` there, named with --runs-dir where the command takes one), with
MLFLOW_TRACKING_URI, RAY_ADDRESS and HYPERCL_FAILPOINT removed from the
environment unless the case sets them. Per case it measures:

- the exit code (expected 2);
- the number of non-empty stderr lines (expected 1);
- whether a Python traceback appeared on stdout or stderr (expected no);
- the files created, changed or removed anywhere in the temporary folder
  (expected none; every file is hashed before and after), and for the resume
  cases whether the folder being resumed changed (expected no);
- for the non-tensor checkpoint, whether the file its pickle would create
  exists afterwards (expected no). The same payload is loaded once by this
  script with weights_only=False into a separate folder, to show it is live.

A case passes when all its checks hold. Nothing here starts Ray or a sweep,
so it runs in seconds a case. The summary table is printed, `cases.json` goes
to --out, and one record per case plus a summary record are merged into
benchmarks/results.json (`--results`), RESULTS.md rendered again from it
(`--results-md`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from chaos import cpu_model, nproc  # noqa: E402
from records import add_record_args, machine, merge, record  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BENCHMARK = "Bad inputs"
METHOD = "hypercl CLI in a subprocess, fresh temp folder"
CLEARED = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HYPERCL_FAILPOINT")


@dataclass
class Case:
    name: str
    describe: str  # the command as a user would type it (paths shortened)
    args: Callable[[Path], list[str]]  # the temp folder -> CLI arguments
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], dict] | None = None  # makes the inputs; returns facts for the checks
    watched: Callable[[Path], Path] | None = None  # the folder a resume case must leave unchanged
    forbidden: Callable[[Path], Path] | None = None  # a file that must not exist afterwards
    expect: str = ""  # a fragment of the one stderr line, shown for the reader (not one of the four checks)


# ---- fixtures ------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _mlflow_database(tmp: Path) -> dict:
    """An MLflow SQLite store with one experiment, made by MLflow itself (in its own process and folder)."""
    folder = tmp / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from mlflow.tracking import MlflowClient; "
            "MlflowClient(sys.argv[1]).create_experiment('e', artifact_location=sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")],
                   cwd=folder, env=_env({}), check=True, capture_output=True, timeout=300)
    return {}


def _old_layout_sweep(tmp: Path) -> dict:
    """A sweep folder as an hypercl before LAYOUT 2 wrote it: sweep.yaml without `layout`, plus stores."""
    import yaml  # noqa: PLC0415

    from hypercl_core.config import load_config  # noqa: PLC0415

    folder = tmp / "runs" / "sweeps" / "old"
    base = load_config("split_mnist_cl1", ["benchmark.num_tasks=2", "train.iters_per_task=20", "device=cpu"])
    spec = {"kind": "sweep", "name": "old", "base_config": base.model_dump(), "metric": "final_acc", "mode": "max",
            "num_samples": 2, "max_concurrent": 1, "scheduler": "fifo", "seed": 0, "space_name": "smoke",
            "preset": "split_mnist_cl1", "created": "2026-10-01T12:00:00"}
    _write(folder / "sweep.yaml", yaml.safe_dump(spec, sort_keys=False))
    # what such a folder also held: Tune's saved experiment state (never read by today's hypercl)
    _write(folder / "tune" / "old" / "experiment_state-2026-10-01_12-00-00.json", '{"trial_data": []}\n')
    return {}


class _CreatesAFile:
    """Unpickling this object opens `path` for writing, i.e. creates the file: code run by a load."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _poisoned_run(tmp: Path) -> dict:
    """A run folder (its config valid) whose checkpoint.pt is a pickle that would create a file when loaded."""
    import torch  # noqa: PLC0415

    from hypercl_core.config import load_config  # noqa: PLC0415

    run = tmp / "runs" / "r"
    cfg = load_config("split_mnist_cl1", ["benchmark.num_tasks=2", "train.iters_per_task=5", "target.hidden=[16]",
                                          "device=cpu"])
    _write(run / "config.yaml", cfg.to_yaml())
    state = {"tasks_done": 1, "learner": {"w": torch.zeros(3)}, "payload": _CreatesAFile(tmp / "pwned.txt")}
    torch.save(state, run / "checkpoint.pt")
    # the same payload, loaded without weights_only in a folder of its own: it does create its file
    with tempfile.TemporaryDirectory(prefix="hypercl-payload-") as other:
        probe = Path(other) / "checkpoint.pt"
        torch.save({"payload": _CreatesAFile(Path(other) / "pwned.txt")}, probe)
        torch.load(probe, weights_only=False)
        live = (Path(other) / "pwned.txt").is_file()
    return {"payload_live": live}


def _data_root() -> str:
    from hypercl_core.data.mnist import resolve_data_root  # noqa: PLC0415

    return str(resolve_data_root().resolve())


# ---- the cases -----------------------------------------------------------------------------------------------

SMOKE = ["sweep", "--space", "smoke", "--preset", "split_mnist_cl1"]


def cases() -> list[Case]:
    def runs(tmp: Path) -> str:
        return str(tmp / "runs")

    def config_file(name: str, text: str) -> Case:
        return Case(name, f"hypercl run --config {name}.yaml  ({text!r})",
                    lambda tmp: ["run", "--config", str(tmp / "inputs" / f"{name}.yaml"), "--runs-dir", runs(tmp),
                                 "--no-progress", "--set", "benchmark.num_tasks=1", "--set", "train.iters_per_task=1"],
                    prepare=lambda tmp: _write(tmp / "inputs" / f"{name}.yaml", text) or {},
                    expect="hypercl presets")

    return [
        config_file("empty", ""),
        config_file("comments_only", "# nothing but a comment\n# and another\n"),
        config_file("yaml_list", "- a list\n- of two\n"),
        Case("missing_mnist", "hypercl run --config split_mnist_cl1 --data-root EMPTY_DIR (no MNIST in it)",
             lambda tmp: ["run", "--config", "split_mnist_cl1", "--data-root", str(tmp / "inputs" / "no_mnist"),
                          "--runs-dir", runs(tmp), "--no-progress"],
             prepare=lambda tmp: (tmp / "inputs" / "no_mnist").mkdir(parents=True) or {}, expect="MNIST file"),
        Case("study_storage_unreachable", "hypercl sweep ... --study-storage postgresql://nobody@127.0.0.1:9/none",
             lambda tmp: [*SMOKE, "--study-storage", "postgresql://nobody@127.0.0.1:9/none", "--runs-dir", runs(tmp)],
             expect="cannot open the study storage"),
        Case("study_storage_is_mlflow_db", "hypercl sweep ... --study-storage sqlite:///MLFLOW_DB (an MLflow store)",
             lambda tmp: [*SMOKE, "--study-storage", f"sqlite:///{tmp / 'inputs' / 'mlflow.db'}", "--runs-dir",
                          runs(tmp)],
             prepare=_mlflow_database, expect="is an MLflow database"),
        Case("ray_client_without_study_storage",
             "hypercl sweep ... --address ray://127.0.0.1:10001 --tracking-uri http://127.0.0.1:9 --storage s3://b/p "
             "--gpus-per-subsystem 0",
             lambda tmp: [*SMOKE, "--address", "ray://127.0.0.1:10001", "--tracking-uri", "http://127.0.0.1:9",
                          "--storage", "s3://b/p", "--gpus-per-subsystem", "0", "--runs-dir", runs(tmp)],
             expect="pass --study-storage postgresql://"),
        Case("best_tracking_env_unreachable", "MLFLOW_TRACKING_URI=http://127.0.0.1:9 hypercl best --name x",
             lambda tmp: ["best", "--name", "x", "--runs-dir", runs(tmp)],
             env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, expect="is unreachable"),
        Case("ray_address_env_without_server",
             "RAY_ADDRESS=127.0.0.1:6379 hypercl sweep --space smoke --preset split_mnist_cl1",
             lambda tmp: [*SMOKE, "--runs-dir", runs(tmp)], env={"RAY_ADDRESS": "127.0.0.1:6379"},
             expect="--tracking-uri http://"),
        Case("resume_old_layout_sweep", "hypercl sweep --resume OLD_SWEEP_DIR (sweep.yaml without layout)",
             lambda tmp: ["sweep", "--resume", str(tmp / "runs" / "sweeps" / "old"), "--runs-dir", runs(tmp)],
             prepare=_old_layout_sweep, watched=lambda tmp: tmp / "runs" / "sweeps" / "old",
             expect="older hypercl"),
        Case("resume_non_tensor_checkpoint", "hypercl run --resume RUN_DIR (checkpoint.pt pickles open(FILE, 'w'))",
             lambda tmp: ["run", "--resume", str(tmp / "runs" / "r"), "--data-root", _data_root(), "--no-progress"],
             prepare=_poisoned_run, watched=lambda tmp: tmp / "runs" / "r",
             forbidden=lambda tmp: tmp / "pwned.txt", expect="holds objects other than tensors"),
        # a few more of the same family (tests/orchestrator/test_sweep.py), through the real command
        Case("tracking_uri_unreachable", "hypercl sweep ... --tracking-uri http://127.0.0.1:9",
             lambda tmp: [*SMOKE, "--tracking-uri", "http://127.0.0.1:9", "--runs-dir", runs(tmp)],
             expect="is unreachable"),
        Case("resume_not_a_sweep_folder", "hypercl sweep --resume EMPTY_DIR",
             lambda tmp: ["sweep", "--resume", str(tmp / "runs" / "sweeps" / "empty"), "--runs-dir", runs(tmp)],
             prepare=lambda tmp: (tmp / "runs" / "sweeps" / "empty").mkdir(parents=True) or {},
             watched=lambda tmp: tmp / "runs" / "sweeps" / "empty", expect="is not a sweep folder"),
        Case("rerun_cluster_without_storage", "hypercl rerun split_mnist_cl1 --address auto --tracking-uri http://127.0.0.1:9",
             lambda tmp: ["rerun", "split_mnist_cl1", "--address", "auto", "--tracking-uri", "http://127.0.0.1:9",
                          "--runs-dir", runs(tmp)], expect="--storage s3://"),
        Case("max_concurrent_zero", "hypercl sweep ... --max-concurrent 0",
             lambda tmp: [*SMOKE, "--max-concurrent", "0", "--runs-dir", runs(tmp)], expect="--max-concurrent"),
        # the CLI's own options (tests/orchestrator/test_cli.py); the cases above keep the old --preset spelling,
        # which still works
        Case("usage_error", "hypercl best --format xml",
             lambda tmp: ["best", "--format", "xml", "--runs-dir", runs(tmp)], expect="invalid choice: 'xml'"),
        Case("quiet_and_verbose", "hypercl run --config split_mnist_cl1 -q -v",
             lambda tmp: ["run", "--config", "split_mnist_cl1", "-q", "-v", "--runs-dir", runs(tmp)],
             expect="not allowed with argument -q/--quiet"),
        Case("print_config_of_a_resumed_run", "hypercl run --resume RUN_DIR --print-config",
             lambda tmp: ["run", "--resume", str(tmp / "runs" / "r"), "--print-config", "--runs-dir", runs(tmp)],
             expect="drop --print-config"),
        Case("print_config_bad_set", "hypercl run --config split_mnist_cl1 --print-config --set train.lr=fast",
             lambda tmp: ["run", "--config", "split_mnist_cl1", "--print-config", "--set", "train.lr=fast",
                          "--runs-dir", runs(tmp)], expect="config key 'train.lr'"),
        Case("resume_with_set", "hypercl sweep --resume SWEEP_DIR --set train.lr=0.1",
             lambda tmp: ["sweep", "--resume", str(tmp / "runs" / "sweeps" / "old"), "--set", "train.lr=0.1",
                          "--runs-dir", runs(tmp)],
             prepare=_old_layout_sweep, watched=lambda tmp: tmp / "runs" / "sweeps" / "old", expect="drop --set"),
        Case("rerun_two_configs", "hypercl rerun split_mnist_cl1 --config split_mnist_cl2",
             lambda tmp: ["rerun", "split_mnist_cl1", "--config", "split_mnist_cl2", "--runs-dir", runs(tmp)],
             expect="pass one, as --config"),
        Case("rerun_bad_set", "hypercl rerun --config split_mnist_cl1 --set train.lr=fast",
             lambda tmp: ["rerun", "--config", "split_mnist_cl1", "--set", "train.lr=fast", "--runs-dir", runs(tmp)],
             expect="config key 'train.lr'"),
    ]


# ---- measuring -----------------------------------------------------------------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({"PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]),
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below `folder` ('<dir>' for an empty folder)."""
    found = {}
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() and not any(path.iterdir()):
            found[rel + "/"] = "<dir>"
    return found


def _digest(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def measure(case: Case, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hypercl-bad-{case.name}-") as name:
        tmp = Path(name).resolve()
        facts = case.prepare(tmp) if case.prepare else {}
        before = _hashes(tmp)
        watched_before = _digest(_hashes(case.watched(tmp))) if case.watched else None
        args = case.args(tmp)
        started = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp, env=_env(case.env),
                                  capture_output=True, text=True, timeout=timeout, check=False)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code = "timeout"
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        wall = time.monotonic() - started
        after = _hashes(tmp)
        written = sorted({p for p in after if before.get(p) != after[p]} | {p for p in before if p not in after})
        err_lines = [ln for ln in err.splitlines() if ln.strip()]
        result = {
            "case": case.name, "command": case.describe, "argv": ["hypercl", *_shorten(args, tmp)],
            "env": case.env, "exit_code": code, "stderr_lines": len(err_lines),
            "traceback": "Traceback (most recent call last)" in out + err,
            "files_written": len(written), "written": written[:20],
            "stdout_lines": len([ln for ln in out.splitlines() if ln.strip()]),
            "stderr": [_shorten_text(ln, tmp) for ln in err_lines[:12]], "expect": case.expect,
            "message_matches": bool(case.expect) and case.expect in err, "wall_s": round(wall, 2), **facts,
        }
        if case.watched:
            after_digest = _digest(_hashes(case.watched(tmp)))
            result.update(folder_hash_before=watched_before, folder_hash_after=after_digest,
                          folder_changed=after_digest != watched_before)
        if case.forbidden:
            result["forbidden_file_exists"] = case.forbidden(tmp).exists()
        result["passed"] = (code == 2 and len(err_lines) == 1 and not result["traceback"] and not written
                            and not result.get("folder_changed", False)
                            and not result.get("forbidden_file_exists", False))
        return result


def _shorten(args: list[str], tmp: Path) -> list[str]:
    return [_shorten_text(a, tmp) for a in args]


def _shorten_text(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "$TMP")


def table(rows: list[dict]) -> str:
    width = max(len(r["case"]) for r in rows)
    head = f"{'case':<{width}} {'exit':>4} {'err':>3} {'tb':>3} {'files':>5} {'folder':>7} {'s':>5} pass"
    lines = [head]
    for r in rows:
        folder = "-" if "folder_changed" not in r else ("CHANGED" if r["folder_changed"] else "same")
        if r.get("forbidden_file_exists"):
            folder += "+FILE"
        lines.append(f"{r['case']:<{width}} {r['exit_code']!s:>4} {r['stderr_lines']:>3} "
                     f"{'YES' if r['traceback'] else 'no':>3} {r['files_written']:>5} {folder:>7} {r['wall_s']:>5.1f} "
                     f"{'yes' if r['passed'] else 'NO'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    all_cases = cases()
    parser.add_argument("--only", nargs="+", metavar="CASE", choices=[c.name for c in all_cases],
                        help="run only these cases (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/bad_inputs"))
    parser.add_argument("--timeout", type=float, default=180, help="seconds one command may take")
    add_record_args(parser)
    args = parser.parse_args()
    chosen = [c for c in all_cases if not args.only or c.name in args.only]

    wall_start = time.monotonic()
    rows = []
    for case in chosen:
        row = measure(case, args.timeout)
        rows.append(row)
        print(f"{case.name}: exit {row['exit_code']}, {row['stderr_lines']} stderr line(s) in {row['wall_s']:.1f} s"
              f"{'' if row['passed'] else '  <-- FAILED a check'}: {(row['stderr'] or [''])[-1][:150]}", flush=True)
    wall = time.monotonic() - wall_start
    passed = sum(r["passed"] for r in rows)

    print()
    print(table(rows))
    print(f"\n{passed}/{len(rows)} cases passed all checks (exit 2, one stderr line, no traceback, nothing written"
          f"{', resumed folder unchanged, no payload file' if any('folder_changed' in r for r in rows) else ''}); "
          f"{wall:.0f} s")
    for r in rows:
        if not r["passed"]:
            print(f"  {r['case']}: {json.dumps({k: r[k] for k in r if k not in ('argv', 'env')})}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "cases.json").write_text(json.dumps({"cases": rows, "passed": passed, "total": len(rows),
                                                "wall_s": round(wall, 1)}, indent=1) + "\n")
    print(f"per-case details: {out / 'cases.json'}")

    where = f"{machine()}, {cpu_model()}, nproc {nproc()}"
    base_command = ["python", "benchmarks/bad_inputs.py", *(["--only", *args.only] if args.only else [])]

    def rec(scenario: str, metric: str, value: float, wall_s: float, command: str, **extra) -> dict:
        return {**record(BENCHMARK, scenario, METHOD, metric, value, [], wall_s, command, **extra), "machine": where}

    records = []
    for r in rows:
        extra = {"exit_code": r["exit_code"], "stderr_lines": r["stderr_lines"],
                 "traceback": "yes" if r["traceback"] else "no", "files_written": r["files_written"]}
        if "folder_changed" in r:
            extra["resumed_folder_changed"] = "yes" if r["folder_changed"] else "no"
        if "forbidden_file_exists" in r:
            extra["payload_file_created"] = "yes" if r["forbidden_file_exists"] else "no"
            extra["payload_live_when_unpickled"] = "yes" if r.get("payload_live") else "no"
        records.append(rec(r["command"], "checks_passed", float(r["passed"]), r["wall_s"],
                           shlex.join([*base_command[:2], "--only", r["case"]]), **extra))
    if not args.only:
        records.append(rec(f"all {len(rows)} bad-input cases", "cases_passed", passed, wall, shlex.join(base_command),
                           total=len(rows), failed=[r["case"] for r in rows if not r["passed"]]))
    merged = merge(records, args.results)
    import report  # noqa: PLC0415

    args.results_md.write_text(report.render(merged))
    print(f"recorded in {args.results} and {args.results_md}")


if __name__ == "__main__":
    main()
