"""Chaos: the sweep driver killed (SIGKILL to its process group) at every moment of a sweep's life, then resumed.

Each kill lands at a named failpoint (orchestrator/failpoints.py) or, for the
moments inside a trial, from a watcher reading MLflow. Whatever the moment,
the resumed sweep ends with exactly one FINISHED run per trial, every task
logged once, and a study with no trial left RUNNING.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import KIND, TRIAL_ID, embedded_uri
from tests.orchestrator.conftest import TINY_SWEEP
from tests.orchestrator.drivers import Driver

pytestmark = pytest.mark.slow
N = 2  # trials per sweep: enough for "between trials" and "during the last trial"
TASKS = 2


def _sweep_args(runs: Path, name: str) -> list[str]:
    args = ["sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--num-samples", str(N),
            "--max-concurrent", "1", "--runs-dir", str(runs), "--name", name]
    for item in TINY_SWEEP:
        args += ["--set", item]
    return args


def _runs(db: Path) -> list[tuple[str, str]]:
    """(trial key, status) of every trial run, read straight from the store while the driver writes it."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute(
                "select t2.value, r.status from runs r join tags t on r.run_uuid = t.run_uuid "
                "join tags t2 on r.run_uuid = t2.run_uuid where t.key = ? and t.value = 'trial' and t2.key = ?",
                (KIND, TRIAL_ID)).fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return []


def _running_without_metrics(db: Path) -> bool:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return bool(con.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid where t.key = ? and "
                "t.value = 'trial' and r.status = 'RUNNING' and not exists "
                "(select 1 from metrics m where m.run_uuid = r.run_uuid)", (KIND,)).fetchone()[0])
    except sqlite3.OperationalError:
        return False


def check_sweep(folder: Path, name: str, final: bool) -> None:
    """One run per trial key, and at the end: N finished runs, each task once, a closed study."""
    client = MlflowClient(embedded_uri(folder))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")
    keys = [r.data.tags[TRIAL_ID] for r in runs]
    assert len(keys) == len(set(keys)) <= N, keys
    for run in runs:
        for metric in ("task", "final_acc", "acc_task0"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == sorted(set(steps)), (run.data.tags[TRIAL_ID], metric, steps)  # nothing logged twice
    if not final:
        return
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * N
    for run in runs:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "task")] == list(range(1, TASKS + 1))
        assert {m.step for m in client.get_metric_history(run.info.run_id, f"acc_task{TASKS - 1}")} == {TASKS}
        assert {"steps_per_s", "wall_s"} <= set(run.data.metrics)
        assert {"config.yaml", "matrix.csv", "matrix.png", "results.json"} <= {
            a.path for a in client.list_artifacts(run.info.run_id)}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == N and len(states) == N, states
    parent = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'sweep'")[0]
    assert parent.info.status == "FINISHED"


def test_driver_killed_at_every_moment_of_a_sweep_resumes_to_one_run_per_trial(tmp_path, data_root):
    folder = tmp_path / "sweeps" / "c1"
    db = folder / "mlflow.db"
    resume = ["sweep", "--resume", str(folder)]
    runs = lambda: _runs(db)  # noqa: E731
    # (what to run, failpoint, when the watcher kills it, what the stores must then show)
    stages = [
        ("before the first trial starts", _sweep_args(tmp_path, "c1"), "sweep_start", None),
        ("while Optuna is being asked (a study trial no Tune trial owns)", resume, "after_ask", None),
        ("while the first trial runs", resume, None, lambda: _running_without_metrics(db)),
        ("right after a trial reports its first task", resume, "trial_result", None),
        ("between trials", resume, "trial_complete", None),
        ("during the last trial", resume, None,
         lambda: sum(s == "FINISHED" for _, s in runs()) == N - 1 and any(s == "RUNNING" for _, s in runs())),
        ("after the last trial, before the parent run is closed", resume, "before_close", None),
    ]
    for i, (moment, args, point, kill_when) in enumerate(stages):
        driver = Driver(args, tmp_path / f"session{i}.log", failpoint=point)
        code = driver.wait(kill_when=kill_when)
        assert code == -signal.SIGKILL, f"{moment}: exit {code}\n{driver.tail()}"
        check_sweep(folder, "c1", final=False)
    assert sorted(s for _, s in runs()) == ["FINISHED"] * N  # the last kill came after every trial finished
    assert f"t{N - 1:04d} done: final_acc" in driver.output() and f"({N}/{N})" in driver.output()  # counts earlier sessions
    driver = Driver(resume, tmp_path / "final.log")
    assert driver.wait() == 0, driver.tail()
    assert f"best {N} of sweep c1" in driver.output() and "Traceback" not in driver.output()
    check_sweep(folder, "c1", final=True)


def test_sigint_and_sigterm_end_the_driver_cleanly_and_leave_a_resumable_sweep(tmp_path, data_root):
    folder = tmp_path / "sweeps" / "c2"
    db = folder / "mlflow.db"
    args = _sweep_args(tmp_path, "c2")
    for i, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        driver = Driver(args, tmp_path / f"signal{i}.log")
        first_report = len([s for _, s in _runs(db) if s == "FINISHED"])

        def reported() -> bool:
            try:
                with sqlite3.connect(db, timeout=1) as con:
                    return con.execute("select count(distinct run_uuid) from metrics where key = 'task'"
                                       ).fetchone()[0] > first_report
            except sqlite3.OperationalError:
                return False

        deadline = time.time() + 240
        while not reported() and time.time() < deadline and driver.proc.poll() is None:
            time.sleep(0.2)
        driver.proc.send_signal(sig)  # to the driver alone, as Ctrl-C's SIGINT or a scheduler's SIGTERM
        try:
            code = driver.proc.wait(timeout=120)
        finally:
            driver.kill()  # whatever Ray left in the group
        assert code == 130, f"{sig.name}: exit {code}\n{driver.tail()}"
        assert "hypercl sweep --resume" in driver.output() and "Traceback" not in driver.output(), driver.tail()
        check_sweep(folder, "c2", final=False)
        args = ["sweep", "--resume", str(folder)]
    driver = Driver(args, tmp_path / "final.log")
    assert driver.wait() == 0, driver.tail()
    assert "Traceback" not in driver.output(), driver.tail()
    check_sweep(folder, "c2", final=True)
