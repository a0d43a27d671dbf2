"""The sample grid of a replay model (the paper's Fig. A8): per task, the samples
drawn right after learning it next to the same samples after learning every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hypercl_core.config import ExperimentConfig

# Who trains the replay model: alone, or as the replay of a classifier method.
OWNERS = {"replay": "trained alone", "hnet_r": "replayed by HNET+R", "hnet_tir": "replayed by HNET+TIR"}


def sample_grid_title(cfg: ExperimentConfig, tasks_done: int, run: str | None = None) -> str:
    """Names the model (VAE or GAN), who trained it and the run: without them a VAE's grid and a
    GAN's carry the same title. The scenario is named only for a classifier's replay, where it matters."""
    owner = OWNERS.get(cfg.method.name, cfg.method.name)
    bench = cfg.benchmark.name if cfg.method.name == "replay" else f"{cfg.benchmark.name} {cfg.benchmark.scenario}"
    title = (f"{cfg.replay.model.upper()} samples ({owner}), {bench}: "
             f"{tasks_done} of {cfg.benchmark.num_tasks} tasks learned")
    return f"{title}\nrun {run}" if run else title


def plot_sample_grid(after_learning: torch.Tensor, after_all: torch.Tensor, labels: list[str], title: str,
                     path: Path) -> None:
    """after_learning, after_all: (tasks, n, pixels) in [0, 1], square images."""
    from matplotlib.figure import Figure  # plotting is optional at import time

    tasks, n, pixels = after_learning.shape
    side = round(pixels ** 0.5)

    def strip(images: torch.Tensor) -> np.ndarray:  # (n, pixels) -> one row of n images
        return images.reshape(n, side, side).permute(1, 0, 2).reshape(side, n * side).numpy()

    gap = np.ones((side, side // 2))
    rows = [np.hstack([strip(after_learning[t]), gap, strip(after_all[t])]) for t in range(tasks)]
    fig = Figure(figsize=(0.45 * (2 * n + 0.5), 0.5 * tasks + 0.6))
    ax = fig.add_subplot()
    ax.imshow(np.vstack(rows), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([side * (t + 0.5) for t in range(tasks)], labels)
    ax.set_xticks([side * n / 2, side * (n + 0.5 + n / 2)], ["right after learning the task", "after the last task"])
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
