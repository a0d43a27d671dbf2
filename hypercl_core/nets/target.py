"""What every target network offers the methods that generate, mask or train its weights.

A target network is a pure function of one flat weight vector: it publishes the
named tensors that vector holds (`ParamSpec`: shape, role, whether dim 0 stacks
one block per output head) and runs on external weights, one weight set or a
batch of them (one per task, for HNET+ENT's pass over every learned task).
Hypernetwork sizes, parameter counts, compression ratios, the regularizer's
head masks and HyperMask's masked tensors all come from the specs, so no
caller assumes an MLP.

Batch norm is the one piece of state outside the weights: running statistics
kept per task (`NormStats`), selected by task id at test time and updated for
the task being learned (METHODS.md section 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

PER_EXAMPLE_VALUES = 50_000_000  # gradient values held at once by `squared_grad_sum`'s generic path
Role = Literal["weight", "bias", "bn_scale", "bn_shift"]


@dataclass(frozen=True)
class ParamSpec:
    """One tensor of the flat weights. With `heads > 1` dim 0 stacks one equal block per output
    head (the rows of a multi-head output layer), so head h owns rows h*k .. (h+1)*k-1."""

    name: str
    shape: tuple[int, ...]
    role: Role
    heads: int = 1
    output: bool = False  # part of the output layer (the heads)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class TargetNetwork:
    """The base of every target: subclasses set `param_specs` (in flat order), `num_heads`,
    `outputs_per_head` and `input_shape`, and implement `forward`."""

    param_specs: list[ParamSpec]
    num_heads: int
    outputs_per_head: int
    input_shape: tuple[int, ...]  # one example, e.g. (784,) or (3, 32, 32)

    def forward(self, x: torch.Tensor, flat: torch.Tensor, head: int | torch.Tensor | None = 0,
                task: int | torch.Tensor | None = None, train: bool = False) -> torch.Tensor:
        """Outputs of head `head` on inputs x with weights `flat` (num_weights,), or with a batch
        of weight sets (B, num_weights) and one head (and task) per set; head=None: every
        head's outputs concatenated. `task` picks the batch-norm statistics (default: the
        head); with `train` the batch's own statistics normalize and the task's running
        statistics follow them. Targets without batch norm ignore both."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.forward(*args, **kwargs)

    @property
    def param_sizes(self) -> list[int]:
        return [s.size for s in self.param_specs]

    @property
    def num_weights(self) -> int:
        return sum(self.param_sizes)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """(..., num_weights) -> one tensor per spec, with the same leading dims."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.param_sizes, dim=-1)
        return [p.reshape(*lead, *s.shape) for p, s in zip(parts, self.param_specs)]

    def head_mask(self, head: int) -> torch.Tensor:
        """Boolean mask over the flat weights: everything shared plus head `head`'s blocks.

        The output regularizer of a multi-head target constrains only what a past task
        uses; the other heads belong to other tasks.
        """
        parts = []
        for spec in self.param_specs:
            block = torch.ones(spec.shape, dtype=torch.bool)
            if spec.heads > 1:
                block = block.reshape(spec.heads, -1)
                block[:head] = False
                block[head + 1 :] = False
            parts.append(block.flatten())
        return torch.cat(parts)

    def init_weights(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A flat weight vector drawn as torch's layers draw their own: U(±1/√fan_in) for a
        weight and the bias after it, batch-norm scale 1 and shift 0 (for methods that train
        the target's weights directly); from `generator` (a CPU one), else torch's global one."""
        parts, bound = [], 1.0
        for spec in self.param_specs:
            if spec.role == "weight":
                bound = 1.0 / math.sqrt(math.prod(spec.shape[1:]))
            if spec.role in ("weight", "bias"):
                parts.append(torch.empty(spec.shape).uniform_(-bound, bound, generator=generator).flatten())
            else:
                parts.append(torch.full(spec.shape, 1.0 if spec.role == "bn_scale" else 0.0).flatten())
        return torch.cat(parts)

    def squared_grad_sum(self, x: torch.Tensor, flat: torch.Tensor,
                         loss: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Σ_n (∂ loss_n / ∂ flat)², the square of every example's own gradient summed over the
        batch (a diagonal Fisher's numerator); `loss` maps every head's outputs (N, heads*k),
        batch norm at task 0's statistics, to one loss per example (N,).

        Per-example gradients, vectorized over the batch in chunks that bound their memory;
        targets with a closed form (the MLP) override this.
        """
        from torch.func import grad, vmap

        def one(w: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
            return loss(self.forward(x1[None], w, None, task=0))[0]

        per_example = vmap(grad(one), in_dims=(None, 0))
        chunk = max(1, PER_EXAMPLE_VALUES // self.num_weights)
        flat = flat.detach()
        return sum(per_example(flat, x[i : i + chunk]).pow(2).sum(0) for i in range(0, len(x), chunk))

    def norm_state(self) -> dict:
        """Per-task running statistics, for the checkpoint ({} without batch norm)."""
        return {}

    def load_norm_state(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no batch norm, but the state holds statistics")


def select_head(param: torch.Tensor, spec: ParamSpec, head: int | torch.Tensor) -> torch.Tensor:
    """Head `head`'s block of a head-stacked tensor `param` (*lead, *spec.shape): one int head
    for any leading dims, or a tensor of one head per weight set (param (B, *spec.shape))."""
    k = spec.shape[0] // spec.heads
    if isinstance(head, int):
        return param.narrow(-len(spec.shape), head * k, k)
    rows = param.reshape(len(head), spec.heads, k, *spec.shape[1:])
    return rows[torch.arange(len(head), device=param.device), head]
