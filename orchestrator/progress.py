"""Live sweep progress on the console, and MLflow status for trials Tune ends.

A trial stopped by ASHA or killed by a failure never reaches its own
`finish`, so the driver marks its MLflow run (KILLED / FAILED) here; `best`
then only ranks runs that learned every task. A tracking server that is down
for a while must not end the sweep: a verdict that cannot be written is said
on the console, and the sweep closes such runs when it ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mlflow.entities import RunTag
from ray import tune

from orchestrator.console import NOTE, log
from orchestrator.failpoints import failpoint
from orchestrator.searcher import TRIAL_KEY
from orchestrator.tracking import END_REASON, ERROR_TAG, STOPPED_BY_SCHEDULER, TRIAL_ID


class SweepProgress(tune.Callback):
    def __init__(self, tracking_uri: str, experiment_id: str, metric: str, num_tasks: int, total: int,
                 done_before: int = 0, tasks_per_trial: dict[str, int] | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.metric = metric
        self.num_tasks = num_tasks
        self.tasks_per_trial = tasks_per_trial or {}  # trial key -> its tasks, where trials differ (a comparison)
        self.total = total
        self.start = time.time()
        self.done = done_before  # trials that ended in earlier sessions of this sweep

    def setup(self, **info):
        self.start = time.time()

    @staticmethod
    def _name(trial) -> str:
        return trial.config.get(TRIAL_KEY, trial.trial_id)

    def _tasks(self, trial) -> int:
        return self.tasks_per_trial.get(self._name(trial), self.num_tasks)

    def _print(self, text: str, level: int = NOTE) -> None:
        """A progress line (hidden by -q); a failure is a WARNING, which -q still shows."""
        elapsed = time.time() - self.start
        log.log(level, f"[{elapsed:7.0f}s] {text}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(f"{self._name(trial)} started ({self.done}/{self.total} trials done)")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        failpoint("trial_result")
        if result.get("infeasible"):
            self._print(f"{self._name(trial)} rejected before training: compression bound not reachable")
            return
        value = result.get(self.metric)
        if value is not None:
            self._print(f"{self._name(trial)} task {result.get('task')}/{self._tasks(trial)} {self.metric} {value:.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        failpoint("trial_complete")
        self.done += 1
        self._mark(self._name(trial), "KILLED", STOPPED_BY_SCHEDULER)
        last = trial.last_result or {}
        value = last.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else "no result"
        task = last.get("task")
        # ASHA's verdict on a trial after task k reads like a result; say that it is a partial one.
        verdict = "done" if task is None or task >= self._tasks(trial) else f"stopped by the scheduler after task {task}"
        self._print(f"{self._name(trial)} {verdict}: {shown} ({self.done}/{self.total})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        error = _error_line(trial)
        self._mark(self._name(trial), "FAILED", f"error: {trial.error_file or 'see Tune logs'}", {ERROR_TAG: error})
        self._print(f"{self._name(trial)} FAILED ({self.done}/{self.total}): {error}; see {trial.error_file}",
                    logging.WARNING)

    def _mark(self, key: str, status: str, reason: str, tags: dict[str, str] | None = None) -> None:
        """Only runs still RUNNING need a verdict; a trial that finished set its own."""
        from mlflow.exceptions import MlflowException  # noqa: PLC0415
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        try:
            client = MlflowClient(self.tracking_uri)
            runs = client.search_runs([self.experiment_id], filter_string=f"tags.`{TRIAL_ID}` = '{key}'",
                                      max_results=1)
            if runs and runs[0].info.status == "RUNNING":
                client.log_batch(runs[0].info.run_id, tags=[RunTag(k, v) for k, v in
                                                            {END_REASON: reason, **(tags or {})}.items()])
                client.set_terminated(runs[0].info.run_id, status)
        except (MlflowException, OSError) as exc:
            self._print(f"{key}: could not mark its MLflow run {status} ({type(exc).__name__}); the sweep "
                        "closes it when it ends", logging.WARNING)


def _error_line(trial) -> str:
    """The exception's own last line (e.g. `RuntimeError: CUDA out of memory`), not Ray's wrapper."""
    try:
        error = trial.get_pickled_error()
    except Exception:  # an unpicklable error still has its text file
        error = None
    text = str(error) if error is not None else ""
    if not text and trial.error_file:
        text = Path(trial.error_file).read_text(errors="replace") if Path(trial.error_file).is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "unknown error"
