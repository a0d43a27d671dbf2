"""The output regularizer with one-step lookahead (paper Eq. 2).

Before task T the hypernetwork's outputs for every earlier embedding are
snapshotted. Each step then penalises how far the outputs for those
embeddings would drift if the optimizer took its next step: the lookahead
replays Adam's update arithmetic on copies, leaving the optimizer state alone.
All previous tasks (or a random subset of K) go through the hnet as one batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def adam_lookahead(optimizer: torch.optim.Adam) -> dict[nn.Parameter, torch.Tensor]:
    """The detached parameter change `optimizer.step()` would make now.

    Mirrors torch.optim.Adam (no weight decay, no amsgrad) without writing to
    `optimizer.state`, so the real step afterwards is unaffected.
    """
    deltas: dict[nn.Parameter, torch.Tensor] = {}
    with torch.no_grad():
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0) or group.get("amsgrad", False) or group.get("maximize", False):
                raise ValueError("adam_lookahead supports plain Adam only (no weight decay, amsgrad or maximize)")
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = optimizer.state.get(p)
                if state:
                    step = float(state["step"]) + 1
                    m = state["exp_avg"].mul(beta1).add_(p.grad, alpha=1 - beta1)
                    v = state["exp_avg_sq"].mul(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                else:
                    step = 1.0
                    m = p.grad.mul(1 - beta1)
                    v = p.grad.square().mul_(1 - beta2)
                denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
                deltas[p] = m.div_(denom).mul_(-lr / (1 - beta1**step))
    return deltas


class OutputRegularizer:
    """β/|S| · Σ_{t∈S} ‖mask_t ⊙ (h(e_t; θ + Δθ) − W*_t)‖², S = previous tasks or a subset."""

    def __init__(
        self,
        hnet: nn.Module,
        prev_embs: torch.Tensor,
        beta: float,
        masks: torch.Tensor | None = None,
        subset: int | None = None,
    ):
        self.prev_embs = prev_embs.detach()
        self.beta = beta
        self.masks = masks
        self.subset = subset
        with torch.no_grad():
            self.targets = hnet(self.prev_embs).detach()

    @property
    def num_prev(self) -> int:
        return len(self.prev_embs)

    def loss(
        self,
        hnet: nn.Module,
        deltas: dict[nn.Parameter, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        ids = self._pick(generator)
        embs, targets = self.prev_embs, self.targets
        masks = self.masks
        if ids is not None:
            embs, targets = embs[ids], targets[ids]
            masks = masks[ids] if masks is not None else None
        if deltas:
            params = {name: p + deltas[p] if p in deltas else p for name, p in hnet.named_parameters()}
            outputs = functional_call(hnet, params, (embs,))
        else:
            outputs = hnet(embs)
        sq = (outputs - targets).square()
        if masks is not None:
            sq = sq * masks
        return self.beta * sq.sum() / len(embs)

    def _pick(self, generator: torch.Generator | None) -> torch.Tensor | None:
        if self.subset is None or self.subset >= self.num_prev:
            return None
        device = self.prev_embs.device
        return torch.randperm(self.num_prev, generator=generator, device=generator.device if generator else device)[
            : self.subset
        ].to(device)
