"""Faults below the driver: trial workers SIGKILLed, the MLflow server SIGKILLed and restarted, mid-rerun.

    python benchmarks/faults.py [--only worker_kill outage] [--worker-kills 3] [--outage-s 30] [--seeds 2]
                                [--out runs/benchmarks/faults]

Both scenarios run the real command on a local Ray, in a subprocess in its own
process group: `python -m orchestrator.cli rerun CONFIG.yaml --seeds N ...`,
CONFIG being split_mnist_cl1 with benchmark.num_tasks=3,
train.iters_per_task=400, target.hidden=[32], train.eval_batch_size=5000,
device=cpu (written with `load_config(...).to_yaml()` to --out; `--set`
adds overrides). A watcher thread here reads the rerun's MLflow store (its
SQLite file, read-only) every 0.3 s.

worker_kill: a rerun of `--seeds` seeds, one trial at a time. The watcher
   SIGKILLs the pid in a trial run's tag `hypercl.worker_pid` (the Ray worker
   running the trial; checked to be a `ray::` process) once that run is
   RUNNING and its latest `task` metric is the kill's task. `--worker-kills`
   kills are dealt round-robin over the trials (trial 0, 1, ..., 0, ...); a
   trial's kills land at successive tasks, its first at task 1 + (its index
   mod (tasks - 1)) where its share leaves room, so trials are killed at
   different tasks (default 3 kills, 2 seeds: v0000 after tasks 1 and 2, v0001
   after task 2). Tune retries a trial twice (FailureConfig(max_failures=2)),
   so at most min(2, tasks - 1) kills per trial. An uninterrupted twin rerun
   of the same config runs first in the same session; time lost per kill is
   (wall of the killed rerun - wall of the twin) / kills.
outage: a real `mlflow server` (SQLite backend, --workers 1,
   MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, a free loopback port) is the
   rerun's --tracking-uri (`--seeds` seeds, two at a time). Once a trial has
   logged task 1 the server's process group is SIGKILLed, kept down
   `--outage-s` seconds, and started again on the same port with the same
   backend; the outage is measured from the kill to the first /health answer.

Audit, from MLflow alone once the rerun exited: trials with a FINISHED run
out of the total, runs per trial key (tag hypercl.trial_id; 1 expected),
extra entries at an already logged step in the full history of every metric
of every run (0 expected), FINISHED runs whose `task` history is not exactly
1..tasks, the parent run's status, the exit code; for killed trials their
hypercl.resumed_from_task (expected: the task of their last kill) and whether
the run's final worker pid differs from every killed pid; for the outage the
metric entries whose client timestamp lies inside the outage window (logged
while the server was down, landed once) and runs lacking results.json or
matrix.png artifacts.

Wall times are comparable only on a quiet machine: every 2 s the script looks
for a test suite (pytest) or another benchmark running beside a timed rerun,
and the wall-time records say `machine_quiet: no (...)` when one did.

The summary table is printed, `audit.json` goes to --out, and the figures
are merged into benchmarks/results.json (`--results`) and RESULTS.md is
rendered again from it (`--results-md`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from chaos import Driver, _alive, _descendants, _name, cpu_model, nproc  # noqa: E402
from records import add_record_args, machine, merge, record  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SETTINGS = ["benchmark.num_tasks=3", "train.iters_per_task=400", "target.hidden=[32]", "train.eval_batch_size=5000",
            "device=cpu"]
BENCHMARK = "Trial faults"
KIND, TRIAL_ID, WORKER_PID, RESUMED = "hypercl.kind", "hypercl.trial_id", "hypercl.worker_pid", "hypercl.resumed_from_task"
MAX_FAILURES = 2  # orchestrator/sweep.py: tune.FailureConfig(max_failures=2)
POLL_S = 0.3
SETTLE_S = 30.0  # how long an exited rerun's processes (its local Ray) get to go


# ---- the rerun's MLflow store, read while it runs ------------------------------------------------------------


def live_trials(db: Path, experiment: str) -> dict[str, dict]:
    """Trial key -> {status, pid, task} from the SQLite store (read-only), {} while it cannot be read."""
    if not db.is_file():
        return {}
    sql = ("select k.value, r.status, p.value, lm.value from runs r "
           "join experiments e on e.experiment_id = r.experiment_id and e.name = ? "
           "join tags kind on kind.run_uuid = r.run_uuid and kind.key = ? and kind.value = 'trial' "
           "join tags k on k.run_uuid = r.run_uuid and k.key = ? "
           "left join tags p on p.run_uuid = r.run_uuid and p.key = ? "
           "left join latest_metrics lm on lm.run_uuid = r.run_uuid and lm.key = 'task'")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as con:
            rows = con.execute(sql, (experiment, KIND, TRIAL_ID, WORKER_PID)).fetchall()
    except sqlite3.Error:  # not created yet, or locked for a moment by a writer
        return {}
    return {key: {"status": status, "pid": int(pid) if pid else None, "task": int(task) if task is not None else 0}
            for key, status, pid, task in rows}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


BUSY = ("pytest", "benchmarks/chaos.py")  # other heavy work on this machine that would skew the timings


def foreign_busy(mine: set[int]) -> list[str]:
    """Command lines of test suites or benchmarks running beside this one (not this script's processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        line = _cmdline(int(entry.name))
        if any(b in line for b in BUSY) and "benchmarks/faults.py" not in line:
            found.append(f"{entry.name} {line[:100]}")
    return found


class Tree:
    """The rerun's processes (its local Ray included), refreshed while it runs, so they can be waited for."""

    def __init__(self, driver: Driver):
        self.driver = driver
        self.seen: dict[int, int] = {}
        self.busy: list[str] = []  # foreign_busy() seen while it ran
        self.at = 0.0

    def refresh(self, every: float = 2.0) -> None:
        if time.monotonic() - self.at >= every and self.driver.proc.poll() is None:
            self.seen.update(dict(_descendants(self.driver.proc.pid)))
            for line in foreign_busy({os.getpid(), self.driver.proc.pid, *self.seen}):
                if line not in self.busy:
                    self.busy.append(line)
            self.at = time.monotonic()

    def settle(self) -> tuple[float, list[str]]:
        """Wait until every process seen is gone; SIGKILL those left after SETTLE_S. (seconds, their names)"""
        start = time.monotonic()
        while time.monotonic() < start + SETTLE_S:
            alive = [p for p in self.seen.items() if _alive(p)]
            if not alive:
                return time.monotonic() - start, []
            time.sleep(0.2)
        alive = [p for p in self.seen.items() if _alive(p)]
        names = [_name(pid) for pid, _ in alive]
        for pid, _ in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return time.monotonic() - start, names


def run_rerun(args: list[str], log: Path, timeout: float, watch=None) -> dict:
    """One rerun to its end, `watch(driver, tree)` polled alongside; its exit code, wall time and leftovers."""
    driver = Driver(args, log)
    tree = Tree(driver)
    stop = threading.Event()
    errors: list[str] = []

    def loop() -> None:
        while not stop.is_set() and driver.proc.poll() is None:
            tree.refresh()
            if watch is not None:
                try:
                    watch(driver)
                except Exception as exc:  # noqa: BLE001 - a watcher bug must not hang the benchmark
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
            stop.wait(POLL_S)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    code = driver.wait(timeout)
    timed_out = code is None
    if timed_out:
        driver.kill()
        code = driver.proc.returncode
    wall = driver.elapsed()
    stop.set()
    thread.join(timeout=30)
    settle_s, leftover = tree.settle()
    return {"exit_code": code, "wall_s": round(wall, 1), "timed_out": timed_out, "settle_s": round(settle_s, 1),
            "leftover_procs": leftover, "watcher_errors": errors, "busy_beside": tree.busy, "log": str(log), "last_line": driver.last_line()}


# ---- the audit -----------------------------------------------------------------------------------------------


def audit(uri: str, name: str, tasks: int, total: int, artifacts: bool = False) -> dict:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return {"runs": 0, "finished": 0, "total": total, "runs_per_key": {}, "max_runs_per_key": 0,
                "repeated_entries": 0, "repeat_detail": [], "tasks_missing": 0, "parents": [], "entries": [],
                "resumed_from_task": {}, "worker_pid": {}, "missing_artifacts": [], "metrics_checked": 0}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                              max_results=50_000)
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'rerun'")
    by_key = defaultdict(list)
    for run in runs:
        by_key[run.data.tags.get(TRIAL_ID, "?")].append(run)
    repeated, missing, checked = 0, 0, 0
    detail: list[str] = []
    entries: list[tuple[str, str, int, float]] = []  # (trial key, metric, step, client timestamp s)
    missing_artifacts: list[str] = []
    for run in runs:
        key = run.data.tags.get(TRIAL_ID, "?")
        for metric in sorted(run.data.metrics):
            history = client.get_metric_history(run.info.run_id, metric)
            checked += 1
            steps = [m.step for m in history]
            entries += [(key, metric, m.step, m.timestamp / 1000) for m in history]
            extra = len(steps) - len(set(steps))
            if extra:
                repeated += extra
                detail.append(f"{key} {metric}: steps {sorted(steps)} values {[m.value for m in history]}")
        if run.info.status == "FINISHED":
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "task"))
            missing += steps != list(range(1, tasks + 1))
        if artifacts:
            have = {a.path for a in client.list_artifacts(run.info.run_id)}
            if not {"results.json", "matrix.png"} <= have:
                missing_artifacts.append(f"{key}: {sorted(have)}")
    finished = sum(any(r.info.status == "FINISHED" for r in rs) for rs in by_key.values())
    return {
        "runs": len(runs), "finished": finished, "total": total,
        "statuses": {key: [r.info.status for r in rs] for key, rs in sorted(by_key.items())},
        "runs_per_key": {key: len(rs) for key, rs in sorted(by_key.items())},
        "max_runs_per_key": max((len(rs) for rs in by_key.values()), default=0),
        "repeated_entries": repeated, "repeat_detail": detail[:20], "tasks_missing": missing,
        "metrics_checked": checked, "parents": [p.info.status for p in parents], "entries": entries,
        "resumed_from_task": {key: rs[0].data.tags.get(RESUMED) for key, rs in sorted(by_key.items())},
        "worker_pid": {key: rs[0].data.tags.get(WORKER_PID) for key, rs in sorted(by_key.items())},
        "missing_artifacts": missing_artifacts,
    }


def clean(a: dict, exit_code: int) -> bool:
    return (exit_code == 0 and a["finished"] == a["total"] and a["runs"] == a["total"] and a["max_runs_per_key"] == 1
            and a["repeated_entries"] == 0 and a["tasks_missing"] == 0 and a["parents"] == ["FINISHED"]
            and not a["missing_artifacts"])


def rerun_args(config: Path, seeds: int, concurrency: int, runs: Path, name: str, extra: list[str] = ()) -> list[str]:
    return ["rerun", "--config", str(config), "--seeds", str(seeds), "--max-concurrent", str(concurrency), "--runs-dir", str(runs),
            "--name", name, *extra]


# ---- worker kills --------------------------------------------------------------------------------------------


def kill_plan(kills: int, trials: int, tasks: int) -> list[tuple[str, int]]:
    """(trial key, task after which its worker is killed), dealt round-robin; a trial's kills at successive tasks."""
    per_trial = [kills // trials + (i < kills % trials) for i in range(trials)]
    room = min(MAX_FAILURES, tasks - 1)
    if max(per_trial) > room:
        raise SystemExit(f"--worker-kills {kills} over {trials} trials puts {max(per_trial)} kills on one trial; at "
                         f"most {room} fit ({tasks} tasks, Tune retries a trial {MAX_FAILURES} times)")
    plan = []
    for i, count in enumerate(per_trial):
        first = min(1 + i % (tasks - 1), tasks - count)
        plan += [(f"v{i:04d}", first + j) for j in range(count)]
    return plan


class WorkerKiller:
    def __init__(self, db: Path, name: str, plan: list[tuple[str, int]], delay_s: float):
        self.db, self.name, self.delay_s = db, name, delay_s
        self.pending = list(plan)
        self.kills: list[dict] = []
        self.skipped: list[str] = []  # pids in a tag that were not a live Ray worker

    def __call__(self, driver: Driver) -> None:
        if not self.pending:
            return
        trials = live_trials(self.db, self.name)
        killed = {k["pid"] for k in self.kills}
        for key, task in list(self.pending):
            t = trials.get(key)
            if not t or t["status"] != "RUNNING" or t["task"] != task or not t["pid"] or t["pid"] in killed:
                continue
            seen = driver.elapsed()
            if self.delay_s:
                time.sleep(self.delay_s)
            title = _cmdline(t["pid"])
            if not (title.startswith("ray::") or "default_worker.py" in title):
                note = f"{key} after task {task}: pid {t['pid']} is {title or 'gone'!r}, not a Ray worker"
                if note not in self.skipped:
                    self.skipped.append(note)
                continue
            os.kill(t["pid"], signal.SIGKILL)
            self.kills.append({"trial": key, "after_task": task, "pid": t["pid"], "process": title[:80],
                               "seen_at_s": round(seen, 1), "killed_at_s": round(driver.elapsed(), 1)})
            self.pending.remove((key, task))
            print(f"  killed {key}'s worker (pid {t['pid']}, {title[:40]}) after task {task} at "
                  f"{driver.elapsed():.1f} s", flush=True)
            return  # one kill per poll: the next target is read afresh


def worker_kill(args, config: Path, out: Path, logs: Path, stamp: str, tasks: int) -> dict:
    runs = out / "runs"
    plan = kill_plan(args.worker_kills, args.seeds, tasks)
    twin_name, name = f"wk-{stamp}-twin", f"wk-{stamp}"
    print(f"worker_kill: uninterrupted twin rerun {twin_name} ({args.seeds} seeds, concurrency 1)", flush=True)
    twin = run_rerun(rerun_args(config, args.seeds, 1, runs, twin_name), logs / f"{twin_name}.log", args.timeout)
    twin_audit = audit(f"sqlite:///{runs / 'sweeps' / twin_name / 'mlflow.db'}", twin_name, tasks, args.seeds)
    print(f"  twin exit {twin['exit_code']} in {twin['wall_s']} s; finished {twin_audit['finished']}/{args.seeds}",
          flush=True)

    print(f"worker_kill: rerun {name} with {len(plan)} worker kills {plan}", flush=True)
    killer = WorkerKiller(runs / "sweeps" / name / "mlflow.db", name, plan, args.kill_delay_s)
    faulted = run_rerun(rerun_args(config, args.seeds, 1, runs, name), logs / f"{name}.log", args.timeout, killer)
    a = audit(f"sqlite:///{runs / 'sweeps' / name / 'mlflow.db'}", name, tasks, args.seeds)
    last_kill = {}
    for k in killer.kills:
        last_kill[k["trial"]] = k["after_task"]
    killed_pids = defaultdict(set)
    for k in killer.kills:
        killed_pids[k["trial"]].add(k["pid"])
    resumed = {key: {"resumed_from_task": a["resumed_from_task"].get(key), "last_kill_after_task": task,
                     "final_worker_pid": a["worker_pid"].get(key),
                     "new_worker": a["worker_pid"].get(key) not in {str(p) for p in killed_pids[key]}}
               for key, task in sorted(last_kill.items())}
    landed = len(killer.kills)
    lost = faulted["wall_s"] - twin["wall_s"]
    ok = (clean(a, faulted["exit_code"]) and landed == len(plan)
          and all(str(r["resumed_from_task"]) == str(r["last_kill_after_task"]) and r["new_worker"]
                  for r in resumed.values()))
    return {"plan": plan, "kills": killer.kills, "kills_missed": killer.pending, "skipped": killer.skipped,
            "twin": twin, "twin_audit": _strip(twin_audit), "twin_clean": clean(twin_audit, twin["exit_code"]),
            "run": faulted, "audit": _strip(a), "resumed": resumed, "landed": landed,
            "time_lost_s": round(lost, 1), "time_lost_per_kill_s": round(lost / landed, 1) if landed else None,
            "clean": ok}


# ---- the tracking server outage ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on a fixed loopback port, in its own process group, SIGKILLed as a crashed host would be."""

    def __init__(self, folder: Path, logs: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.db = folder / "server.db"
        self.cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.db}",
                    "--artifacts-destination", str(folder / "server-artifacts"), "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", "1"]
        self.env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.logs = logs
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 120) -> float:
        """Start it and wait for /health; the seconds that took."""
        self.starts += 1
        began = time.monotonic()
        with (self.logs / f"mlflow-server-{self.starts}.log").open("w") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        while time.monotonic() < began + timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"mlflow server exited {self.proc.returncode}; see {log.name}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.uri + "/health", timeout=2).read()
                return time.monotonic() - began
            time.sleep(0.2)
        self.kill()
        raise SystemExit(f"mlflow server did not answer /health within {timeout:.0f} s; see {log.name}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            deadline = time.monotonic() + 10  # its worker processes share the group
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Outage:
    def __init__(self, server: Server, name: str, outage_s: float, after_task: int = 1):
        self.server, self.name, self.outage_s, self.after_task = server, name, outage_s, after_task
        self.window: dict[str, float] = {}
        self.thread: threading.Thread | None = None

    def __call__(self, driver: Driver) -> None:
        if self.thread is not None:
            return
        trials = live_trials(self.server.db, self.name)
        if any(t["task"] >= self.after_task and t["status"] == "RUNNING" for t in trials.values()):
            self.thread = threading.Thread(target=self._outage, args=(driver,), daemon=True)
            self.thread.start()

    def _outage(self, driver: Driver) -> None:
        self.window["seen_at_s"] = round(driver.elapsed(), 1)
        self.server.kill()
        self.window["down"] = time.time()
        self.window["down_at_s"] = round(driver.elapsed(), 1)
        print(f"  mlflow server SIGKILLed at {driver.elapsed():.1f} s; down for {self.outage_s:.0f} s", flush=True)
        time.sleep(self.outage_s)
        self.window["restart_s"] = round(self.server.start(), 1)
        self.window["up"] = time.time()
        self.window["up_at_s"] = round(driver.elapsed(), 1)
        print(f"  mlflow server answering again at {driver.elapsed():.1f} s", flush=True)


def outage(args, config: Path, out: Path, logs: Path, stamp: str, tasks: int) -> dict:
    name = f"outage-{stamp}"
    server = Server(out / "server" / name, logs)
    server.start()
    print(f"outage: rerun {name} ({args.seeds} seeds, concurrency 2) against {server.uri}", flush=True)
    breaker = Outage(server, name, args.outage_s)
    try:
        result = run_rerun(rerun_args(config, args.seeds, 2, out / "runs", name, ["--tracking-uri", server.uri]),
                           logs / f"{name}.log", args.timeout, breaker)
        if breaker.thread is not None:
            breaker.thread.join(timeout=args.outage_s + 180)
        if server.proc is None or server.proc.poll() is not None:  # the rerun ended during the outage
            server.start()
        a = audit(server.uri, name, tasks, args.seeds, artifacts=True)
    finally:
        server.kill()
    window = breaker.window
    inside = [e for e in a["entries"] if window.get("down", 1e18) < e[3] < window.get("up", -1)]
    measured = window["up"] - window["down"] if "up" in window else None
    ok = clean(a, result["exit_code"]) and measured is not None and bool(inside)
    return {"server": server.uri, "window": window, "outage_measured_s": round(measured, 1) if measured else None,
            "during_outage": len(inside), "during_outage_task": sum(e[1] == "task" for e in inside),
            "during_outage_detail": [f"{k} {m} step {s}" for k, m, s, _ in inside][:30], "run": result,
            "audit": _strip(a), "clean": ok}


def _strip(a: dict) -> dict:
    return {k: v for k, v in a.items() if k != "entries"}


# ---- the report ----------------------------------------------------------------------------------------------


def quiet(part: dict) -> str:
    """'yes' when no test suite or other benchmark ran beside the timed reruns, else what did."""
    busy = [*part["run"]["busy_beside"], *(part["twin"]["busy_beside"] if "twin" in part else [])]
    return "yes" if not busy else f"no ({len(busy)} processes beside it, e.g. {busy[0][:60]})"


def summary(wk: dict | None, og: dict | None) -> str:
    lines = [f"{'scenario':<18} {'exit':>4} {'fin':>5} {'runs/key':>8} {'dup':>3} {'miss':>4} {'wall s':>7}  notes"]
    if wk:
        t, a = wk["twin"], wk["twin_audit"]
        lines.append(f"{'twin (no faults)':<18} {t['exit_code']:>4} {a['finished']:>2}/{a['total']:<2} "
                     f"{a['max_runs_per_key']:>8} {a['repeated_entries']:>3} {a['tasks_missing']:>4} {t['wall_s']:>7}")
        r, a = wk["run"], wk["audit"]
        resumed = ", ".join(f"{k} resumed after {v['resumed_from_task']} (last kill {v['last_kill_after_task']}"
                            f"{'' if v['new_worker'] else ', SAME WORKER PID'})" for k, v in wk["resumed"].items())
        lines.append(f"{'worker kills':<18} {r['exit_code']:>4} {a['finished']:>2}/{a['total']:<2} "
                     f"{a['max_runs_per_key']:>8} {a['repeated_entries']:>3} {a['tasks_missing']:>4} {r['wall_s']:>7}  "
                     f"{wk['landed']}/{len(wk['plan'])} kills; {wk['time_lost_per_kill_s']} s lost per kill; {resumed}")
    if og:
        r, a = og["run"], og["audit"]
        lines.append(f"{'server outage':<18} {r['exit_code']:>4} {a['finished']:>2}/{a['total']:<2} "
                     f"{a['max_runs_per_key']:>8} {a['repeated_entries']:>3} {a['tasks_missing']:>4} {r['wall_s']:>7}  "
                     f"down {og['outage_measured_s']} s; {og['during_outage']} metric entries stamped inside the "
                     f"outage ({og['during_outage_task']} of `task`); runs lacking artifacts "
                     f"{len(a['missing_artifacts'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["worker_kill", "outage"], default=["worker_kill", "outage"])
    parser.add_argument("--worker-kills", type=int, default=3, help="trial worker SIGKILLs (default 3)")
    parser.add_argument("--kill-delay-s", type=float, default=0.0,
                        help="seconds between seeing the kill's task logged and the kill (default 0)")
    parser.add_argument("--outage-s", type=float, default=30.0, help="seconds the tracking server stays down")
    parser.add_argument("--seeds", type=int, default=2, help="trials of each rerun (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the benchmark's settings (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/faults"))
    parser.add_argument("--timeout", type=float, default=1200, help="seconds one rerun may take")
    add_record_args(parser)
    args = parser.parse_args()
    if args.seeds < 1 or args.worker_kills < 0 or args.outage_s < 0:
        parser.error("--seeds must be >= 1, --worker-kills and --outage-s >= 0")
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HYPERCL_FAILPOINT"):  # the reruns are local and plain
        os.environ.pop(var, None)

    from hypercl_core.config import load_config  # noqa: PLC0415

    wall_start = time.monotonic()
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    out = args.out.resolve()
    logs = out / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    cfg = load_config("split_mnist_cl1", [*SETTINGS, *args.overrides])
    tasks = cfg.benchmark.num_tasks
    if "worker_kill" in args.only:
        kill_plan(args.worker_kills, args.seeds, tasks)  # refused before anything runs
    config = out / f"config-{stamp}.yaml"
    config.write_text(cfg.to_yaml())
    print(f"config {config}: split_mnist_cl1 with {' '.join([*SETTINGS, *args.overrides])}", flush=True)

    wk = worker_kill(args, config, out, logs, stamp, tasks) if "worker_kill" in args.only else None
    og = outage(args, config, out, logs, stamp, tasks) if "outage" in args.only else None
    wall = time.monotonic() - wall_start

    print()
    print(summary(wk, og))
    for label, part in (("worker_kill", wk), ("outage", og)):
        if part is not None and not part["clean"]:
            print(f"  {label} NOT clean: {json.dumps({k: v for k, v in part.items() if k not in ('twin',)})[:3000]}")
        if part is not None and quiet(part) != "yes":
            print(f"  {label}: the machine was not quiet, timings skewed: {quiet(part)}")
        if part is not None and (part["run"]["leftover_procs"] or part["run"]["watcher_errors"]):
            print(f"  {label}: leftover processes {part['run']['leftover_procs']}, watcher errors "
                  f"{part['run']['watcher_errors']}")
    (out / "audit.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "config": str(config),
                                                "worker_kill": wk, "outage": og, "wall_s": round(wall, 1)},
                                               indent=1) + "\n")
    print(f"audit: {out / 'audit.json'}; logs: {logs}")

    where = f"{machine()}, {cpu_model()}, nproc {nproc()}"
    settings = f"SplitMNIST CL1 ({tasks} tasks x {cfg.train.iters_per_task} it, target {cfg.target.hidden})"
    extra_sets = [x for o in args.overrides for x in ("--set", o)]
    seeds = list(range(args.seeds))
    records = []

    def rec(scenario: str, method: str, metric: str, value: float, wall_s: float, command: str, **extra) -> dict:
        return {**record(BENCHMARK, scenario, method, metric, value, seeds, wall_s, command, **extra),
                "machine": where}

    if wk is not None:
        command = shlex.join(["python", "benchmarks/faults.py", "--only", "worker_kill", "--worker-kills",
                              str(args.worker_kills), "--seeds", str(args.seeds),
                              *(["--kill-delay-s", str(args.kill_delay_s)] if args.kill_delay_s else []), *extra_sets])
        scenario = f"{args.worker_kills} trial-worker SIGKILL{'s' * (args.worker_kills != 1)}, rerun of {args.seeds} seeds, concurrency 1, {settings}"
        method = "hypercl rerun, local Ray, Tune retries from the trial checkpoint"
        a, r = wk["audit"], wk["run"]
        w = r["wall_s"]
        records += [
            rec(scenario, method, "kills_landed", wk["landed"], w, command, planned=len(wk["plan"]),
                kills=[f"{k['trial']} after task {k['after_task']} at {k['killed_at_s']} s" for k in wk["kills"]]),
            rec(scenario, method, "trials_finished", a["finished"], w, command, total=a["total"]),
            rec(scenario, method, "runs_per_trial_key", a["max_runs_per_key"], w, command, per_key=a["runs_per_key"]),
            rec(scenario, method, "repeated_metric_entries", a["repeated_entries"], w, command,
                metrics_checked=a["metrics_checked"], tasks_missing=a["tasks_missing"]),
            rec(scenario, method, "exit_code", r["exit_code"], w, command),
            rec(scenario, method, "wall_s", w, w, command, twin_wall_s=wk["twin"]["wall_s"],
                twin_exit_code=wk["twin"]["exit_code"], time_lost_s=wk["time_lost_s"], machine_quiet=quiet(wk)),
            rec(scenario, method, "time_lost_per_kill_s", wk["time_lost_per_kill_s"] or 0.0, w, command,
                twin_wall_s=wk["twin"]["wall_s"], machine_quiet=quiet(wk)),
        ]
        for key, v in wk["resumed"].items():
            records.append(rec(scenario, method, f"resumed_from_task_{key}", float(v["resumed_from_task"] or -1), w,
                               command, last_kill_after_task=v["last_kill_after_task"],
                               new_worker="yes" if v["new_worker"] else "no"))
    if og is not None:
        command = shlex.join(["python", "benchmarks/faults.py", "--only", "outage", "--outage-s",
                              f"{args.outage_s:g}", "--seeds", str(args.seeds), *extra_sets])
        scenario = (f"mlflow server SIGKILLed after task 1 and down {args.outage_s:g} s, rerun of {args.seeds} seeds, "
                    f"concurrency 2, {settings}")
        method = "hypercl rerun, local Ray, --tracking-uri http (MLflow client retries)"
        a, r = og["audit"], og["run"]
        w = r["wall_s"]
        records += [
            rec(scenario, method, "outage_s", og["outage_measured_s"] or 0.0, w, command,
                restart_s=og["window"].get("restart_s"), down_at_s=og["window"].get("down_at_s")),
            rec(scenario, method, "trials_finished", a["finished"], w, command, total=a["total"]),
            rec(scenario, method, "runs_per_trial_key", a["max_runs_per_key"], w, command, per_key=a["runs_per_key"]),
            rec(scenario, method, "repeated_metric_entries", a["repeated_entries"], w, command,
                metrics_checked=a["metrics_checked"], tasks_missing=a["tasks_missing"]),
            rec(scenario, method, "metrics_logged_during_outage", og["during_outage"], w, command,
                task_entries=og["during_outage_task"]),
            rec(scenario, method, "runs_missing_artifacts", len(a["missing_artifacts"]), w, command),
            rec(scenario, method, "exit_code", r["exit_code"], w, command),
            rec(scenario, method, "wall_s", w, w, command, machine_quiet=quiet(og)),
        ]
    merged = merge(records, args.results)
    import report  # noqa: PLC0415

    args.results_md.write_text(report.render(merged))
    print(f"recorded in {args.results} and {args.results_md}")


if __name__ == "__main__":
    main()
