"""The output regularizer with one-step lookahead (paper Eq. 2).

Before task T the hypernetwork's outputs for every earlier embedding are
snapshotted. Each step then penalises how far the outputs for those
embeddings would drift if the optimizer took its next step: the lookahead
runs Adam's own update on copies, leaving the optimizer state alone.

All previous tasks (or a random subset of K) and all their chunks go through
the hnet as one batch. The squared error over the outputs is the hot path:
with T-1 tasks it touches (T-1) x target-size floats, so it runs as one fused
autograd function on the padded chunk layout (one buffer, in-place ops, two
GEMMs backward) instead of a chain of ops that each allocate that much.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.optim.adam import adam as adam_update


def adam_lookahead(optimizer: torch.optim.Adam) -> dict[nn.Parameter, torch.Tensor]:
    """The detached values `optimizer.step()` would give the parameters now.

    Adam's own update (the same kernel, fused or not, as the optimizer's flags
    say) runs on copies of the parameters, moments and step counts, so the
    real step afterwards is unaffected. Written out in eager ops the lookahead
    took eight passes over the hypernetwork's output layer per step, and its
    change then one more to be added back; now it is three copies and one
    pass of the optimizer's kernel, and the copy is the looked-ahead value.
    """
    looked: dict[nn.Parameter, torch.Tensor] = {}
    for group in optimizer.param_groups:
        plain = not any(group.get(k, False) for k in ("weight_decay", "amsgrad", "maximize", "differentiable",
                                                      "decoupled_weight_decay"))
        if not plain:
            raise ValueError("adam_lookahead supports plain Adam only (no weight decay, amsgrad or maximize)")
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        copies, moments, squares, steps = [], [], [], []
        with torch.no_grad():
            for p in params:
                state = optimizer.state.get(p)
                copies.append(p.detach().clone())
                if state:
                    moments.append(state["exp_avg"].clone())
                    squares.append(state["exp_avg_sq"].clone())
                    steps.append(state["step"].clone())
                else:  # before Adam's first step: what it would initialize
                    moments.append(torch.zeros_like(p))
                    squares.append(torch.zeros_like(p))
                    on_device = group["fused"] or group["capturable"]
                    steps.append(torch.zeros((), device=p.device if on_device else "cpu"))
            beta1, beta2 = group["betas"]
            adam_update(copies, [p.grad for p in params], moments, squares, [], steps,
                        foreach=group["foreach"], capturable=group["capturable"], fused=group["fused"],
                        amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=0.0,
                        eps=group["eps"], maximize=False)
        looked.update(zip(params, copies))
    return looked


def at_looked(p: nn.Parameter, looked: dict[nn.Parameter, torch.Tensor] | None) -> torch.Tensor:
    """`looked[p]`'s value with `p`'s gradient (the lookahead is not differentiated), else `p` itself."""
    if not looked or p not in looked:
        return p
    return looked[p] + (p - p.detach())


class _MaskedSSE(torch.autograd.Function):
    """Σ (mask ⊙ (F W + b) − targets)² over rows of chunks, targets pre-masked (W held as (h, units)).

    Rows are (task, chunk) pairs. Only `partial_rows` carry a mask (chunks that
    hold the unused tail or other tasks' output heads); every other row is
    regularized in full, so the mask costs nothing there.
    """

    @staticmethod
    def forward(ctx, feats, weight, bias, targets, partial_rows, partial_mask):
        diff = torch.addmm(bias, feats, weight)
        diff.sub_(targets)
        if partial_rows is not None:
            diff[partial_rows] *= partial_mask
        flat = diff.view(-1)
        ctx.save_for_backward(feats, weight, diff)
        return torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, grad):
        feats, weight, diff = ctx.saved_tensors
        diff.mul_(2 * grad)  # masked entries are already zero: d/do of m(o-t)^2 with binary m
        return diff @ weight.t(), feats.t() @ diff, diff.sum(0), None, None, None


class OutputRegularizer:
    """β/|S| · Σ_{t∈S} ‖mask_t ⊙ (h(e_t; θ + Δθ) − W*_t)‖², S = previous tasks or a subset.

    `masks` (tasks x target weights, binary) restricts task t to the weights it
    uses (shared layers and its own head); None regularizes every weight.
    """

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
        self.subset = subset
        n_prev, chunks, width = len(prev_embs), hnet.num_chunks, hnet.chunk_dim
        full_mask = torch.zeros(n_prev, chunks * width, device=prev_embs.device)
        full_mask[:, : hnet.num_outputs] = 1.0 if masks is None else masks
        full_mask = full_mask.view(n_prev, chunks, width)
        with torch.no_grad():
            targets = hnet(self.prev_embs)
        padded = torch.zeros(n_prev, chunks * width, device=prev_embs.device)
        padded[:, : hnet.num_outputs] = targets
        self.targets = padded.view(n_prev, chunks, width) * full_mask
        if masks is not None and not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError("regularizer masks must be binary (the fused gradient assumes it)")
        self.partial = (full_mask == 0).any(-1)  # (tasks, chunks): rows that need their mask
        self.mask_rows = full_mask[self.partial]  # (n_partial, width)
        # Index tables built once, so a training step never synchronises with the device for them.
        self.partial_index = torch.full(self.partial.shape, -1, dtype=torch.long, device=self.partial.device)
        self.partial_index[self.partial] = torch.arange(self.mask_rows.shape[0], device=self.partial.device)
        self.all_partial_rows = self.partial.reshape(-1).nonzero().squeeze(1) if bool(self.partial.any()) else None
        self.weight_name, self.bias_name = hnet.output_layer_names

    @property
    def num_prev(self) -> int:
        return len(self.prev_embs)

    def held_bytes(self) -> int:
        """Memory the snapshot holds: every earlier task's full outputs, and the masks of partial rows."""
        return sum(t.numel() * t.element_size() for t in (self.prev_embs, self.targets, self.mask_rows))

    def loss(
        self,
        hnet: nn.Module,
        looked: dict[nn.Parameter, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`looked`: the looked-ahead values of some parameters (`adam_lookahead`); None: the current ones."""
        ids = self._pick(generator)
        embs, targets, mask_rows, flat_partial = self.prev_embs, self.targets, self.mask_rows, self.all_partial_rows
        if ids is not None:
            embs, targets, partial = embs[ids], targets[ids], self.partial[ids]
            mask_rows = self.mask_rows[self.partial_index[ids][partial]]
            flat_partial = partial.reshape(-1).nonzero().squeeze(1) if flat_partial is not None else None
        params = {name: at_looked(p, looked) for name, p in hnet.named_parameters()}
        feats = functional_call(hnet, params, (embs,), {"features_only": True})
        rows = feats.shape[0] * feats.shape[1]
        sse = _MaskedSSE.apply(
            feats.reshape(rows, -1), params[self.weight_name], params[self.bias_name],
            targets.reshape(rows, -1), flat_partial, mask_rows,
        )
        return self.beta * sse / len(embs)

    def _pick(self, generator: torch.Generator | None) -> torch.Tensor | None:
        if self.subset is None or self.subset >= self.num_prev:
            return None
        device = self.prev_embs.device
        gen_device = generator.device if generator is not None else device
        return torch.randperm(self.num_prev, generator=generator, device=gen_device)[: self.subset].to(device)
