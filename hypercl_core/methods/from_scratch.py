"""Training from scratch: an independent target network per task, freshly drawn, that only
ever sees its own task (the paper's Fig. 5 upper bound for CL1).

Nothing is shared (batch-norm statistics included), so nothing is forgotten; the price is
one network per task. Without
a task id there is no way to pick the network, so it is CL1 only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from hypercl_core.methods.own_weights import register_own_weights, trained_weights
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.sections import Section
from hypercl_core.seeding import task_generator

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


INIT_STREAM = 6  # task t's fresh network


class FromScratchSection(Section):
    name: Literal["from_scratch"] = "from_scratch"


class FromScratch(ReplayClassifier):
    replays = False

    def __init__(self, cfg: ExperimentConfig, bench, device: torch.device):
        super().__init__(cfg, bench, device)
        self.trained: list[torch.Tensor] = []  # task t's network, kept after learning it

    def logits(self, x: torch.Tensor, weights: torch.Tensor, task: int, known: int, train: bool = False) -> torch.Tensor:
        """Task t's network with its own batch-norm statistics (targets with batch norm keep a set
        per task), so a later network's training leaves an earlier one's as it was."""
        return self.target(x, weights, task, task=task, train=train)

    def begin_task(self, t: int) -> None:
        """Task 0 starts from the initial draw; task t > 0 from a draw of its own stream."""
        if t:
            draw = self.target.init_weights(task_generator(self.cfg.seed, t, torch.device("cpu"), stream=INIT_STREAM))
            with torch.no_grad():
                self.weights.copy_(draw)

    def end_task(self, t: int) -> None:
        del self.trained[t:]
        self.trained.append(self.weights.detach().clone())

    def weights_for(self, task: int) -> torch.Tensor:
        return self.trained[task]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "trained": [w.cpu() for w in self.trained]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.trained = [w.to(self.device) for w in state["trained"]]


def one_per_task(cfg: ExperimentConfig):
    return trained_weights(cfg, copies=cfg.benchmark.num_tasks)


def check_from_scratch(cfg: ExperimentConfig) -> None:
    if cfg.benchmark.scenario != "cl1":
        raise ValueError("from_scratch keeps one network per task and needs the task id to pick it: "
                         "set benchmark.scenario=cl1")


register_own_weights("from_scratch", FromScratchSection, {"classifier": FromScratch}, "From scratch",
                     count_params=one_per_task, check=check_from_scratch)
