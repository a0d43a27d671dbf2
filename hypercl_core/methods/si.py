"""Synaptic intelligence (Zenke et al. 2017), as van de Ven & Tolias (2019) ran it for the
paper's Table 1.

While task t is learned, every step adds −g·Δθ to a path integral W (g the step's
gradient, of the whole loss as in their code; Δθ the step's change). After the task,
Ω += W / (Δ_t² + ξ), Δ_t the task's total change and ξ the damping, and the weights are
kept as θ*; the penalty on later tasks is c Σ Ω (θ − θ*)².
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from hypercl_core.methods.own_weights import register_own_weights
from hypercl_core.methods.quadratic_penalty import QuadraticPenalty
from hypercl_core.registry import table1
from hypercl_core.sections import Section


class SiSection(Section):
    name: Literal["si"] = "si"
    c: float = Field(1.0, ge=0)  # the penalty's strength
    xi: float = Field(0.1, gt=0)  # ξ, the damping that bounds Ω where a weight barely moved
    keep_optimizer: bool = False  # one Adam over all tasks (van de Ven & Tolias's default), not one per task


class SynapticIntelligence(QuadraticPenalty):
    @property
    def scale(self) -> float:
        return self.cfg.method.c

    def begin_task(self, t: int) -> None:
        self.path = torch.zeros_like(self.importance)  # W
        self.start = self.weights.detach().clone()

    def update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        before = self.weights.detach().clone()
        super().update(optimizer, loss)
        self.path -= self.weights.grad * (self.weights.detach() - before)

    def end_task(self, t: int) -> None:
        moved = self.weights.detach() - self.start
        self.importance = self.importance + self.path / (moved.square() + self.cfg.method.xi)
        self.anchor = self.weights.detach().clone()


register_own_weights("si", SiSection, {"classifier": SynapticIntelligence}, "SI",
                     reported=table1((94.75, 95.33, 29.31), (99.09, 65.36, 19.99)))
