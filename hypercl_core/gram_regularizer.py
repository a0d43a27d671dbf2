"""The output regularizer at a per-step cost that does not grow with the number of earlier tasks.

The hypernetwork's output layer is linear. For an earlier task's row r (task t,
chunk c) with last hidden activations φ'_r under the looked-ahead parameters,
and φ*_r, W*, b* at the snapshot, the drift of its outputs is

    D_r = W'φ'_r + b' − (W*φ*_r + b*) = M g_r,
    M = [W' − W*, W', b' − b*],  g_r = [φ*_r; φ'_r − φ*_r; 1],

so Σ_r ‖D_r‖² = ⟨MᵀM, Σ_r g_r g_rᵀ⟩: one pass over the output layer per step
however many rows there are, and the snapshot shrinks to W*, b* and the φ*
rows. The blocks are written as differences so that every term of the inner
product is of the order of the drift squared: the expanded square
‖W'φ'‖² − 2⟨W'φ', W*φ*⟩ + ‖W*φ*‖² would cancel in float32 right after the
snapshot, where the drift is near zero.

Masks (a multi-head target's other heads, the padded tail of the last chunk)
break the shared sum. The units (output-layer rows) of a chunk that every
earlier task keeps are summed over the tasks in one term per distinct pattern
of such units; what is left (each task's own head) is a few entries per task,
summed entry by entry. Each term takes the Gram form or the explicit one
(the output layer applied to the rows, as `regularizer.OutputRegularizer`
does everywhere), whichever its shape makes cheaper: a few rows of a wide
chunk are cheaper explicitly, many rows in the Gram form. The choice depends
on shapes only, so a run is as reproducible as before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from hypercl_core.regularizer import fused_sse


def gram_cost(rows: int, units: int, width: int) -> float:
    """Floating-point work of one Gram-form term, forward and backward (w = 2h + 1)."""
    w = 2 * width + 1
    return units * (4 * w * w + 10 * w) + rows * (4 * w * w + 6 * w)


def explicit_cost(rows: int, units: int, width: int) -> float:
    """The same for the explicit form: three GEMMs over rows × units plus elementwise passes."""
    return rows * units * (6 * width + 10)


def _index(ids: torch.Tensor) -> slice | torch.Tensor:
    """A slice where the ids are one contiguous run (a view, no copy per step), else the ids."""
    if ids.numel() and int(ids[-1] - ids[0]) + 1 == ids.numel():
        return slice(int(ids[0]), int(ids[-1]) + 1)
    return ids


class _GramSSE(torch.autograd.Function):
    """⟨MᵀM, G⟩ for a symmetric G, as Σ (M G) ⊙ M, with the backward in one more GEMM."""

    @staticmethod
    def forward(ctx, m, gram):
        q = m @ gram
        ctx.save_for_backward(m, q)
        return torch.dot(q.reshape(-1), m.reshape(-1))

    @staticmethod
    def backward(ctx, grad):
        m, q = ctx.saved_tensors
        return q.mul(2 * grad), (m.t() @ m).mul_(grad)


class _Term:
    """Σ over the rows of some chunks (all earlier tasks) of ‖D_r restricted to some units‖²."""

    def __init__(self, chunks: torch.Tensor, units: torch.Tensor, feats: torch.Tensor, w_star: torch.Tensor,
                 b_star: torch.Tensor):
        self.chunks, self.units = _index(chunks), _index(units)
        star = feats[:, self.chunks].reshape(-1, feats.shape[-1])
        self.gram = gram_cost(len(star), units.numel(), feats.shape[-1]) < explicit_cost(
            len(star), units.numel(), feats.shape[-1])
        w, b = w_star[self.units], b_star[self.units]
        if self.gram:
            self.feats_star, self.w_star, self.b_star = star, w, b
        else:
            self.targets = torch.addmm(b, star, w.t())

    def sse(self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        rows = feats[:, self.chunks].reshape(-1, feats.shape[-1])
        w, b = weight[self.units], bias[self.units]
        if not self.gram:
            return fused_sse(rows, w, b, self.targets)
        g = torch.cat([self.feats_star, rows - self.feats_star, rows.new_ones(len(rows), 1)], dim=1)
        gram = g.t() @ g
        m = torch.cat([w - self.w_star, w, (b - self.b_star).unsqueeze(1)], dim=1)
        return _GramSSE.apply(m, 0.5 * (gram + gram.t()))

    def held(self) -> list[torch.Tensor]:
        return [self.feats_star, self.w_star, self.b_star] if self.gram else [self.targets]


class _Entries:
    """(row, unit) entries kept by some earlier tasks but not all in their chunk: each task's own head."""

    def __init__(self, keep: torch.Tensor, feats: torch.Tensor, w_star: torch.Tensor, b_star: torch.Tensor):
        rows, units = keep.reshape(-1, keep.shape[-1]).nonzero(as_tuple=True)
        self.rows, self.units = rows, units
        star = feats.reshape(-1, feats.shape[-1])
        self.targets = (w_star[units] * star[rows]).sum(-1) + b_star[units]

    def sse(self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        rows = feats.reshape(-1, feats.shape[-1]).index_select(0, self.rows)
        diff = (weight.index_select(0, self.units) * rows).sum(-1) + bias.index_select(0, self.units) - self.targets
        return torch.dot(diff, diff)

    def held(self) -> list[torch.Tensor]:
        return [self.rows, self.units, self.targets]


class GramOutputRegularizer:
    """β/(t) · Σ_{earlier tasks} ‖mask ⊙ (h(e; θ + Δθ) − h*(e))‖², every earlier task at every step.

    The same value as `OutputRegularizer` without a subset (its reference,
    which the tests compare against), computed in the terms described above.
    """

    def __init__(self, hnet: nn.Module, prev_embs: torch.Tensor, beta: float, masks: torch.Tensor | None = None):
        if masks is not None and not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError("regularizer masks must be binary")
        self.prev_embs = prev_embs.detach()
        self.beta = beta
        self.weight_name, self.bias_name = hnet.output_layer_names
        n, chunks, width = len(prev_embs), hnet.num_chunks, hnet.chunk_dim
        keep = torch.zeros(n, chunks * width, dtype=torch.bool, device=prev_embs.device)
        keep[:, : hnet.num_outputs] = True if masks is None else masks.bool()
        keep = keep.view(n, chunks, width)
        params = dict(hnet.named_parameters())
        with torch.no_grad():
            feats = hnet(self.prev_embs, features_only=True)
            w_star, b_star = params[self.weight_name].detach().clone(), params[self.bias_name].detach().clone()
        common = keep.all(0)  # (chunks, width): the units of each chunk that every earlier task keeps
        patterns, group = torch.unique(common, dim=0, return_inverse=True)
        self.terms: list[_Term | _Entries] = [
            _Term((group == g).nonzero().squeeze(1), pattern.nonzero().squeeze(1), feats, w_star, b_star)
            for g, pattern in enumerate(patterns) if bool(pattern.any())
        ]
        own = keep & ~common
        if bool(own.any()):
            self.terms.append(_Entries(own, feats, w_star, b_star))

    @property
    def num_prev(self) -> int:
        return len(self.prev_embs)

    def loss(self, hnet: nn.Module, deltas: dict[nn.Parameter, torch.Tensor] | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """`generator` is accepted for the reference's signature: every task is regularized, nothing is drawn."""
        params = {name: p + deltas[p] if deltas and p in deltas else p for name, p in hnet.named_parameters()}
        feats = functional_call(hnet, params, (self.prev_embs,), {"features_only": True})
        weight, bias = params[self.weight_name], params[self.bias_name]
        sse = sum((term.sse(feats, weight, bias) for term in self.terms), feats.new_zeros(()))
        return self.beta * sse / self.num_prev

    def held_bytes(self) -> int:
        """Memory the snapshot holds (what the explicit form keeps as every earlier task's full outputs)."""
        tensors = [self.prev_embs, *(t for term in self.terms for t in term.held())]
        return sum(t.numel() * t.element_size() for t in tensors)
