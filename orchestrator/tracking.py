"""MLflow bookkeeping for sweeps: one experiment per sweep, a parent run, one nested run per trial.

Trials write from wherever Ray runs them, so a multi-node sweep needs only a
tracking URI every node can reach. A trial finds its run again by its Tune
trial id, so retries and resumed sweeps never duplicate runs.

Params are stored as plain text, as a researcher types them in the UI's filter
(``params.`hnet.activation` = 'elu'``); lists and numbers as compact JSON, and
a string only where it would read as something else (`"1e-3"`, `"true"`)
quoted, so `best --export` rebuilds the exact config. Stores written while
every param was JSON-encoded decode the same way.

Every run carries its provenance (hypercl_core.provenance) as tags, in MLflow's
own names where it has them (the UI's Source and User columns), so a result
can be traced to the commit, command line and host that made it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from hypercl_core.errors import UserError  # noqa: E402

KIND = "hypercl.kind"  # sweep | rerun | robustness | compare | trial
PRESET_TAG = "hypercl.preset"  # the config a parent run (or a compared trial's run) was started from
# MLflow 3 opens an experiment in its GenAI view (traces, token usage) unless told it holds model training.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
TRIAL_ID = "hypercl.trial_id"
PARENT = "mlflow.parentRunId"
ERROR_TAG = "hypercl.error"  # a failed trial's exception, one line
INFEASIBLE_TAG = "hypercl.infeasible"  # why a trial was never trained
END_REASON = "hypercl.end_reason"  # why the driver, not the trial, closed a trial's run
STOPPED_BY_SCHEDULER = "stopped early by the scheduler"
MAX_BATCH = 900  # MLflow allows 1000 metrics per log_batch call


def embedded_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def check_tracking_uri(uri: str) -> None:
    """Fail fast, in one line, on a server that is not there (before any trial starts)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it "
                "(mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000) or pass another --tracking-uri"
            ) from None
    elif uri.startswith("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        if not parent.is_dir():
            raise UserError(f"tracking URI {uri}: folder {parent} does not exist; create it or pass another --tracking-uri")
    elif not uri.startswith(("postgresql", "mysql", "databricks")):
        raise UserError(f"tracking URI {uri!r} is not supported; use sqlite:///path/mlflow.db or http://host:port")


def encode_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if _reads_as_json(value) else value
    return json.dumps(value, separators=(",", ":"))


def _reads_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def decode_value(text: str) -> Any:
    """Inverse of `encode_value`, and of the JSON encoding of every param in stores written before it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def encode_params(flat: dict[str, Any]) -> list[Param]:
    return [Param(k, encode_value(v)) for k, v in flat.items()]


def decode_params(params: dict[str, str]) -> dict[str, Any]:
    return {key: decode_value(text) for key, text in params.items()}


def provenance_tags(origin: dict[str, Any]) -> dict[str, str]:
    """hypercl_core.provenance as run tags; MLflow's own keys fill the UI's Source, Version and User columns."""
    tags = {f"hypercl.{key}": str(value) for key, value in origin.items() if value is not None}
    words = str(origin.get("command", "")).split()
    program = " ".join(words[:1] + [w for w in words[1:] if not w.startswith("-")][:1])  # `hypercl sweep`
    mlflow_keys = {"mlflow.source.type": "LOCAL", "mlflow.source.name": program or None,
                   "mlflow.source.git.commit": origin.get("git_commit"), "mlflow.user": origin.get("user")}
    return {**tags, **{key: str(value) for key, value in mlflow_keys.items() if value}}


def resume_tags(existing: dict[str, str], origin: dict[str, Any]) -> dict[str, str]:
    """A later session's provenance beside the first one's, which stays: the command that reproduces a sweep
    is the one that started it. `hypercl.code_changed` says when a later session ran other code."""
    n = int(existing.get("hypercl.resumes", "0")) + 1
    tags = {f"hypercl.resume{n}.{key}": str(origin[key]) for key in ("command", "git_commit", "git_dirty", "host")
            if origin.get(key) is not None}
    changed = (str(origin.get("git_commit")) != existing.get("hypercl.git_commit", "None")
               or bool(origin.get("git_dirty")) or existing.get("hypercl.code_changed") == "True")
    tags.update({"hypercl.resumes": str(n), "hypercl.code_changed": str(changed)})
    return tags


def _metrics(values: dict[str, float], step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items() if isinstance(v, (int, float))]


def log_metrics(client: MlflowClient, run_id: str, values: dict[str, float], step: int) -> None:
    """Batched: per-key logging is MLflow's known slow path."""
    metrics = _metrics(values, step)
    for start in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH])


class SweepTracker:
    """Driver side: the sweep's experiment and parent run (reused on resume)."""

    def __init__(self, uri: str, name: str, artifact_root: Path | None = None):
        self.uri = uri
        self.name = name
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(name, artifact_location=location,
                                                               tags=dict([EXPERIMENT_KIND]))
        else:
            self.experiment_id = experiment.experiment_id
            if experiment.tags.get(EXPERIMENT_KIND[0]) is None:  # made before the tag was set
                self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)

    def parent_run(self, kind: str, run_id: str | None = None, params: dict[str, Any] | None = None,
                   tags: dict[str, str] | None = None, origin: dict[str, Any] | None = None) -> str:
        """The sweep's parent run, named after the sweep; a resumed session adds its provenance (resume_tags)."""
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            added = resume_tags(self.client.get_run(run_id).data.tags, origin or {})
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in added.items()])
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=self.name,
                                     tags={KIND: kind, **(tags or {}), **provenance_tags(origin or {})})
        if params:
            self.client.log_batch(run.info.run_id, params=encode_params(params))
        return run.info.run_id

    def trial_runs(self) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                                       max_results=50_000)


class TrialTracker:
    """Trial side: the run of one durable trial key, created once and found again by every retry and resume.

    Logging is exactly once per task: a task's checkpoint is stored before its
    metrics are logged (in one batch), so a trial cut off in between resumes
    after that task and logs only the steps its run lacks (`log_missing`).
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, key: str, run_name: str,
                 origin: dict[str, Any] | None = None):
        self.uri = uri
        self.client = MlflowClient(uri)
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{TRIAL_ID}` = '{key}'", max_results=1
        )
        self.resumed = bool(found)
        self.finished = bool(found) and found[0].info.status == "FINISHED"
        if found:
            self.run_id = found[0].info.run_id
            self.latest = dict(found[0].data.metrics)
            if not self.finished:
                self.client.update_run(self.run_id, status="RUNNING")
                self.set_tags(resume_tags(found[0].data.tags, origin or {}))  # the session that runs it now
        else:
            tags = {PARENT: parent_run_id, TRIAL_ID: key, KIND: "trial", **provenance_tags(origin or {})}
            self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
            self.latest = {}

    def log_config(self, config: dict[str, Any], flat: dict[str, Any], extra_tags: dict[str, str] | None = None
                   ) -> None:
        """Params to filter and compare by (once: MLflow refuses a param logged again), and the config as one
        nested dict (config.json, to read whole; written again by a retry, the same file replaced)."""
        if not self.resumed or not self.client.get_run(self.run_id).data.params:
            self.client.log_batch(self.run_id, params=encode_params(flat))
        self.client.log_dict(self.run_id, config, "config.json")
        if extra_tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in extra_tags.items()])

    def log_task(self, metrics: dict[str, float], step: int) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def log_missing(self, per_step: dict[int, dict[str, float]]) -> None:
        """Log the tasks a cut-off trial had checkpointed but not yet logged."""
        if not self.resumed or not per_step:
            return
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "task")}
        for step, metrics in sorted(per_step.items()):
            if step not in logged:
                self.log_task(metrics, step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, results: dict[str, Any], run_dir: Path, step: int) -> None:
        """The run's summary, files and FINISHED status; run again after a cut-off, it adds nothing twice."""
        logged = set(self.client.get_run(self.run_id).data.metrics)
        log_metrics(self.client, self.run_id, {k: v for k, v in results["summary"].items() if k not in logged}, step)
        for name in ("config.yaml", "results.json", "matrix.csv", "matrix.png"):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))  # same path: replaced, not added
        main = results["primary_matrix"]
        table = f"matrix_{main}.json"
        if table not in {a.path for a in self.client.list_artifacts(self.run_id)}:  # log_table appends rows
            self.client.log_table(self.run_id, matrix_table(results["matrices"][main]), table)
        self.client.set_terminated(self.run_id, "FINISHED")

    def monitor_system(self):
        """MLflow's system metrics (CPU, memory, disk, network; GPU where NVML sees one) under `system/`,
        until the run ends (it checks its status every sample) or `.finish()` stops it."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: PLC0415

        monitor = SystemMetricsMonitor(self.run_id, resume_logging=self.resumed, tracking_uri=self.uri)
        monitor.start()
        return monitor


def matrix_table(rows: list[list[float | None]]) -> dict[str, list]:
    """A score matrix (ScoreMatrix.to_list: None before a task is learned) as an MLflow table, 1-based:
    row i holds every task's score after learning task i."""
    table: dict[str, list] = {"after_task": list(range(1, len(rows) + 1))}
    table.update({f"task_{j + 1}": [row[j] for row in rows] for j in range(len(rows))})
    return table
