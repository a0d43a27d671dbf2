"""One continual-learning experiment, start to finish, in one process.

The run folder gets the resolved config before training starts, a
checkpoint after every task (so an interrupted run resumes at the next task
and ends with the same numbers), and at the end the accuracy matrices (JSON,
CSV, PNG) and a summary. Trackers hook in through `on_task_end`; the method
never learns who records it.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Callable

import torch

from hypercl_core.accounting import count_params
from hypercl_core.config import ExperimentConfig, build_config, read_yaml_tree
from hypercl_core.data.benchmarks import require_data
from hypercl_core.device import resolve_device
from hypercl_core.errors import UserError
from hypercl_core.methods import Subsystem, build_learner
from hypercl_core.provenance import provenance, resumed_origin
from hypercl_core.metrics import ScoreMatrix, lower_is_better, matrix_names, plot_matrix, primary_metric, score_name
from hypercl_core.seeding import seed_everything

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
RESULTS = "results.json"
TaskEndHook = Callable[[int, dict], None]


class Experiment:
    def __init__(self, cfg: ExperimentConfig, run_dir: str | os.PathLike, learner: Subsystem | None = None,
                 data_root: str | None = None, origin: dict | None = None):
        self.cfg = cfg
        # Where this result comes from (hypercl_core.provenance); a trial hands in its driver's command line.
        self.origin = origin or provenance()
        self.run_dir = Path(run_dir)
        self._learner = learner
        self.data_root = data_root
        self.matrices = {n: ScoreMatrix(cfg.benchmark.num_tasks, not lower_is_better(n)) for n in matrix_names(cfg)}
        self.task_stats: list[dict[str, float]] = []
        self.tasks_done = 0
        self._results: dict | None = None  # written for `tasks_done` tasks; rewritten only when it grows

    @property
    def learner(self) -> Subsystem:
        if self._learner is None:
            self._learner = build_learner(self.cfg, self.data_root)
        return self._learner

    # -- persistence ------------------------------------------------------
    # A checkpoint holds only tensors and plain containers (dicts, lists, tuples, str, numbers,
    # None; torch's RNG states are byte tensors), so it loads with weights_only=True: reading a
    # run folder never runs code someone put in it. Learners' state_dicts must keep to that.
    def save_checkpoint(self) -> None:
        state = {
            "tasks_done": self.tasks_done,
            "learner": self.learner.state_dict(),
            "matrices": {n: m.to_list() for n, m in self.matrices.items()},
            "task_stats": self.task_stats,
            "config": self.cfg.model_dump(),
            "origin": self.origin,
        }
        tmp = self.run_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / CHECKPOINT)

    def load_checkpoint(self, path: Path | None = None) -> None:
        path = path or self.run_dir / CHECKPOINT
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise UserError(f"checkpoint {path} holds objects other than tensors and plain containers, so it was "
                            "not written by hypercl (or was altered) and is not loaded; start a new run") from None
        # Through today's schema, so a key added since (default = old behaviour) does not orphan the run.
        try:
            same = _what_it_learns(build_config(state["config"], saved=True)) == _what_it_learns(self.cfg)
        except UserError:  # a key since removed or retyped
            same = False
        if not same:
            raise UserError(f"checkpoint in {self.run_dir} was written with a different config; start a new run")
        self.learner.load_state_dict(state["learner"])
        for name, rows in state["matrices"].items():
            self.matrices[name] = ScoreMatrix.from_list(rows, self.matrices[name].higher_is_better)
        self.task_stats = state["task_stats"]
        self.tasks_done = state["tasks_done"]
        if "origin" in state:  # the session that started the run stays its provenance; this one is appended
            self.origin = resumed_origin(state["origin"], self.origin)

    # -- the loop ---------------------------------------------------------
    def run(self, on_task_end: TaskEndHook | None = None, show_progress: bool = True) -> dict:
        cfg = self.cfg
        if self.tasks_done == 0:  # a resumed learner carries on from the random state it saved
            seed_everything(cfg.seed)
        total = cfg.benchmark.num_tasks
        bar = _progress_bar(total, cfg.train.iters_per_task, self.tasks_done, show_progress)  # epochs: no known total
        try:
            for t in range(self.tasks_done, total):
                if bar is not None:
                    bar.set_description(f"task {t + 1}/{total}")
                stats = self.learner.learn_task(t, bar.update if bar is not None else None)
                start = time.perf_counter()
                for name, scores in self.learner.evaluate(t).items():
                    self.matrices[name].set_row(t, scores)
                stats["eval_s"] = time.perf_counter() - start
                self.task_stats.append(stats)
                self.tasks_done = t + 1
                self.save_checkpoint()
                metrics = self.metrics(t)
                if bar is not None:
                    key = score_name(cfg)
                    bar.set_postfix_str(f"during {metrics[f'during_{key}']:.4g} final {metrics[f'final_{key}']:.4g}")
                if on_task_end is not None:
                    on_task_end(t, metrics)
        finally:
            if bar is not None:
                bar.close()
        return self.write_results()

    def metrics(self, t: int) -> dict[str, float]:
        """Flat per-task metrics: what trackers log and schedulers compare."""
        main = primary_metric(self.cfg)
        key = score_name(self.cfg)
        m = self.matrices[main]
        out = {
            "task": t + 1,
            f"during_{key}": m.during(t),
            f"final_{key}": m.final(t),
            "forgetting": m.forgetting(t),
            "train_s": sum(s["train_s"] for s in self.task_stats),
        }
        for name, matrix in self.matrices.items():
            out[f"final_{name}"] = matrix.final(t)
        for j, score in enumerate(m.values[t, : t + 1]):
            out[f"{key}_task{j}"] = float(score)
        return out

    def write_results(self) -> dict:
        """Results files for the tasks done so far (idempotent: a trial writes them before its last report)."""
        if self._results is not None and self._results["summary"].get("task") == self.tasks_done:
            return self._results
        main = primary_metric(self.cfg)
        counts = count_params(self.cfg)
        summary = self.metrics(self.tasks_done - 1) if self.tasks_done else {}
        steps = sum(s.get("steps", self.cfg.train.iters_per_task) for s in self.task_stats)  # older runs: iterations
        train_s = sum(s["train_s"] for s in self.task_stats)
        summary.update(
            steps_per_s=steps / train_s if train_s else 0.0,
            wall_s=train_s + sum(s["eval_s"] for s in self.task_stats),
            compression_ratio=counts.compression_ratio,
        )
        if self.task_stats and "trained_compression_ratio" in self.task_stats[-1]:
            summary["trained_compression_ratio"] = self.task_stats[-1]["trained_compression_ratio"]
        results = {
            "hypercl_version": self.origin["hypercl_version"],
            "provenance": self.origin,
            "finished": self.tasks_done == self.cfg.benchmark.num_tasks,
            "primary_matrix": main,
            "summary": summary,
            "params": counts.as_dict(),
            "matrices": {n: m.to_list() for n, m in self.matrices.items()},
            "task_stats": self.task_stats,
            "config": self.cfg.model_dump(),
        }
        (self.run_dir / RESULTS).write_text(json.dumps(results, indent=2))
        (self.run_dir / "matrix.csv").write_text(self.matrices[main].to_csv())
        title = f"{self.cfg.benchmark.name} {self.cfg.benchmark.scenario}, {self.cfg.method.name}"
        plot_matrix(self.matrices[main], main, title, self.run_dir / "matrix.png")
        self._results = results
        return results


def start_run(cfg: ExperimentConfig, run_dir: str | os.PathLike, **kwargs) -> Experiment:
    """A fresh run folder with the resolved config written before any training.
    The device and the data are checked first, so a run that cannot train leaves no folder."""
    resolve_device(cfg.device)
    if kwargs.get("learner") is None:  # a given learner brought its own data
        require_data(cfg.benchmark, kwargs.get("data_root"))
    path = Path(run_dir)
    if (path / CHECKPOINT).exists():
        raise UserError(f"run folder {path} already holds a run; resume it with --resume {path} or pick another --name")
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG).write_text(cfg.to_yaml())
    return Experiment(cfg, path, **kwargs)


def resume_run(run_dir: str | os.PathLike, device: str | None = None, **kwargs) -> Experiment:
    """The run folder's experiment at its last checkpoint; `device` moves it (e.g. a GPU run onto a CPU)."""
    path = Path(run_dir)
    if not (path / CONFIG).is_file():
        raise UserError(f"{path} is not a run folder (no {CONFIG}); pass the folder that `hypercl run` created")
    tree = read_yaml_tree(path / CONFIG)
    if device is not None:
        tree["device"] = device
    cfg = build_config(tree, source=str(path / CONFIG), saved=True)
    resolve_device(cfg.device)
    if kwargs.get("learner") is None:
        require_data(cfg.benchmark, kwargs.get("data_root"))
    exp = Experiment(cfg, path, **kwargs)
    if (path / CHECKPOINT).is_file():
        exp.load_checkpoint()
    if device is not None:
        (path / CONFIG).write_text(cfg.to_yaml())
    return exp


def _what_it_learns(cfg: ExperimentConfig) -> dict:
    """The config less where it runs: a checkpoint (saved on the CPU) resumes on any device."""
    return {k: v for k, v in cfg.model_dump().items() if k != "device"}


def _progress_bar(tasks: int, iters: int | None, done: int, enabled: bool):
    """Steps over the whole run; with epochs per task (steps depend on each task's size, which the
    driver does not load) it counts steps and their rate without a total."""
    if not enabled:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    if iters is None:
        return tqdm(total=None, unit="step", dynamic_ncols=True, mininterval=1.0)
    return tqdm(total=tasks * iters, initial=done * iters, unit="step", dynamic_ncols=True, mininterval=1.0)
