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
break the shared sum. A unit (output-layer row) that every earlier task keeps
in the same set of chunks is summed in one term with the other such units;
what is left (each task's own head) is a few entries per task, summed entry
by entry. Each term takes the Gram form or the explicit one
(the output layer applied to the rows, as `regularizer.OutputRegularizer`
does everywhere), whichever its shape makes cheaper: a few rows of a wide
chunk are cheaper explicitly, many rows in the Gram form. The choice depends
on shapes only, so a run is as reproducible as before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from hypercl_core.regularizer import fused_sse

# A term over fewer (row, unit) entries than this is summed with the entries: its own launch costs more.
MIN_TERM_ENTRIES = 4096
# A block of runs smaller than this is gathered entry by entry instead.
MIN_BLOCK_ENTRIES = 256


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
    """⟨MᵀM, G⟩ with M = [W' − W*, W', b' − b*] built inside: one GEMM forward, one backward.

    Only W' and b' need gradients, and W' appears in two blocks of M, so the
    backward forms M (G₁ + G₂) and M G₃ (h + 1 columns) rather than all of 2 M G.
    """

    @staticmethod
    def forward(ctx, weight, bias, w_star, b_star, gram):
        h = weight.shape[1]
        m = torch.cat([weight - w_star, weight, (bias - b_star).unsqueeze(1)], dim=1)
        products = m.t() @ m
        ctx.save_for_backward(m, gram, products)
        ctx.h = h
        return torch.dot(products.reshape(-1), gram.reshape(-1))

    @staticmethod
    def backward(ctx, grad):
        m, gram, products = ctx.saved_tensors
        h = ctx.h
        cols = torch.cat([gram[:, :h] + gram[:, h : 2 * h], gram[:, 2 * h :]], dim=1)
        d = (m @ cols).mul_(2 * grad)
        return d[:, :h], d[:, h], None, None, products.mul_(grad)


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
        return _GramSSE.apply(w, b, self.w_star, self.b_star, 0.5 * (gram + gram.t()))

    def held(self) -> list[torch.Tensor]:
        return [self.feats_star, self.w_star, self.b_star] if self.gram else [self.targets]


def _block_outputs(weight: torch.Tensor, bias: torch.Tensor, flat: torch.Tensor, first: int, runs: int, length: int,
                   ids: torch.Tensor) -> torch.Tensor:
    """(runs, length) outputs of a block; the snapshot's targets come from the same arithmetic, so the
    difference is exactly zero there."""
    span = slice(first, first + runs * length)
    out = torch.bmm(weight[span].view(runs, length, -1), flat[ids].unsqueeze(2)).squeeze(2)
    return out.add_(bias[span].view(runs, length))


def _loose_outputs(weight: torch.Tensor, bias: torch.Tensor, feats: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Outputs of single entries, `feats` already gathered per entry."""
    return torch.einsum("eh,eh->e", weight.index_select(0, units), feats).add_(bias.index_select(0, units))


class _EntriesSSE(torch.autograd.Function):
    """Σ of the squared entry differences, with one gradient buffer for all blocks and loose entries
    (autograd would allocate an output-layer-sized buffer per block)."""

    @staticmethod
    def forward(ctx, flat, weight, bias, entries):
        diffs = []
        for first, runs, length, ids, targets in entries.blocks:
            diffs.append(_block_outputs(weight, bias, flat, first, runs, length, ids).sub_(targets))
        loose = flat.index_select(0, entries.rows)
        if len(entries.rows):
            diffs.append(_loose_outputs(weight, bias, loose, entries.units).sub_(entries.targets))
        ctx.entries = entries
        ctx.save_for_backward(flat, weight, loose, *diffs)
        return sum((torch.dot(d.reshape(-1), d.reshape(-1)) for d in diffs), flat.new_zeros(()))

    @staticmethod
    def backward(ctx, grad):
        flat, weight, loose, *diffs = ctx.saved_tensors
        entries = ctx.entries
        d_flat, d_weight, d_bias = torch.zeros_like(flat), torch.zeros_like(weight), torch.zeros(
            weight.shape[0], dtype=weight.dtype, device=weight.device)
        for (first, runs, length, ids, _), diff in zip(entries.blocks, diffs):
            span = slice(first, first + runs * length)
            diff = diff.mul(2 * grad)  # (runs, length)
            d_weight[span] += (diff.unsqueeze(2) * flat[ids].unsqueeze(1)).reshape(runs * length, -1)
            d_bias[span] += diff.reshape(-1)
            d_flat.index_add_(0, ids, torch.bmm(diff.unsqueeze(1), weight[span].view(runs, length, -1)).squeeze(1))
        if len(entries.rows):
            diff = diffs[-1].mul(2 * grad)
            d_weight.index_add_(0, entries.units, diff.unsqueeze(1) * loose)
            d_bias.index_add_(0, entries.units, diff)
            d_flat.index_add_(0, entries.rows, diff.unsqueeze(1) * weight.index_select(0, entries.units))
        return d_flat, d_weight, d_bias, None


def _column_classes(common: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct columns of a (chunks, units) bool matrix, and each unit's class.

    numpy's unique over bit-packed columns: torch.unique(dim=0) compares row
    by row in Python-visible ops, a quarter of a second at SplitMNIST's size.
    """
    packed = np.packbits(common.t().cpu().numpy(), axis=1)
    keys, inverse = np.unique(packed, axis=0, return_inverse=True)
    patterns = np.unpackbits(keys, axis=1, count=common.shape[0]).astype(bool)
    device = common.device
    return torch.from_numpy(patterns).to(device), torch.from_numpy(inverse.reshape(-1)).to(device)


def _runs(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, units) bool -> row, first unit and length of every run of consecutive kept units."""
    edges = torch.nn.functional.pad(keep.to(torch.int8), (1, 1)).diff(dim=1)
    rows, starts = (edges == 1).nonzero(as_tuple=True)
    ends = (edges == -1).nonzero(as_tuple=True)[1]  # row-major like the starts, so they pair up in order
    return rows, starts, ends - starts


class _Entries:
    """What only some earlier tasks keep in a chunk (each task's own head), summed run by run.

    A task's head is a run of consecutive units in a chunk, and the heads of
    consecutive tasks lie side by side: runs of one length that tile a unit
    range form a block, whose weights are one view of the output layer, so a
    block costs one batched GEMV and no copy. Runs that form no block worth
    its launch (scattered masks) are gathered entry by entry.
    """

    def __init__(self, keep: torch.Tensor, feats: torch.Tensor, w_star: torch.Tensor, b_star: torch.Tensor):
        chunks = keep.shape[1]
        star = feats.reshape(-1, feats.shape[-1])
        rows, starts, lengths = _runs(keep.reshape(-1, keep.shape[-1]))
        order = sorted(range(len(rows)), key=lambda i: (int(rows[i]) % chunks, int(starts[i])))
        self.blocks: list[tuple[int, int, int, torch.Tensor, torch.Tensor]] = []  # first unit, runs, length, rows, T
        loose = torch.zeros_like(keep.reshape(-1, keep.shape[-1]))
        block: list[int] = []

        def close() -> None:
            first, length = int(starts[block[0]]), int(lengths[block[0]])
            if len(block) * length < MIN_BLOCK_ENTRIES:
                for i in block:
                    loose[rows[i], starts[i] : starts[i] + lengths[i]] = True
                return
            ids = rows[block]
            targets = _block_outputs(w_star, b_star, star, first, len(block), length, ids)
            self.blocks.append((first, len(block), length, ids, targets))

        for i in order:
            if block:
                last = block[-1]
                if (int(rows[i]) % chunks == int(rows[last]) % chunks and lengths[i] == lengths[last]
                        and starts[i] == starts[last] + lengths[last]):
                    block.append(i)
                    continue
                close()
            block = [i]
        if block:
            close()
        self.rows, self.units = loose.nonzero(as_tuple=True)
        self.targets = _loose_outputs(w_star, b_star, star.index_select(0, self.rows), self.units)

    def sse(self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return _EntriesSSE.apply(feats.reshape(-1, feats.shape[-1]), weight, bias, self)

    def held(self) -> list[torch.Tensor]:
        return [self.rows, self.units, self.targets, *(t for b in self.blocks for t in b[3:])]


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
        own = keep & ~common  # what only some tasks keep: their own heads
        # Units go together when they are common in the same chunks; each unit is in one term, so the Gram
        # terms together pass over the output layer once. A term too small to pay for itself joins the entries.
        patterns, unit_class = _column_classes(common)
        self.terms: list[_Term | _Entries] = []
        for k, pattern in enumerate(patterns):
            chunk_ids, unit_ids = pattern.nonzero().squeeze(1), (unit_class == k).nonzero().squeeze(1)
            if n * chunk_ids.numel() * unit_ids.numel() >= MIN_TERM_ENTRIES:
                self.terms.append(_Term(chunk_ids, unit_ids, feats, w_star, b_star))
            elif chunk_ids.numel():
                own[:, chunk_ids.unsqueeze(1), unit_ids] = True
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
