"""Seeding: one call before a fresh run, and one generator per task.

Each task draws from its own generator derived from (seed, task), so a run
resumed at task t replays exactly the random stream an uninterrupted run
would have used there.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_generator(seed: int, task: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """Independent streams per (seed, task, purpose), e.g. batches vs. embedding init."""
    return torch.Generator(device=device).manual_seed(1_000_003 * seed + 7919 * (task + 1) + 104_729 * stream)


def derived_seed(seed: int, stream: int) -> int:
    """A global-RNG seed for a part other than the run's main learner (torch's modules draw
    from the global RNG), apart from every other run's seed: not seed + k, which is seed + k's own."""
    return (1_000_003 * seed + 104_729 * stream + 15_485_863) % 2**63
