"""Accuracy matrices and the summaries the paper reports.

`A[i, j]` is the test score on task j after learning task i (j <= i).
"During" averages the diagonal (each task right after it was learned),
"final" averages the last row; forgetting is how much each earlier task lost
between the two.
"""

from __future__ import annotations

import csv
import io
import os
import re

from typing import TYPE_CHECKING

import numpy as np

from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.errors import UserError
from hypercl_core.registry import method_spec

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

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
    """The matrix a run is judged by (the method's registry entry says which)."""
    return method_spec(cfg).primary(cfg)


def classifier_primary(cfg: ExperimentConfig) -> str:
    """A classifier's: accuracy with the task given (CL1) or inferred (CL2/CL3); MSE for regression."""
    if BENCHMARKS[cfg.benchmark.name].regression:
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
    """The score matrices an evaluation fills for this config (the method's registry entry says which)."""
    return method_spec(cfg).scores(cfg)


def hnet_classifier_scores(cfg: ExperimentConfig) -> list[str]:
    """An hnet classifier's: the task given, and where it infers the task (HNET+ENT, HNET+TIR)
    the task inferred and how often the inferred task is right; MSE for regression."""
    if BENCHMARKS[cfg.benchmark.name].regression:
        return ["mse"]
    return ["acc_task_given", "acc_task_inferred", "task_inference_acc"] if infers_task(cfg) else ["acc_task_given"]


class ScoreMatrix:
    def __init__(self, num_tasks: int, higher_is_better: bool = True):
        self.values = np.full((num_tasks, num_tasks), np.nan)
        self.higher_is_better = higher_is_better

    @classmethod
    def from_list(cls, rows: list[list[float | None]], higher_is_better: bool = True) -> ScoreMatrix:
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


# What each matrix's colorbar says; accuracies are in %, the losses in their own units.
SCORE_LABELS = {
    "acc_task_given": "test accuracy, task given (%)",
    "acc_task_inferred": "test accuracy, task inferred (%)",
    "task_inference_acc": "task-inference accuracy (%)",
    "mse": "test MSE",
    "nll": "test NLL bound (negative ELBO per image)",
    "sample_drift": "sample drift (mean squared pixel change)",
}
ANNOTATED_TASKS = 20  # beyond this many tasks the cells are too small for numbers (matrix.csv has them)


def chance_accuracy(cfg: ExperimentConfig) -> float | None:
    """Accuracy (%) of a uniform guess among the classes one answer picks from: a task's head
    (CL1 given, CL2 shared) or all tasks' classes (CL3); None for a loss-scored run."""
    if score_name(cfg) != "acc":
        return None
    per_task = BENCHMARKS[cfg.benchmark.name].outputs_per_task
    classes = per_task * (cfg.benchmark.num_tasks if cfg.benchmark.scenario == "cl3" else 1)
    return 100.0 / classes


def color_limits(matrix: ScoreMatrix, score: str) -> tuple[float, float]:
    """The heatmap's color range. Accuracies: always 0-100 %, so a 1.5-point dip at 99 % shows as
    the small change it is and runs compare by color. Losses have no common upper bound (MSE,
    nats, pixel change), so their scale starts at 0 (all three are >= 0) and ends at the
    matrix's largest value: a color is then proportional to the loss, and doubling reads as
    doubling, unlike a min-max stretch that turns any rise into the whole scale."""
    if score in LOSSES:
        top = float(np.nanmax(matrix.values, initial=0.0))
        return 0.0, top if top > 0 else 1.0
    return 0.0, 100.0


def text_color(rgba: tuple[float, ...]) -> str:
    """Black or white, whichever contrasts more with a cell of this color (WCAG relative
    luminance; 0.179 is where the two contrast ratios are equal)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"


def matrix_figure(matrix: ScoreMatrix, score: str, title: str):
    """The heatmap (rows: after learning task i, columns: evaluated task j, both 1-based as the
    progress bar counts them) with final / during / forgetting in the title."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    values = matrix.values
    n = len(values)
    side = min(0.55 * n, 9.0)
    fig = Figure(figsize=(2.2 + side, 1.3 + side))
    ax = fig.add_subplot()
    norm = Normalize(*color_limits(matrix, score))
    cmap = "viridis" if matrix.higher_is_better else "viridis_r"
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    if n <= ANNOTATED_TASKS:
        digits = _digits(score)
        for i, j in zip(*np.nonzero(~np.isnan(values))):
            ax.text(j, i, format(values[i, j], digits), ha="center", va="center", fontsize=8,
                    color=text_color(image.cmap(norm(values[i, j]))))
    ticks = range(0, n, max(1, n // ANNOTATED_TASKS))
    ax.set_xticks(list(ticks), [str(t + 1) for t in ticks])
    ax.set_yticks(list(ticks), [str(t + 1) for t in ticks])
    ax.set_xlabel("evaluated task")
    ax.set_ylabel("after learning task")
    ax.set_title(f"{title}\n{summary_line(matrix, score)}" if matrix.tasks_done() else title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label(SCORE_LABELS.get(score, score), fontsize=8)
    fig.tight_layout()
    return fig


def _digits(score: str) -> str:
    """Accuracies to 0.1 point; losses (any magnitude) to three significant digits."""
    return ".3g" if score in LOSSES else ".1f"


def summary_line(matrix: ScoreMatrix, score: str) -> str:
    """The figures the paper reports, as the heatmap's subtitle (forgetting > 0 is worse)."""
    if score in LOSSES:
        return f"final {matrix.final():.3g} · during {matrix.during():.3g} · forgetting {matrix.forgetting():.3g}"
    return (f"final {matrix.final():.2f} % · during {matrix.during():.2f} % · "
            f"forgetting {matrix.forgetting():.2f} points")


def plot_matrix(matrix: ScoreMatrix, score: str, title: str, path: str | os.PathLike) -> None:
    """Heatmap PNG of the matrix of `score` (a matrix name, see SCORE_LABELS)."""
    matrix_figure(matrix, score, title).savefig(path, dpi=110)
