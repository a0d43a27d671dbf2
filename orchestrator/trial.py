"""The Tune trainable: one trial is one continual-learning experiment.

The trial's own bundle runs the experiment loop of hypercl_core against
subsystem actors in the other bundles, reports after every task (so ASHA can
stop bad trials early) with a checkpoint (so a retried trial resumes at its
next task), and records everything in its MLflow run.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from hypercl_core.accounting import count_params
from hypercl_core.config import ExperimentConfig, build_config, config_from_flat
from hypercl_core.experiment import CHECKPOINT, CONFIG, Experiment
from hypercl_core.methods import compose
from hypercl_core.metrics import higher_is_better, score_name
from orchestrator.actors import Placement, spawn_subsystems
from orchestrator.sweep import VARIANT
from orchestrator.tracking import TrialTracker


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled values; shipped once via the object store."""

    base: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    metric: str
    mode: str
    placement: Placement = field(default_factory=Placement)
    space: dict[str, Any] | None = None
    variants: list[dict[str, Any]] = field(default_factory=list)
    data_root: str | None = None

    @property
    def worst(self) -> float:
        return 0.0 if self.mode == "max" else 1e9

    def resolve(self, sample: dict[str, Any]) -> ExperimentConfig | None:
        """The trial's config, or None when no chunk size meets the space's compression bound."""
        base = build_config(self.base)
        if VARIANT in sample:
            return config_from_flat(self.variants[sample[VARIANT]], base)
        from search_spaces.space import SearchSpace  # noqa: PLC0415

        space = SearchSpace.model_validate(self.space)
        return space.materialize(space.decode(sample), base)


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    # Ray Train announces every checkpoint at INFO; with a report per task that drowns the progress lines.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    trial = tune.get_context()
    cfg = ctx.resolve(config)
    if cfg is None:
        _reject(_tracker(ctx), config, ctx)
        return
    counts = count_params(cfg)
    # The subsystems are built before the MLflow run is opened: Tune saves its experiment
    # state at the end of the step that started this trial, and a driver killed before that
    # save forgets the trial; opening the run later keeps such a trial from leaving a run behind.
    try:
        proxies = spawn_subsystems(cfg, ctx.placement, ctx.data_root)
    finally:
        tracker = _tracker(ctx)
        tracker.log_config(cfg.flat(), {"compression_ratio": f"{counts.compression_ratio:.6f}"})
    tracker.set_tags({f"placement.{name}": json.dumps(p.placement()) for name, p in proxies.items()})
    run_dir = Path(trial.get_trial_dir()) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(cfg.to_yaml())
    exp = Experiment(cfg, run_dir, learner=compose(cfg, proxies))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            exp.load_checkpoint(Path(folder) / CHECKPOINT)
        tracker.set_tags({"hypercl.resumed_from_task": exp.tasks_done})

    def on_task_end(t: int, metrics: dict[str, float]) -> None:
        metrics = {**metrics, "compression_ratio": counts.compression_ratio, "infeasible": 0}
        tracker.log_task(metrics, step=t + 1)
        if t + 1 == cfg.benchmark.num_tasks:
            # Tune may end the trial as soon as it sees the last report (ASHA at max_t),
            # so the run is completed in MLflow first.
            tracker.finish(exp.write_results()["summary"], run_dir, step=t + 1)
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(run_dir / CHECKPOINT, folder)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    if exp.tasks_done == cfg.benchmark.num_tasks:  # restored after its last task was checkpointed
        tracker.finish(exp.write_results()["summary"], run_dir, step=exp.tasks_done)
        return
    exp.run(on_task_end=on_task_end, show_progress=False)


def _tracker(ctx: TrialContext) -> TrialTracker:
    trial = tune.get_context()
    return TrialTracker(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, trial.get_trial_id(),
                        trial.get_trial_name())


def _reject(tracker: TrialTracker, sample: dict[str, Any], ctx: TrialContext) -> None:
    """Infeasible architecture: recorded and reported as worst, never trained."""
    tracker.set_tags({"hypercl.infeasible": "no chunk size meets the compression bound",
                      "hypercl.sample": json.dumps(sample)})
    tracker.client.set_terminated(tracker.run_id, "KILLED")
    tune.report({ctx.metric: ctx.worst, "task": 0, "infeasible": 1})


def metric_for(cfg: ExperimentConfig) -> tuple[str, str]:
    """The sweep objective for a preset: final accuracy, or the final loss (MSE, NLL)."""
    return f"final_{score_name(cfg)}", "max" if higher_is_better(cfg) else "min"
