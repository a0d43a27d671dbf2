"""Joint training: at task t the network learns every task seen so far at once, each
batch drawing equally from tasks 0..t (the non-continual upper bound)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from hypercl_core.methods.own_weights import register_own_weights
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.sections import Section


class JointSection(Section):
    name: Literal["joint"] = "joint"


class JointTrainer(ReplayClassifier):
    replays = False

    def task_loss(self, t: int, gen: torch.Generator) -> torch.Tensor:
        """ceil(batch/(t+1)) examples of each task, all tasks through the target in one pass
        (`replay_logits` routes each to its own head). One draw per task is a loop over at
        most the benchmark's tasks, beside a forward pass over all of them."""
        per_task = math.ceil(self.cfg.train.batch_size / (t + 1))
        xs, ys = [], []
        for j in range(t + 1):
            task = self.bench.tasks[j]
            x, y = task.train_batch(torch.randint(task.num_train, (per_task,), generator=gen, device=self.device), gen)
            xs.append(x)
            ys.append(self.labels(y, j))
        logits = self.replay_logits(torch.stack(xs), self.weights, t + 1, train=True)
        return F.cross_entropy(logits.flatten(0, 1), torch.cat(ys))


register_own_weights("joint", JointSection, {"classifier": JointTrainer}, "Joint")
