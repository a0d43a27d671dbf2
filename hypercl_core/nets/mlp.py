"""A multi-head MLP as a pure function of a flat weight vector.

Publishing `param_shapes` and taking weights as an argument lets any weight
generator drive it: a hypernetwork (HNET), a masked weight set (HyperMask) or
ordinary parameters. Weights may carry a leading batch dimension, so the
networks of several tasks run in one batched matmul (entropy-based task
inference) instead of a Python loop.
"""

from __future__ import annotations

import math

import torch

from hypercl_core.nets.activations import ACTIVATIONS


class TargetMLP:
    def __init__(self, in_dim: int, hidden: list[int], outputs_per_head: int, num_heads: int, activation: str):
        self.in_dim = in_dim
        self.outputs_per_head = outputs_per_head
        self.num_heads = num_heads
        self.act = ACTIVATIONS[activation]
        dims = [in_dim, *hidden, outputs_per_head * num_heads]
        self.param_shapes: list[tuple[int, ...]] = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            self.param_shapes += [(fan_out, fan_in), (fan_out,)]
        self.param_sizes = [math.prod(s) for s in self.param_shapes]
        self.num_weights = sum(self.param_sizes)

    def init_weights(self) -> torch.Tensor:
        """A flat weight vector drawn as torch.nn.Linear draws its own: U(±1/√fan_in) for
        weights and biases alike (for methods that train the target's weights directly)."""
        parts = []
        for w_shape, b_shape in zip(self.param_shapes[0::2], self.param_shapes[1::2]):
            bound = 1.0 / math.sqrt(w_shape[1])
            parts += [torch.empty(w_shape).uniform_(-bound, bound).flatten(),
                      torch.empty(b_shape).uniform_(-bound, bound)]
        return torch.cat(parts)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(..., num_weights) -> per-layer tensors with the same leading dims."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.param_sizes, dim=-1)
        return [p.reshape(*lead, *s) for p, s in zip(parts, self.param_shapes)]

    def forward(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None = 0) -> torch.Tensor:
        """Outputs of head `head` (an int, or one head per weight set in the batch).

        x: (N, in) or (B, N, in); flat: (num_weights,) or (B, num_weights).
        head=None returns every head's outputs concatenated.
        """
        params = self.unflatten(flat)
        weights, biases = params[0::2], params[1::2]
        h = x
        for w, b in zip(weights[:-1], biases[:-1]):
            h = self.act(_linear(h, w, b))
        w_out, b_out = weights[-1], biases[-1]
        if head is not None and self.num_heads > 1:
            w_out, b_out = self._select_head(w_out, b_out, head)
        return _linear(h, w_out, b_out)

    __call__ = forward

    def _select_head(self, w: torch.Tensor, b: torch.Tensor, head: int | torch.Tensor):
        k = self.outputs_per_head
        if isinstance(head, int):
            return w[..., head * k : (head + 1) * k, :], b[..., head * k : (head + 1) * k]
        batch = torch.arange(len(head), device=w.device)
        w = w.reshape(len(head), self.num_heads, k, w.shape[-1])[batch, head]
        b = b.reshape(len(head), self.num_heads, k)[batch, head]
        return w, b

    def head_mask(self, head: int) -> torch.Tensor:
        """Boolean mask over the flat weights: shared layers plus one output head.

        The output regularizer of a multi-head target constrains only what a
        past task uses; the other heads belong to other tasks.
        """
        mask = torch.ones(self.num_weights, dtype=torch.bool)
        if self.num_heads == 1:
            return mask
        k, fan_in = self.outputs_per_head, self.param_shapes[-2][1]
        start_w = self.num_weights - self.param_sizes[-1] - self.param_sizes[-2]
        w_block = mask[start_w : start_w + self.param_sizes[-2]].view(self.num_heads, k, fan_in)
        b_block = mask[start_w + self.param_sizes[-2] :].view(self.num_heads, k)
        w_block.fill_(False)
        b_block.fill_(False)
        w_block[head] = True
        b_block[head] = True
        return mask


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x @ w.T + b, broadcasting a batch of weight sets over one or many inputs."""
    out = torch.matmul(x, w.transpose(-1, -2))
    return out + b.unsqueeze(-2)
