"""The Tune trainable: one trial is one continual-learning experiment.

The trial's own bundle runs the experiment loop of hypercl_core against
subsystem actors in the other bundles, reports after every task (so ASHA can
stop bad trials early), stores a checkpoint under the trial's durable key
(so a retried or resumed trial continues at its next task, whichever Tune
trial runs it), and records everything in its MLflow run, each task once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from hypercl_core.accounting import count_params
from hypercl_core.config import ExperimentConfig, build_config, config_from_flat
from hypercl_core.experiment import CHECKPOINT, CONFIG, Experiment
from hypercl_core.methods import compose
from hypercl_core.metrics import metric_mode, score_name
from hypercl_core.provenance import provenance
from orchestrator.actors import Placement, spawn_subsystems
from orchestrator.checkpoints import TrialCheckpoints
from orchestrator.folders import COMPARED
from orchestrator.searcher import COMPRESSION_EXCESS, MLFLOW_RUN, TRIAL_KEY
from orchestrator.tracking import INFEASIBLE_TAG, PRESET_TAG, TrialTracker


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled values; shipped once via the object store."""

    base: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    metric: str
    mode: str
    checkpoints: str  # root of the trials' checkpoints (orchestrator.checkpoints)
    placement: Placement = field(default_factory=Placement)
    space: dict[str, Any] | None = None
    variants: list[dict[str, Any]] = field(default_factory=list)
    data_root: str | None = None
    origin: dict[str, Any] = field(default_factory=provenance)  # the driver's; each worker adds its host
    system_metrics: bool = False

    @property
    def worst(self) -> float:
        return 0.0 if self.mode == "max" else 1e9

    def tags(self, key: str) -> dict[str, str]:
        """What names a compared trial's preset on its own run (`hypercl table` groups by it)."""
        variant = self.variants[int(key[1:])] if not self.space else {}
        return {PRESET_TAG: variant["preset"]} if COMPARED in variant else {}

    def resolve(self, sample: dict[str, Any]) -> tuple[ExperimentConfig | None, float | None]:
        """The trial's config (None when no chunk size meets the space's compression bound) and, in a
        sweep, how far its architecture lies above that bound (SearchSpace.compression_excess)."""
        key = sample[TRIAL_KEY]
        if not self.space:
            variant = self.variants[int(key[1:])]
            if COMPARED in variant:
                return build_config(variant[COMPARED], saved=True), None
            return config_from_flat(variant, build_config(self.base, saved=True)), None
        base = build_config(self.base, saved=True)
        from search_spaces.space import SearchSpace  # noqa: PLC0415

        space = SearchSpace.model_validate(self.space)
        decoded = space.decode({k: v for k, v in sample.items() if k != TRIAL_KEY})
        return space.materialize(decoded, base), space.compression_excess(decoded, base)


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    # Ray Train announces every report at INFO; with a report per task that drowns the progress lines.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop notes, from every trial
    key = config[TRIAL_KEY]
    origin = {**ctx.origin, "host": socket.gethostname()}
    tracker = TrialTracker(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, key, _run_name(key, ctx), origin)
    cfg, excess = ctx.resolve(config)
    # for the searcher only (the study's constraint and its link to MLflow), not logged as metrics
    told = {MLFLOW_RUN: tracker.run_id, **({COMPRESSION_EXCESS: excess} if excess is not None else {})}
    if cfg is None:
        _reject(tracker, config, ctx, told)
        return
    if tracker.finished:  # finished before the driver heard of it: tell the searcher, run nothing
        tune.report({**tracker.latest, "task": int(tracker.latest.get("task", 0)), "infeasible": 0, **told})
        return
    counts = count_params(cfg)
    extra = {"compression_ratio": counts.compression_ratio, "infeasible": 0}
    proxies = spawn_subsystems(cfg, ctx.placement, ctx.data_root)
    tracker.log_config(cfg.model_dump(), cfg.flat(), {"compression_ratio": f"{counts.compression_ratio:.6f}"})
    tracker.set_tags({"hypercl.worker_pid": os.getpid(), "hypercl.tune_trial_id": tune.get_context().get_trial_id(),
                      **ctx.tags(key),
                      **{f"placement.{name}": json.dumps(p.placement()) for name, p in proxies.items()}})
    run_dir = Path(tune.get_context().get_trial_dir()) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(cfg.to_yaml())
    exp = Experiment(cfg, run_dir, learner=compose(cfg, proxies), origin=origin)
    store = TrialCheckpoints(ctx.checkpoints)
    if store.fetch(key, run_dir / CHECKPOINT):
        exp.load_checkpoint()
        tracker.set_tags({"hypercl.resumed_from_task": exp.tasks_done})
        tracker.log_missing({t + 1: {**exp.metrics(t), **extra} for t in range(exp.tasks_done)})
    last = cfg.benchmark.num_tasks

    def on_task_end(t: int, metrics: dict[str, float]) -> None:
        metrics = {**metrics, **extra}
        store.save(key, run_dir / CHECKPOINT)  # first: a task logged is a task that never runs again
        tracker.log_task(metrics, step=t + 1)
        if t + 1 == last:
            # Tune may end the trial as soon as it sees the last report (ASHA at max_t),
            # so the run is completed in MLflow first.
            tracker.finish(exp.write_results(), run_dir, step=t + 1)
        tune.report({**metrics, **told})

    if exp.tasks_done == last:  # cut off after its last task was stored
        tracker.finish(exp.write_results(), run_dir, step=last)
        tune.report({**exp.metrics(last - 1), **extra, **told})
        return
    monitor = tracker.monitor_system() if ctx.system_metrics else None
    try:
        exp.run(on_task_end=on_task_end, show_progress=False)
    finally:  # also when Tune stops the trial (SystemExit at its next report): the monitor ends with the trial
        if monitor is not None:
            monitor.finish()


def _run_name(key: str, ctx: TrialContext) -> str:
    return f"trial-{key}" if ctx.space else f"variant-{int(key[1:])}"


def _reject(tracker: TrialTracker, sample: dict[str, Any], ctx: TrialContext, told: dict[str, Any]) -> None:
    """Infeasible architecture: recorded, never trained. Tune insists on the metric in every report, so
    it gets the worst value; the searcher tells the study a violated constraint instead (searcher.py)."""
    tracker.set_tags({INFEASIBLE_TAG: "no chunk size meets the compression bound",
                      "hypercl.sample": json.dumps({k: v for k, v in sample.items() if k != TRIAL_KEY})})
    tracker.client.set_terminated(tracker.run_id, "KILLED")
    tune.report({ctx.metric: ctx.worst, "task": 0, "infeasible": 1, **told})


def metric_for(cfg: ExperimentConfig) -> tuple[str, str]:
    """The sweep objective for a preset: final accuracy, or the final loss (MSE, NLL)."""
    metric = f"final_{score_name(cfg)}"
    return metric, metric_mode(metric)
