"""Chaos benchmark: sweep drivers SIGKILLed at seeded random moments, resumed, and audited from their stores.

    python benchmarks/chaos.py [--kills 20] [--sweeps 4] [--seed 0] [--out runs/benchmarks/chaos]

Each of `--sweeps` small real sweeps (space smoke, preset split_mnist_cl1, the
tiny settings of tests/orchestrator/conftest.py TINY_SWEEP) gets an even share
of `--kills`. Sweep i runs 3 trials one at a time when i is even and 4 trials
two at a time when i is odd; with two sweeps or more the last one uses ASHA.

1. Calibration: for every distinct (trials, concurrency, scheduler) a twin
   sweep runs uninterrupted, once to the end (span T_full) and once more as a
   resume of the finished sweep (span T_idle, a session with nothing to run).
   The twin is audited like the others, as a control without kills.
2. Chaos: for each kill of a sweep's share the driver is started (or resumed
   with `--resume FOLDER`; before `sweep.yaml` exists the original command is
   run again, as a user would), in its own process group, and SIGKILLed with
   its group after a delay drawn uniformly from [0, T] by a numpy RNG seeded
   with `--seed`. T is the span that session would take uninterrupted,
   estimated from the stores as T_idle + (T_full - T_idle) x the share of the
   sweep's tasks still to run. A driver that exits on its own before its delay
   was not killed: the draw is repeated (with T read again) until exactly
   `--kills` kills land. Each kill's moment (s since its session started) and
   what the stores held once the group was gone are rows of `kills.csv`.
3. After its share, each sweep is resumed to the end (exit 0 expected), then
   audited from MLflow (SQLite) and the Optuna study alone:
   - duplicated runs: trial runs sharing a `hypercl.trial_id`, runs of no
     study trial, or more runs than trials;
   - lost trials: study trials without a FINISHED run, unless ASHA stopped
     them (run KILLED with `hypercl.end_reason`, study trial PRUNED; counted
     as `asha_stopped`) or the space's bound rejected them (run KILLED with
     `hypercl.infeasible`, study trial COMPLETE; `rejected`), plus trials the
     study never got to (fewer than num_samples);
   - metrics logged twice: extra entries at an already logged step in a
     run's `task` history (`repeated_task_logs`) and in any metric's
     (`repeated_metric_steps`); FINISHED runs whose `task` history is not
     exactly 1..num_tasks (`tasks_missing`);
   - study trials left RUNNING, COMPLETE + PRUNED against num_samples, and
     FINISHED runs whose study trial is not COMPLETE (`state_mismatch`);
   - one parent run, FINISHED; the final exit code; sessions that exited
     non-zero on their own during the chaos (`unexpected_exits`).
   A kill survived when its sweep ended with exit 0 and a clean audit.

The summary table is printed, `audit.json` and `kills.csv` go to --out, and
the figures are merged into benchmarks/results.json (`--results`) and
RESULTS.md is rendered again from it (`--results-md`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from records import add_record_args, machine, merge, record  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# The settings of tests/orchestrator/conftest.py TINY_SWEEP: a trial takes seconds.
TINY = ["benchmark.num_tasks=2", "train.iters_per_task=20", "target.hidden=[32]", "train.eval_batch_size=5000",
        "device=cpu"]
BENCHMARK = "Sweep chaos"
DRAIN_S = 20.0  # how long a killed session's Ray workers get to end on their own
MAX_SELF_EXITS = 8  # sessions in a row that end on their own before their kill: the sweep is given up
KIND, TRIAL_ID, END_REASON, INFEASIBLE = ("hypercl.kind", "hypercl.trial_id", "hypercl.end_reason",
                                          "hypercl.infeasible")


@dataclass
class Plan:
    index: int
    name: str
    num_samples: int
    max_concurrent: int
    scheduler: str
    tpe_seed: int
    kills: int

    @property
    def shape(self) -> tuple[int, int, str]:
        return self.num_samples, self.max_concurrent, self.scheduler

    def start_args(self, runs: Path, overrides: list[str], name: str | None = None) -> list[str]:
        args = ["sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--num-samples", str(self.num_samples),
                "--max-concurrent", str(self.max_concurrent), "--scheduler", self.scheduler, "--seed",
                str(self.tpe_seed), "--runs-dir", str(runs), "--name", name or self.name]
        for item in [*TINY, *overrides]:
            args += ["--set", item]
        return args


@dataclass
class Span:
    full_s: float  # an uninterrupted sweep, start to end
    idle_s: float  # a resume of the finished sweep
    twin: str
    exits: list[int]

    def estimate(self, remaining: float) -> float:
        return self.idle_s + max(0.0, self.full_s - self.idle_s) * remaining


@dataclass
class Kill:
    kill: int  # 1.. over the whole benchmark
    sweep: str
    kill_in_sweep: int
    session: int  # driver sessions of this sweep so far, this one included
    command: str  # start | resume
    remaining_est: float
    span_est_s: float
    delay_s: float
    killed_at_s: float  # since the session started
    self_exits_before: int  # sessions that ended on their own while this kill was being drawn
    runs_finished: int = 0
    runs_running: int = 0
    runs_killed: int = 0
    tasks_logged: int = 0
    study_complete: int = 0
    study_pruned: int = 0
    study_running: int = 0
    drain_s: float = 0.0  # until the killed session's processes (Ray's workers included) were all gone
    leftover_procs: str = ""  # those still there after DRAIN_S, then SIGKILLed
    last_line: str = ""
    sweep_clean: str = ""  # filled in by the audit


@dataclass
class SweepLog:
    plan: Plan
    folder: Path
    sessions: int = 0
    self_exits: list[int] = field(default_factory=list)  # exit codes of sessions that ended before their kill
    kills: list[Kill] = field(default_factory=list)
    final_exit: int | None = None
    final_s: float = 0.0
    gave_up: bool = False


class Driver:
    """One `hypercl sweep` session in its own process group, as a user's shell would start it."""

    def __init__(self, args: list[str], log: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("HYPERCL_FAILPOINT", None)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with log.open("w") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None while it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> tuple[float, list[str]]:
        """SIGKILL the driver's group (the driver and the local Ray it started) and wait until it is gone.

        Ray's workers run in process groups of their own and end when their raylet does; they are waited
        for too, so nothing of this session still writes to the stores when the next one starts. Returns
        the seconds until all were gone and the names of those still there after DRAIN_S (then SIGKILLed).
        """
        pgid = self.proc.pid
        tree = _descendants(pgid)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        killed = time.monotonic()
        while time.monotonic() < killed + DRAIN_S:
            alive = [p for p in tree if _alive(p)] + _group_members(pgid)
            if not alive:
                return time.monotonic() - killed, []
            time.sleep(0.1)
        alive = [p for p in tree if _alive(p)]
        names = [_name(pid) for pid, _ in alive]
        for pid, _ in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return time.monotonic() - killed, names

    def last_line(self) -> str:
        """The driver's last progress line (`[  12s] t0001 task 1/2 ...`), else its last line."""
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        progress = [ln for ln in lines if ln.startswith("[") and "s] " in ln[:12]]
        return (progress or lines or [""])[-1][:160]


def _name(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").split()
    except OSError:
        return f"{pid} (gone)"
    script = next((w for w in words if w.endswith(".py")), words[0] if words else "")
    return f"{pid} {Path(script).name if script.endswith('.py') else ' '.join(words[:2])[:60]}"


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time) of a process, or None when it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]), int(fields[19]))


def _processes() -> dict[int, tuple[int, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process below `root`."""
    procs = _processes()
    children = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    found, todo = [], list(children[root])
    while todo:
        pid = todo.pop()
        found.append((pid, procs[pid][2]))
        todo += children[pid]
    return found


def _alive(process: tuple[int, int]) -> bool:
    stat = _stat(process[0])
    return stat is not None and stat[2] == process[1]  # the same process, not a reused pid


def _group_members(pgid: int) -> list[tuple[int, int]]:
    return [(pid, start) for pid, (_, group, start) in _processes().items() if group == pgid]


# ---- the stores, read while no driver of that sweep runs -------------------------------------------------------


def _query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read-write, so that SQLite rolls back a transaction a kill left open, as the next session would."""
    if not db.is_file():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        try:
            return con.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # killed before the store was set up
                return []
            raise


def trial_runs(folder: Path) -> list[tuple[str, str, str]]:
    """(run id, trial key, status) of every trial run."""
    return _query(folder / "mlflow.db",
                  "select r.run_uuid, coalesce(k.value, ''), r.status from runs r join tags t on r.run_uuid = t.run_uuid "
                  "and t.key = ? and t.value = 'trial' left join tags k on r.run_uuid = k.run_uuid and k.key = ?",
                  (KIND, TRIAL_ID))


def tasks_logged(folder: Path) -> dict[str, int]:
    """Trial key -> distinct tasks its run logged."""
    rows = _query(folder / "mlflow.db",
                  "select k.value, count(distinct m.step) from metrics m join tags k on m.run_uuid = k.run_uuid "
                  "and k.key = ? where m.key = 'task' group by k.value", (TRIAL_ID,))
    return dict(rows)


def study_states(folder: Path, name: str) -> list[tuple[int, str]]:
    """(number, state) of the study's trials."""
    return _query(folder / "optuna.db",
                  "select t.number, t.state from trials t join studies s on t.study_id = s.study_id "
                  "where s.study_name = ?", (name,))


def num_tasks(folder: Path) -> int:
    import yaml  # noqa: PLC0415

    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    return int(spec["base_config"]["benchmark"]["num_tasks"])


def remaining_share(folder: Path, plan: Plan) -> float:
    """The share of the sweep's tasks not yet run, from the study and MLflow (1 before the sweep exists)."""
    if not (folder / "sweep.yaml").is_file():
        return 1.0
    tasks = num_tasks(folder)
    logged = tasks_logged(folder)
    done = sum(tasks if state != "RUNNING" else min(tasks, logged.get(f"t{number:04d}", 0))
               for number, state in study_states(folder, plan.name))
    return max(0.0, 1.0 - done / (plan.num_samples * tasks))


def snapshot(folder: Path, plan: Plan) -> dict[str, int]:
    runs = Counter(status for _, _, status in trial_runs(folder))
    study = Counter(state for _, state in study_states(folder, plan.name))
    return {"runs_finished": runs["FINISHED"], "runs_running": runs["RUNNING"], "runs_killed": runs["KILLED"],
            "tasks_logged": sum(tasks_logged(folder).values()), "study_complete": study["COMPLETE"],
            "study_pruned": study["PRUNED"], "study_running": study["RUNNING"]}


# ---- sessions ------------------------------------------------------------------------------------------------


def session_args(plan: Plan, folder: Path, runs: Path, overrides: list[str], name: str | None = None):
    if (folder / "sweep.yaml").is_file():
        return "resume", ["sweep", "--resume", str(folder)]
    return "start", plan.start_args(runs, overrides, name)  # killed before the sweep was written: start it again


def calibrate(plan: Plan, runs: Path, overrides: list[str], logs: Path, timeout: float) -> tuple[Span, Path]:
    twin = f"{plan.name.rsplit('-', 1)[0]}-ref-{plan.num_samples}x{plan.max_concurrent}-{plan.scheduler}"
    folder = runs / "sweeps" / twin
    spans, exits = [], []
    for i in range(2):  # the whole sweep, then a resume of the finished sweep
        _, args = session_args(plan, folder, runs, overrides, twin)
        driver = Driver(args, logs / twin / f"session{i}.log")
        code = driver.wait(timeout)
        if code is None:
            driver.kill()
            sys.exit(f"calibration sweep {twin} still running after {timeout:.0f} s; see {driver.log}")
        spans.append(driver.elapsed())
        exits.append(code)
        print(f"calibration {twin}: session {i} exit {code} in {spans[-1]:.1f} s", flush=True)
        if code != 0:
            sys.exit(f"calibration sweep {twin} exited {code}; see {driver.log}")
    return Span(full_s=spans[0], idle_s=spans[1], twin=twin, exits=exits), folder


def chaos(log: SweepLog, span: Span, rng: np.random.Generator, runs: Path, overrides: list[str], logs: Path,
          first_kill: int) -> None:
    plan, folder = log.plan, log.folder
    for k in range(plan.kills):
        self_exits = 0
        while True:
            remaining = remaining_share(folder, plan)
            span_est = span.estimate(remaining)
            delay = float(rng.uniform(0.0, span_est))
            command, args = session_args(plan, folder, runs, overrides)
            log.sessions += 1
            driver = Driver(args, logs / plan.name / f"session{log.sessions:02d}.log")
            code = driver.wait(delay)
            killed = code is None
            if killed:
                at = driver.elapsed()
                drain, leftover = driver.kill()
                code = driver.proc.returncode  # -SIGKILL, unless it exited on its own in the meantime
            if killed and code == -signal.SIGKILL:
                row = Kill(kill=first_kill + k, sweep=plan.name, kill_in_sweep=k + 1, session=log.sessions,
                           command=command, remaining_est=round(remaining, 3), span_est_s=round(span_est, 1),
                           delay_s=round(delay, 1), killed_at_s=round(at, 1), self_exits_before=self_exits,
                           drain_s=round(drain, 1), leftover_procs="; ".join(leftover),
                           last_line=driver.last_line(), **snapshot(folder, plan))
                log.kills.append(row)
                print(f"kill {row.kill:2d}: {plan.name} session {row.session} ({command}) at {at:5.1f} s of ~"
                      f"{span_est:.0f}: finished {row.runs_finished}, running {row.runs_running}, tasks "
                      f"{row.tasks_logged}; {row.last_line}", flush=True)
                break
            self_exits += 1
            log.self_exits.append(code)
            print(f"  {plan.name} session {log.sessions} ({command}) exited {code} on its own at "
                  f"{driver.elapsed():.1f} s, before its kill at {delay:.1f} s: drawing again", flush=True)
            if self_exits >= MAX_SELF_EXITS:
                print(f"  {plan.name}: {self_exits} sessions in a row ended before their kill; giving up its "
                      f"{plan.kills - k} remaining kills", flush=True)
                log.gave_up = True
                return


def finish(log: SweepLog, runs: Path, overrides: list[str], logs: Path, timeout: float) -> None:
    _, args = session_args(log.plan, log.folder, runs, overrides)
    log.sessions += 1
    driver = Driver(args, logs / log.plan.name / f"session{log.sessions:02d}-final.log")
    code = driver.wait(timeout)
    if code is None:
        driver.kill()
        code = -signal.SIGKILL
        print(f"  {log.plan.name}: final resume still running after {timeout:.0f} s, killed", flush=True)
    log.final_exit, log.final_s = code, driver.elapsed()
    print(f"{log.plan.name}: final resume exit {code} in {log.final_s:.1f} s", flush=True)


# ---- the audit -----------------------------------------------------------------------------------------------


def audit(folder: Path, name: str, num_samples: int) -> dict:
    import optuna  # noqa: PLC0415
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = MlflowClient(f"sqlite:///{(folder / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                              max_results=50_000)
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'sweep'")
    tasks = num_tasks(folder)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{(folder / 'optuna.db').resolve()}")
    counted = study.trials
    state = {f"t{t.number:04d}": t.state.name for t in counted}

    by_key = defaultdict(list)
    for run in runs:
        by_key[run.data.tags.get(TRIAL_ID, "")].append(run)
    stray = sum(len(rs) for key, rs in by_key.items() if key not in state)
    duplicated = max(sum(len(rs) - 1 for rs in by_key.values()) + stray, len(runs) - num_samples, 0)

    finished = asha = rejected = mismatch = 0
    lost: list[str] = []
    for key, study_state in state.items():
        rs = by_key.get(key, [])
        statuses = [r.info.status for r in rs]
        if "FINISHED" in statuses:
            finished += 1
            mismatch += study_state != "COMPLETE"
        elif study_state == "PRUNED" and any(r.info.status == "KILLED" and END_REASON in r.data.tags for r in rs):
            asha += 1
        elif study_state == "COMPLETE" and any(r.info.status == "KILLED" and INFEASIBLE in r.data.tags for r in rs):
            rejected += 1
        else:
            lost.append(f"{key}: study {study_state}, runs {statuses or 'none'}")
    never = max(0, num_samples - len(counted))  # trials the study never got to

    repeated_task = repeated_any = missing = 0
    repeats: list[str] = []
    for run in runs:
        key = run.data.tags.get(TRIAL_ID, "?")
        for metric in sorted(run.data.metrics):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            extra = len(steps) - len(set(steps))
            if extra:
                repeated_any += extra
                repeats.append(f"{key} {metric} steps {sorted(steps)}")
                if metric == "task":
                    repeated_task += extra
        if run.info.status == "FINISHED":
            steps = {m.step for m in client.get_metric_history(run.info.run_id, "task")}
            missing += steps != set(range(1, tasks + 1))

    states = Counter(state.values())
    result = {
        "runs": len(runs), "finished": finished, "asha_stopped": asha, "rejected": rejected,
        "duplicated": duplicated, "lost": len(lost) + never,
        "repeated_task_logs": repeated_task, "repeated_metric_steps": repeated_any, "tasks_missing": missing,
        "study_running": states["RUNNING"], "study_done": states["COMPLETE"] + states["PRUNED"],
        "study_failed": states["FAIL"], "state_mismatch": mismatch,
        "parents": [p.info.status for p in parents], "lost_detail": lost + ([f"{never} of {num_samples} trials never asked"] if never else []), "repeat_detail": repeats[:20],
    }
    result["clean"] = (duplicated == 0 and result["lost"] == 0 and repeated_any == 0 and missing == 0
                       and states["RUNNING"] == 0 and result["study_done"] == num_samples and mismatch == 0
                       and result["parents"] == ["FINISHED"])
    return result


# ---- the report ----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform  # noqa: PLC0415

    return platform.processor() or "unknown CPU"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


COLUMNS = [("sweep", 0), ("N", 2), ("mc", 2), ("sched", 5), ("kills", 5), ("self", 4), ("exit", 4), ("runs", 4),
           ("fin", 3), ("asha", 4), ("rej", 3), ("dup", 3), ("lost", 4), ("rep", 3), ("srun", 4), ("done", 5),
           ("clean", 5)]


def table(rows: list[dict]) -> str:
    columns = [("sweep", max([5, *(len(r["sweep"]) for r in rows)])), *COLUMNS[1:]]
    lines = [" ".join(f"{name:>{width}}" for name, width in columns)]
    for r in rows:
        a = r["audit"]
        values = [r["sweep"], r["num_samples"], r["max_concurrent"], r["scheduler"], r["kills"], r["self_exits"],
                  r["final_exit"], a["runs"], a["finished"], a["asha_stopped"], a["rejected"], a["duplicated"],
                  a["lost"], a["repeated_metric_steps"], a["study_running"], f"{a['study_done']}/{r['num_samples']}",
                  "yes" if r["clean"] else "NO"]
        lines.append(" ".join(f"{str(v):>{width}}" for v, (_, width) in zip(values, columns)))
    return "\n".join(lines)


def write_kills(path: Path, kills: list[Kill]) -> None:
    names = list(Kill.__dataclass_fields__)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        writer.writerows(asdict(k) for k in kills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="driver kills in all, split evenly over the sweeps")
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments; sweep i's TPE seed is seed + i")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/chaos"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the tiny settings (repeatable)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds an uninterrupted session may take")
    add_record_args(parser)
    args = parser.parse_args()
    if args.kills < 0 or args.sweeps < 1:
        parser.error("--kills must be >= 0 and --sweeps >= 1")

    wall_start = time.monotonic()
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    out = args.out.resolve()
    runs, logs = out, out / "logs" / stamp
    plans = []
    for i in range(args.sweeps):
        share = args.kills // args.sweeps + (i < args.kills % args.sweeps)
        plans.append(Plan(index=i, name=f"chaos-{stamp}-{i}", num_samples=3 if i % 2 == 0 else 4,
                          max_concurrent=1 if i % 2 == 0 else 2,
                          scheduler="asha" if args.sweeps >= 2 and i == args.sweeps - 1 else "fifo",
                          tpe_seed=args.seed + i, kills=share))
    rng = np.random.default_rng(args.seed)
    print(f"{args.kills} kills over {args.sweeps} sweeps (seed {args.seed}); stores under {out / 'sweeps'}", flush=True)

    spans: dict[tuple, Span] = {}
    controls: list[dict] = []
    for plan in plans:
        if plan.shape not in spans:
            span, folder = calibrate(plan, runs, args.overrides, logs, args.timeout)
            spans[plan.shape] = span
            control = audit(folder, span.twin, plan.num_samples)
            controls.append({"sweep": span.twin, "num_samples": plan.num_samples,
                             "max_concurrent": plan.max_concurrent, "scheduler": plan.scheduler, "kills": 0,
                             "self_exits": 0, "final_exit": span.exits[-1], "span": asdict(span), "audit": control,
                             "clean": control["clean"] and span.exits == [0, 0]})
            print(f"  T_full {span.full_s:.1f} s, T_idle {span.idle_s:.1f} s; control audit "
                  f"{'clean' if control['clean'] else 'NOT clean: ' + json.dumps(control)}", flush=True)

    sweep_logs: list[SweepLog] = []
    kills: list[Kill] = []
    for plan in plans:
        log = SweepLog(plan=plan, folder=runs / "sweeps" / plan.name)
        chaos(log, spans[plan.shape], rng, runs, args.overrides, logs, first_kill=len(kills) + 1)
        kills += log.kills
        write_kills(out / "kills.csv", kills)
        finish(log, runs, args.overrides, logs, args.timeout)
        sweep_logs.append(log)

    rows = []
    for log in sweep_logs:
        plan = log.plan
        result = audit(log.folder, plan.name, plan.num_samples)
        unexpected = [c for c in log.self_exits if c != 0]
        clean = result["clean"] and log.final_exit == 0 and not unexpected
        for k in log.kills:
            k.sweep_clean = "yes" if clean else "no"
        rows.append({"sweep": plan.name, "num_samples": plan.num_samples, "max_concurrent": plan.max_concurrent,
                     "scheduler": plan.scheduler, "tpe_seed": plan.tpe_seed, "kills": len(log.kills),
                     "kills_planned": plan.kills, "sessions": log.sessions, "self_exits": len(log.self_exits),
                     "unexpected_exits": unexpected, "gave_up": log.gave_up, "final_exit": log.final_exit,
                     "final_s": round(log.final_s, 1), "audit": result, "clean": clean})
    write_kills(out / "kills.csv", kills)
    wall = time.monotonic() - wall_start

    landed = len(kills)
    lingering = sum(bool(k.leftover_procs) for k in kills)
    survived = sum(r["kills"] for r in rows if r["clean"])
    totals = {key: sum(r["audit"][key] for r in rows) for key in
              ("duplicated", "lost", "repeated_task_logs", "repeated_metric_steps", "tasks_missing", "study_running",
               "asha_stopped", "rejected", "state_mismatch")}
    print()
    print(table(rows))
    print("control (uninterrupted twins):")
    print(table(controls))
    print(f"\nkills survived {survived} of {landed} (planned {args.kills}); duplicated {totals['duplicated']}, lost "
          f"{totals['lost']}, repeated task logs {totals['repeated_task_logs']}, study trials left RUNNING "
          f"{totals['study_running']}; ASHA stopped {totals['asha_stopped']}, rejected {totals['rejected']}; "
          f"{sum(r['self_exits'] for r in rows)} sessions ended before their kill; {lingering} kills left Ray "
          f"processes running after {DRAIN_S:.0f} s; {wall:.0f} s")
    for r in rows:
        if not r["clean"]:
            print(f"  {r['sweep']}: {json.dumps({k: r[k] for k in ('final_exit', 'unexpected_exits', 'gave_up')})} "
                  f"{json.dumps(r['audit'])}")
    (out / "audit.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                "sweeps": rows, "controls": controls, "wall_s": round(wall, 1),
                                                "kills_survived": survived, "kills": landed}, indent=1) + "\n")
    print(f"per-kill rows: {out / 'kills.csv'}; audit: {out / 'audit.json'}")

    command = shlex.join(["python", "benchmarks/chaos.py", "--kills", str(args.kills), "--sweeps", str(args.sweeps),
                          "--seed", str(args.seed), *[x for o in args.overrides for x in ("--set", o)]])
    iters = next((o.split("=", 1)[1] for o in reversed([*TINY, *args.overrides]) if o.startswith("train.iters_per_task=")))
    n_tasks = next((o.split("=", 1)[1] for o in reversed([*TINY, *args.overrides]) if o.startswith("benchmark.num_tasks=")))
    asha = ", ASHA on the last" if args.sweeps >= 2 else ""
    trials = "/".join(str(n) for n in sorted({p.num_samples for p in plans}))
    concurrency = "/".join(str(n) for n in sorted({p.max_concurrent for p in plans}))
    scenario = (f"{args.kills} SIGKILLs over {args.sweeps} smoke sweep{'s' * (args.sweeps > 1)} of SplitMNIST CL1 "
                f"({n_tasks} tasks x {iters} it), {trials} trials, concurrency {concurrency}{asha}")
    method = "hypercl sweep, driver killed and resumed"
    where = f"{machine()}, {cpu_model()}, nproc {nproc()}"
    per_sweep = [f"{r['kills'] if r['clean'] else 0}/{r['kills']}" for r in rows]  # survived / landed

    def rec(metric: str, value: float, **extra) -> dict:
        return {**record(BENCHMARK, scenario, method, metric, value, [args.seed], wall, command, **extra),
                "machine": where}

    records = [
        rec("kills_survived", survived, kills=landed, per_sweep=per_sweep,
            sessions_ended_before_kill=sum(r["self_exits"] for r in rows), kills_leaving_ray_processes=lingering,
            kill_moments_s=[k.killed_at_s for k in kills]),
        rec("duplicated_runs", totals["duplicated"]),
        rec("lost_runs", totals["lost"], asha_stopped=totals["asha_stopped"], rejected=totals["rejected"]),
        rec("repeated_task_logs", totals["repeated_task_logs"], any_metric=totals["repeated_metric_steps"]),
        rec("study_trials_left_running", totals["study_running"]),
    ]
    merged = merge(records, args.results)
    import report  # noqa: PLC0415

    args.results_md.write_text(report.render(merged))
    print(f"recorded in {args.results} and {args.results_md}")


if __name__ == "__main__":
    main()
