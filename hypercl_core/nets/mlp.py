"""A multi-head MLP as a pure function of a flat weight vector.

Publishing its tensors (`param_specs`) and taking weights as an argument lets any weight
generator drive it: a hypernetwork (HNET), a masked weight set (HyperMask) or
ordinary parameters. Weights may carry a leading batch dimension, so the
networks of several tasks run in one batched matmul (entropy-based task
inference) instead of a Python loop.
"""

from __future__ import annotations

from typing import Callable

import torch

from hypercl_core.nets.activations import ACTIVATIONS
from hypercl_core.nets.target import ParamSpec, TargetNetwork, select_head


class TargetMLP(TargetNetwork):
    def __init__(self, in_dim: int, hidden: list[int], outputs_per_head: int, num_heads: int, activation: str):
        self.input_shape = (in_dim,)
        self.outputs_per_head = outputs_per_head
        self.num_heads = num_heads
        self.act = ACTIVATIONS[activation]
        dims = [in_dim, *hidden, outputs_per_head * num_heads]
        last = len(dims) - 2
        self.param_specs = []
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            heads = num_heads if i == last else 1
            self.param_specs += [ParamSpec(f"layers.{i}.weight", (fan_out, fan_in), "weight", heads, i == last),
                                 ParamSpec(f"layers.{i}.bias", (fan_out,), "bias", heads, i == last)]

    def forward(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None = 0,
                task: int | torch.Tensor | None = None, train: bool = False) -> torch.Tensor:
        """x: (N, in) or (B, N, in), or images (N, C, H, W), flattened; flat: (num_weights,) or
        (B, num_weights)."""
        if x.dim() == 4:
            x = x.flatten(1)
        params = self.unflatten(flat)
        weights, biases = params[0::2], params[1::2]
        h = x
        for w, b in zip(weights[:-1], biases[:-1]):
            h = self.act(_linear(h, w, b))
        w_out, b_out = weights[-1], biases[-1]
        if head is not None and self.num_heads > 1:
            w_out, b_out = select_head(w_out, self.param_specs[-2], head), select_head(b_out, self.param_specs[-1], head)
        return _linear(h, w_out, b_out)

    def squared_grad_sum(self, x: torch.Tensor, flat: torch.Tensor,
                         loss: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Closed form: a layer z = h Wᵀ + b gives example n the gradient δ_n h_nᵀ (δ_n = ∂loss_n/∂z_n),
        so Σ_n of its square is (δ²)ᵀ(h²): one backward pass and a matmul per layer, exact."""
        if x.dim() == 4:
            x = x.flatten(1)
        params = self.unflatten(flat.detach())
        inputs, outputs = [], []
        h = x
        for i, (w, b) in enumerate(zip(params[0::2], params[1::2])):
            if i:
                h = self.act(outputs[-1])
            inputs.append(h.detach())
            z = _linear(h, w, b)
            outputs.append(z if i else z.requires_grad_())
        deltas = torch.autograd.grad(loss(outputs[-1]).sum(), outputs)
        parts = []
        for h, d in zip(inputs, deltas):
            parts += [(d.square().T @ h.square()).flatten(), d.square().sum(0)]
        return torch.cat(parts)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x @ w.T + b, broadcasting a batch of weight sets over one or many inputs."""
    out = torch.matmul(x, w.transpose(-1, -2))
    return out + b.unsqueeze(-2)
