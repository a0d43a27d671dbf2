"""What online EWC and SI share: a penalty Σ_i Ω_i (θ_i − θ*_i)² that holds every weight near
where the earlier tasks left it (θ*), in proportion to how much those tasks rely on it (Ω).

The methods differ only in how they measure Ω after a task (a Fisher diagonal; a path
integral) and in the penalty's scale.
"""

from __future__ import annotations

import torch

from hypercl_core.methods.replay_classifier import ReplayClassifier


class QuadraticPenalty(ReplayClassifier):
    replays = False
    scale: float  # the penalty's factor: λ·γ/2 (online EWC), c (SI)

    def __init__(self, cfg, bench, device: torch.device):
        super().__init__(cfg, bench, device)
        self.importance = torch.zeros_like(self.weights.detach())  # Ω, summed over the tasks so far
        self.anchor: torch.Tensor | None = None  # θ* after the last task learned; None before any
        self.optimizer: torch.optim.Adam | None = None  # the one Adam of every task, with method.keep_optimizer

    def task_optimizer(self) -> torch.optim.Adam:
        """With `method.keep_optimizer` one Adam for all tasks, its moments carried from task to task, as
        van de Ven & Tolias's code runs by default (its `--optimizer adam`; `adam_reset` starts each anew)."""
        if not self.cfg.method.keep_optimizer:
            return super().task_optimizer()
        if self.optimizer is None:
            self.optimizer = super().task_optimizer()
        return self.optimizer

    def penalty(self) -> torch.Tensor | None:
        if self.anchor is None:
            return None
        return self.scale * (self.importance * (self.weights - self.anchor).square()).sum()

    def state_dict(self) -> dict:
        anchor = None if self.anchor is None else self.anchor.cpu()
        kept = {"optimizer": self.optimizer.state_dict()} if self.optimizer is not None else {}
        return {**super().state_dict(), "importance": self.importance.cpu(), "anchor": anchor, **kept}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.importance = state["importance"].to(self.device)
        self.anchor = None if state["anchor"] is None else state["anchor"].to(self.device)
        if "optimizer" in state:
            self.optimizer = super().task_optimizer()
            self.optimizer.load_state_dict(state["optimizer"])
