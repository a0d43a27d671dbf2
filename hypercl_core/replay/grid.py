"""The sample grid of a replay model (the paper's Fig. A8): per task, the samples
drawn right after learning it next to the same samples after learning every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def plot_sample_grid(after_learning: torch.Tensor, after_all: torch.Tensor, labels: list[str], title: str,
                     path: Path) -> None:
    """after_learning, after_all: (tasks, n, pixels) in [0, 1], square images."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tasks, n, pixels = after_learning.shape
    side = int(round(pixels ** 0.5))

    def strip(images: torch.Tensor) -> np.ndarray:  # (n, pixels) -> one row of n images
        return images.reshape(n, side, side).permute(1, 0, 2).reshape(side, n * side).numpy()

    gap = np.ones((side, side // 2))
    rows = [np.hstack([strip(after_learning[t]), gap, strip(after_all[t])]) for t in range(tasks)]
    fig, ax = plt.subplots(figsize=(0.45 * (2 * n + 0.5), 0.5 * tasks + 0.6))
    ax.imshow(np.vstack(rows), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([side * (t + 0.5) for t in range(tasks)], labels)
    ax.set_xticks([side * n / 2, side * (n + 0.5 + n / 2)], ["right after learning the task", "after the last task"])
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
