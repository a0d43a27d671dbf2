"""Live sweep progress on the console, and MLflow status for trials Tune ends.

A trial stopped by ASHA or killed by a failure never reaches its own
`finish`, so the driver marks its MLflow run (KILLED / FAILED) here; `best`
then only ranks runs that learned every task.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ray import tune

from orchestrator.tracking import ERROR_TAG, TRIAL_ID


class SweepProgress(tune.Callback):
    def __init__(self, tracking_uri: str, experiment_id: str, metric: str, num_tasks: int, total: int):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.metric = metric
        self.num_tasks = num_tasks
        self.total = total
        self.start = time.time()
        self.done: int | None = None

    def setup(self, **info):
        # Also called when a resumed sweep starts (this object comes back from Tune's saved
        # state): restart the clock, and count the trials already done from Tune's own list.
        self.start = time.time()
        self.done = None

    def _count(self, trials) -> None:
        if self.done is None:
            self.done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)

    def _print(self, text: str) -> None:
        elapsed = time.time() - self.start
        print(f"[{elapsed:7.0f}s] {text}", file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._count(trials)
        self._print(f"{trial.trial_id} started ({self.done}/{self.total} trials done)")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("infeasible"):
            self._print(f"{trial.trial_id} rejected before training: compression bound not reachable")
            return
        value = result.get(self.metric)
        if value is not None:
            self._print(f"{trial.trial_id} task {result.get('task')}/{self.num_tasks} {self.metric} {value:.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._count(trials)
        self.done += 1
        self._mark(trial.trial_id, "KILLED", "stopped early by the scheduler")
        last = trial.last_result or {}
        value = last.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else "no result"
        task = last.get("task")
        # ASHA's verdict on a trial after task k reads like a result; say that it is a partial one.
        verdict = "done" if task is None or task >= self.num_tasks else f"stopped by the scheduler after task {task}"
        self._print(f"{trial.trial_id} {verdict}: {shown} ({self.done}/{self.total})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._count(trials)
        self.done += 1
        error = _error_line(trial)
        self._mark(trial.trial_id, "FAILED", f"error: {trial.error_file or 'see Tune logs'}", {ERROR_TAG: error})
        self._print(f"{trial.trial_id} FAILED ({self.done}/{self.total}): {error}; see {trial.error_file}")

    def _mark(self, trial_id: str, status: str, reason: str, tags: dict[str, str] | None = None) -> None:
        """Only runs still RUNNING need a verdict; a trial that finished set its own."""
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        client = MlflowClient(self.tracking_uri)
        runs = client.search_runs([self.experiment_id], filter_string=f"tags.`{TRIAL_ID}` = '{trial_id}'",
                                  max_results=1)
        if runs and runs[0].info.status == "RUNNING":
            client.set_tag(runs[0].info.run_id, "hypercl.end_reason", reason)
            for key, value in (tags or {}).items():
                client.set_tag(runs[0].info.run_id, key, value)
            client.set_terminated(runs[0].info.run_id, status)


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
