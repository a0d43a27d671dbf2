"""HyperMask (Książek & Spurek, 2023): one shared target network, a mask per task.

The hypernetwork maps a task embedding to a semi-binary mask over the target's
weights: |tanh| of its output, with the lowest p percent of every tensor set to
zero and the rest kept as they are. Task t runs the target with W ⊙ m_t. What
protects earlier tasks is the output regularizer on the hypernetwork's raw
outputs (no lookahead) plus an L1 penalty on changing W where the current mask
uses it. Everything else (training loop, evaluation, HNET+ENT task inference,
state) is HNET's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hypercl_core.config import ExperimentConfig
from hypercl_core.data.tasks import Benchmark
from hypercl_core.methods.hnet import HnetLearner


class HyperMaskLearner(HnetLearner):
    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        super().__init__(cfg, bench, device)
        self.weights = nn.Parameter(self.target.init_weights().to(device))
        self.weights_before_task = self.weights.detach().clone()
        # The masked tensors are the leading part of the flat weights; the output bias follows unmasked.
        self.masked_sizes = self.target.param_sizes[:-1]
        self.unmasked = self.target.param_sizes[-1]

    def masks(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, masked weights) hnet outputs -> (B, all weights) semi-binary masks, 1 on the output bias."""
        parts = []
        for part in torch.split(raw.tanh().abs(), self.masked_sizes, dim=-1):
            zeros = math.floor(self.cfg.method.sparsity / 100 * part.shape[-1])
            if zeros:
                threshold = part.kthvalue(zeros, dim=-1, keepdim=True).values
                part = part * (part > threshold)
            parts.append(part)
        parts.append(raw.new_ones(raw.shape[0], self.unmasked))
        return torch.cat(parts, dim=-1)

    def output_blocks(self) -> None:
        """Mask scores go through |tanh| and a per-tensor percentile, not used as weights:
        one init scale for the whole output layer (the setting HyperMask was measured with)."""
        return None

    def task_weights(self, embs: torch.Tensor) -> torch.Tensor:
        return self.weights * self.masks(self.hnet(embs))

    def step_loss(self, t: int, emb: torch.Tensor, x: torch.Tensor, y: torch.Tensor, head: int) -> torch.Tensor:
        mask = self.masks(self.hnet(emb.unsqueeze(0)))[0]
        loss = self._task_loss(self.target(x, self.weights * mask, head), y)
        if t > 0 and self.cfg.method.l1 > 0:
            loss = loss + self.cfg.method.l1 * ((self.weights - self.weights_before_task).abs() * mask).sum()
        return loss

    def trained_parameters(self) -> list[nn.Parameter]:
        return [*self.hnet.parameters(), self.weights]

    def begin_task(self, t: int) -> None:
        self.weights_before_task = self.weights.detach().clone()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.weights.copy_(state["weights"].to(self.device))
