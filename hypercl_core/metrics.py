"""Accuracy matrices and the summaries the paper reports.

`A[i, j]` is the test score on task j after learning task i (j <= i).
"During" averages the diagonal (each task right after it was learned),
"final" averages the last row; forgetting is how much each earlier task lost
between the two.
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np

from hypercl_core.config import ExperimentConfig
from hypercl_core.errors import UserError

LOSSES = ("mse", "nll", "sample_drift")  # scores where lower is better
ACCURACIES = ("acc", "acc_task_given", "acc_task_inferred", "task_inference_acc")  # in %, higher is better
# Summary metrics that are no score matrix, by direction. Forgetting is signed so that > 0 is
# worse for every score (ScoreMatrix.forgetting flips the drop of a loss), so lower is better.
LOWER_IS_BETTER = ("forgetting", "wall_s", "train_s", "eval_s", "compression_ratio", "trained_compression_ratio",
                   "infeasible")
HIGHER_IS_BETTER = ("steps_per_s", "task", "finished_trials")
_SCORE_KEY = re.compile(r"^(?:during_|final_)?(?P<score>.+?)(?:_task\d+)?$")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of this logged metric is the better one: the one answer that
    `best`, sweeps and plots share. Knows what experiments log (`during_<score>`,
    `final_<score>`, `final_<matrix>`, `<score>_task<j>`, forgetting, timings, ratios) and the
    sweep parent's summaries (`best_<m>`, `<m>_mean`, `<m>_sem`)."""
    if metric.endswith("_sem"):  # the spread over seeds: smaller is surer
        return True
    name = metric.removeprefix("best_").removesuffix("_mean")
    if name in LOWER_IS_BETTER:
        return True
    if name in HIGHER_IS_BETTER:
        return False
    match = _SCORE_KEY.match(name)
    score = match.group("score") if match else name
    if score in LOSSES:
        return True
    if score in ACCURACIES:
        return False
    raise UserError(f"metric {metric!r} is none that hypercl logs, so which way it ranks is unknown; pass --mode "
                    "max or --mode min, or a metric such as final_acc, final_mse, forgetting or wall_s")


def metric_mode(metric: str) -> str:
    """`min` or `max`, as Ray Tune and `hypercl best --mode` spell the direction of `metric`."""
    return "min" if lower_is_better(metric) else "max"


def primary_metric(cfg: ExperimentConfig) -> str:
    """The matrix a run is judged by: accuracy with the task given (CL1) or inferred
    (CL2/CL3), MSE for regression, negative ELBO for a replay model learned on its own."""
    if cfg.method.name == "replay":
        return "nll" if cfg.replay.model == "vae" else "sample_drift"
    if cfg.benchmark.name == "regression1d":
        return "mse"
    return "acc_task_given" if cfg.benchmark.scenario == "cl1" else "acc_task_inferred"


def score_name(cfg: ExperimentConfig) -> str:
    """Suffix of the summary keys: during_acc / final_acc, during_mse / final_mse, ..."""
    main = primary_metric(cfg)
    return main if main in LOSSES else "acc"


def higher_is_better(cfg: ExperimentConfig) -> bool:
    """Of the run's own score (score_name)."""
    return not lower_is_better(score_name(cfg))


def infers_task(cfg: ExperimentConfig) -> bool:
    """Whether evaluation scores HNET+ENT task inference (see `train.eval_inferred`)."""
    if not higher_is_better(cfg):
        return False
    return cfg.benchmark.scenario != "cl1" or cfg.train.eval_inferred


def matrix_names(cfg: ExperimentConfig) -> list[str]:
    """The score matrices an evaluation fills for this config."""
    main = primary_metric(cfg)
    if main == "nll":
        return ["nll", "sample_drift"]
    if main in LOSSES:
        return [main]
    if cfg.method.name == "hnet_r":  # answers without inferring a task: no task-inference matrix
        return ["acc_task_given"] if cfg.benchmark.scenario == "cl1" else ["acc_task_given", "acc_task_inferred"]
    return ["acc_task_given", "acc_task_inferred", "task_inference_acc"] if infers_task(cfg) else ["acc_task_given"]


class ScoreMatrix:
    def __init__(self, num_tasks: int, higher_is_better: bool = True):
        self.values = np.full((num_tasks, num_tasks), np.nan)
        self.higher_is_better = higher_is_better

    @classmethod
    def from_list(cls, rows: list[list[float | None]], higher_is_better: bool = True) -> "ScoreMatrix":
        m = cls(len(rows), higher_is_better)
        m.values[:] = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        return m

    def set_row(self, after_task: int, scores: list[float]) -> None:
        self.values[after_task, : len(scores)] = scores

    def tasks_done(self) -> int:
        return int(np.sum(~np.isnan(self.values[:, 0])))

    def during(self, upto: int | None = None) -> float:
        n = self.tasks_done() if upto is None else upto + 1
        return float(np.mean(np.diag(self.values)[:n]))

    def final(self, upto: int | None = None) -> float:
        i = self.tasks_done() - 1 if upto is None else upto
        return float(np.mean(self.values[i, : i + 1]))

    def forgetting(self, upto: int | None = None) -> float:
        """Mean drop from right-after-learning to now over earlier tasks (sign so that >0 is worse)."""
        i = self.tasks_done() - 1 if upto is None else upto
        if i == 0:
            return 0.0
        drop = np.diag(self.values)[:i] - self.values[i, :i]
        return float(np.mean(drop if self.higher_is_better else -drop))

    def to_list(self) -> list[list[float | None]]:
        return [[None if np.isnan(v) else float(v) for v in row] for row in self.values]

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        n = len(self.values)
        writer.writerow(["after_task"] + [f"task_{j}" for j in range(n)])
        for i, row in enumerate(self.values):
            writer.writerow([i] + ["" if np.isnan(v) else f"{v:.6g}" for v in row])
        return buf.getvalue()


def plot_matrix(matrix: ScoreMatrix, title: str, path) -> None:
    """Heatmap PNG of the matrix (rows: after task i, columns: task j)."""
    import matplotlib  # noqa: PLC0415 - plotting is optional at import time

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    values = matrix.values
    n = len(values)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis" if matrix.higher_is_better else "viridis_r")
    for i in range(n):
        for j in range(n):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after learning task")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
