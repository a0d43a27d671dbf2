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
break the shared sum. A run of consecutive units (output-layer rows) that every
earlier task keeps in the same set of chunks is summed in one term;
what is left (each task's own head) is a few entries per task, summed entry
by entry. Each term takes the Gram form or the explicit one
(the output layer applied to the rows, as `regularizer.OutputRegularizer`
does everywhere), whichever its shape makes cheaper: a few rows of a wide
chunk are cheaper explicitly, many rows in the Gram form. The choice depends
on shapes only, so a run is as reproducible as before.

All terms run in one autograd function that writes one gradient buffer for
the output layer: per-term autograd would allocate and add an output-layer
sized buffer for every slice it took.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from hypercl_core.regularizer import at_looked

# A term over fewer (row, unit) entries than this is summed with the entries: its own launch costs more.
MIN_TERM_ENTRIES = 4096
# A piece of fewer entries than this is gathered entry by entry instead.
MIN_PIECE_ENTRIES = 256


def gram_cost(rows: int, units: int, width: int) -> float:
    """Floating-point work of one Gram-form term, forward and backward (w = 2h + 1): per unit, one GEMM
    of the h + 1 rows of X against the w rows of its buffer each way, and the differences that form X.
    With the explicit form's cost below this puts the crossover where it was measured on this machine
    (SplitMNIST's h = 10: between 12 and 24 rows; PermutedMNIST-10's h = 25: about 27 rows)."""
    w = 2 * width + 1
    return units * (4 * (width + 1) * w + 3 * (width + 1)) + rows * (4 * w * w + 6 * w)


def explicit_cost(rows: int, units: int, width: int) -> float:
    """The same for the explicit form: three GEMMs over rows × units plus elementwise passes."""
    return rows * units * (6 * width + 10)


def _index(ids: torch.Tensor) -> slice | torch.Tensor:
    """A slice where the ids are one contiguous run (a view, no copy per step), else the ids."""
    if ids.numel() and int(ids[-1] - ids[0]) + 1 == ids.numel():
        return slice(int(ids[0]), int(ids[-1]) + 1)
    return ids


class _Term:
    """Σ over the rows of some chunks (all earlier tasks) of ‖D_r on a run of units‖², in either form.

    Gram form, blocks ordered M = [A, c, B] (A = W' − W*, c = b' − b*, B = W')
    and g = [φ*; 1; δ]: value ⟨MᵀM, G⟩. The output layer holds its weight as
    (h, units), so [A, c]ᵀ is formed as h + 1 rows of a buffer whose other h
    rows hold W*ᵀ: one GEMM of those rows against the buffer gives XᵀX and XᵀW*
    (X = [A, c]); B = A + W*, so with the snapshot's W*ᵀW* that is all of MᵀM,
    half the GEMM of forming it. The backward is one GEMM of the same buffer:
    the gradients of W' (in two blocks of M) and b' for every unit of the term;
    and g (MᵀM)_B for the rows, which enter G through its δ block.
    """

    def __init__(self, chunks: torch.Tensor, units: torch.Tensor, feats: torch.Tensor, w_star: torch.Tensor,
                 b_star: torch.Tensor):
        self.chunks, self.units = _index(chunks), _index(units)
        if not isinstance(self.units, slice):
            raise ValueError("a term's units must be one run of consecutive units")
        star = feats[:, self.chunks].reshape(-1, feats.shape[-1])
        self.gram = gram_cost(len(star), units.numel(), feats.shape[-1]) < explicit_cost(
            len(star), units.numel(), feats.shape[-1])
        w, b = w_star[:, self.units], b_star[self.units]
        if self.gram:
            h = w.shape[0]
            self.feats_star, self.b_star = star, b
            self.stack = w.new_empty(2 * h + 1, w.shape[1])  # rows: X = [A, c]ᵀ (written every step), W*ᵀ
            self.stack[h + 1 :] = w
            self.w_star = self.stack[h + 1 :]
            self.star_products = w @ w.t()
            self.calls = 0  # the buffer's X is this call's: a backward of an older call would read a newer X
        else:
            self.targets = torch.addmm(b, star, w)

    def forward(self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        rows = feats[:, self.chunks].reshape(-1, feats.shape[-1])
        w, b = weight[:, self.units], bias[self.units]
        if not self.gram:
            diff = torch.addmm(b, rows, w).sub_(self.targets)
            return torch.dot(diff.view(-1), diff.view(-1)), (rows, diff)
        h = w.shape[0]
        g = torch.cat([self.feats_star, rows.new_ones(len(rows), 1), rows - self.feats_star], dim=1)
        gram = g.t() @ g
        gram = 0.5 * (gram + gram.t())
        x = self.stack[: h + 1]
        torch.sub(w, self.w_star, out=x[:h])
        torch.sub(b, self.b_star, out=x[h])
        xs = x @ self.stack.t()  # (h + 1, 2h + 1): [XᵀX, XᵀW*]
        xx, xw = xs[:, : h + 1], xs[:, h + 1 :]
        xb = xx[:, :h] + xw
        bb = xx[:h, :h] + xw[:h] + xw[:h].t() + self.star_products
        products = torch.cat([torch.cat([xx, xb], dim=1), torch.cat([xb.t(), bb], dim=1)])
        self.calls += 1
        return torch.dot(products.view(-1), gram.view(-1)), (g, gram, products, self.calls)

    def backward(self, saved: tuple, scale: torch.Tensor, weight: torch.Tensor, d_feats: torch.Tensor,
                 d_params: torch.Tensor) -> None:
        """Write this term's gradient, times `scale` (2 × the incoming gradient), into its units of
        `d_params` (rows: the output layer's weight, then its bias; no other term has those units: written,
        not added, so they need no zeroing) and add its features' part. `scale` goes on the small
        factors, not on a buffer of every unit."""
        h, n = weight.shape[0], d_feats.shape[0]
        d_out = d_params[:, self.units]  # a view: the units are one run
        if not self.gram:
            rows, diff = saved
            torch.mm((rows * scale).t(), diff, out=d_out[:h])
            torch.sum(diff, 0, out=d_out[h])
            d_out[h].mul_(scale)
            d_feats[:, self.chunks] += (diff @ weight[:, self.units].t()).mul_(scale).view(n, -1, h)
            return
        g, gram, products, call = saved
        if call != self.calls:
            raise RuntimeError("the regularizer ran forward again before this backward: back-propagate each "
                               "loss before computing the next")
        cols = torch.cat([gram[:, :h] + gram[:, h + 1 :], gram[:, h : h + 1]], dim=1).mul_(scale)  # (2h+1, h+1)
        on_b = cols[h + 1 :]
        on_x = cols[: h + 1].clone()
        on_x[:h] += on_b  # B = A + W*: B's rows of cols also act on A
        torch.mm(torch.cat([on_x, on_b]).t(), self.stack, out=d_out)
        d_feats[:, self.chunks] += (g @ products[:, h + 1 :]).mul_(scale).view(n, -1, h)

    def held(self) -> list[torch.Tensor]:
        return [self.feats_star, self.stack, self.b_star, self.star_products] if self.gram else [self.targets]


def _loose_outputs(weight: torch.Tensor, bias: torch.Tensor, feats: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Outputs of single entries, `feats` already gathered per entry."""
    return torch.einsum("he,eh->e", weight.index_select(1, units), feats).add_(bias.index_select(0, units))


def _consecutive(ids: torch.Tensor) -> list[torch.Tensor]:
    """Sorted ids split where they jump."""
    breaks = ((ids[1:] - ids[:-1]) != 1).nonzero().squeeze(1) + 1
    return list(torch.tensor_split(ids, breaks.cpu()))


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


def _pieces(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, units) bool -> first unit, length and number of kept rows of every piece: a maximal run of
    units whose columns are equal, so that its kept entries form one dense (rows x units) block."""
    change = torch.ones(keep.shape[1], dtype=torch.bool, device=keep.device)
    change[1:] = (keep[:, 1:] != keep[:, :-1]).any(0)
    starts = change.nonzero().squeeze(1)
    lengths = torch.diff(starts, append=starts.new_tensor([keep.shape[1]]))
    return starts, lengths, keep[:, starts].sum(0)


class _Entries:
    """What only some earlier tasks keep in a chunk (each task's own head), summed piece by piece.

    A piece is a run of units that the same rows keep (a row: an earlier task
    in one chunk), so its entries are a dense block: one GEMM of those rows'
    features against a view of the output layer, which is then read once per
    piece however many rows keep it. (Run by run, a 100-head target's heads
    read the output layer once per chunk they lie in: 13 times at task 100.)
    All pieces write their outputs into one buffer, and their feature
    gradients into another, so what runs per piece is its GEMMs. Pieces too
    small to pay for their launch (scattered masks) are gathered entry by entry.
    """

    def __init__(self, keep: torch.Tensor, feats: torch.Tensor, w_star: torch.Tensor, b_star: torch.Tensor):
        flat_keep = keep.reshape(-1, keep.shape[-1])
        star = feats.reshape(-1, feats.shape[-1])
        # only the rows that keep anything (a task's head lies in one or two of its chunks): at task 100 of a
        # 100-head target that is 2 % of them, and what follows passes over them several times
        active = flat_keep.any(1).nonzero().squeeze(1)
        flat_keep = flat_keep.index_select(0, active)
        starts, lengths, counts = _pieces(flat_keep)
        dense = counts * lengths >= MIN_PIECE_ENTRIES
        piece_of_unit = torch.repeat_interleave(torch.arange(len(starts), device=keep.device), lengths)
        loose = flat_keep & ~dense[piece_of_unit]
        # (units, rows of the gathered features, offset in the output buffer), rows as one gather for all pieces
        self.pieces: list[tuple[slice, slice, slice]] = []
        gather, gathered, offset = [], 0, 0
        for first, length in zip(starts[dense].tolist(), lengths[dense].tolist()):
            rows = active[flat_keep[:, first].nonzero().squeeze(1)]
            self.pieces.append((slice(first, first + length), slice(gathered, gathered + len(rows)),
                                slice(offset, offset + len(rows) * length)))
            gather.append(rows)
            gathered, offset = gathered + len(rows), offset + len(rows) * length
        self.gather = torch.cat(gather) if gather else torch.zeros(0, dtype=torch.long, device=keep.device)
        self.size = offset
        rows, self.units = loose.nonzero(as_tuple=True)
        self.rows = active[rows]
        self.targets = self._outputs(w_star, b_star, star.index_select(0, self.gather), star.index_select(0, self.rows))

    def _outputs(self, weight: torch.Tensor, bias: torch.Tensor, gathered: torch.Tensor,
                 loose: torch.Tensor) -> torch.Tensor:
        """Every piece's (rows x units) outputs, then the loose entries', in one buffer; the snapshot's
        targets come from the same arithmetic, so the difference is exactly zero there."""
        out = weight.new_empty(self.size + len(self.rows))
        for units, rows, at in self.pieces:
            torch.addmm(bias[units], gathered[rows], weight[:, units], out=out[at].view(rows.stop - rows.start, -1))
        if len(self.rows):
            out[self.size:] = _loose_outputs(weight, bias, loose, self.units)
        return out

    def forward(self, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        flat = feats.reshape(-1, feats.shape[-1])
        gathered, loose = flat.index_select(0, self.gather), flat.index_select(0, self.rows)
        diff = self._outputs(weight, bias, gathered, loose).sub_(self.targets)
        return torch.dot(diff, diff), (gathered, loose, diff)

    def backward(self, saved: tuple, scale: torch.Tensor, weight: torch.Tensor, d_feats: torch.Tensor,
                 d_params: torch.Tensor) -> None:
        gathered, loose, diff = saved
        d_flat = d_feats.view(-1, d_feats.shape[-1])
        d_weight, d_bias = d_params[:-1], d_params[-1]
        # `scale` goes on the small factors (rows x h, units), not on the buffer of every entry
        scaled = gathered * scale
        d_gathered = torch.empty_like(gathered)
        for units, rows, at in self.pieces:
            block = diff[at].view(rows.stop - rows.start, -1)  # (rows, units)
            d_weight[:, units].addmm_(scaled[rows].t(), block)
            d_bias[units].add_(block.sum(0).mul_(scale))
            torch.mm(block, weight[:, units].t(), out=d_gathered[rows])
        d_flat.index_add_(0, self.gather, d_gathered.mul_(scale))
        if len(self.rows):
            tail = diff[self.size:].mul(scale)
            d_weight.index_add_(1, self.units, (tail.unsqueeze(1) * loose).t())
            d_bias.index_add_(0, self.units, tail)
            d_flat.index_add_(0, self.rows, tail.unsqueeze(1) * weight.index_select(1, self.units).t())

    def held(self) -> list[torch.Tensor]:
        return [self.gather, self.rows, self.units, self.targets]


class _OutputLayerSSE(torch.autograd.Function):
    """Σ over all terms at the looked-ahead output layer W' (given, or W itself): its gradient is W's."""

    @staticmethod
    def forward(ctx, feats, weight, bias, looked_weight, looked_bias, terms, uncovered):
        weight = weight if looked_weight is None else looked_weight
        bias = bias if looked_bias is None else looked_bias
        total, saved = feats.new_zeros(()), []
        for term in terms:
            value, kept = term.forward(feats, weight, bias)
            total += value
            saved.append(kept)
        ctx.terms, ctx.saved, ctx.weight, ctx.feats_shape, ctx.uncovered = terms, saved, weight, feats.shape, uncovered
        return total

    @staticmethod
    def backward(ctx, grad):
        weight = ctx.weight
        d_feats = weight.new_zeros(ctx.feats_shape)
        # one buffer, rows: the weight's gradient (h, units), then the bias's. Each term writes its own units,
        # the entries (last) add onto theirs: only units in no term start at 0
        d_params = weight.new_empty(weight.shape[0] + 1, weight.shape[1])
        d_params[:, ctx.uncovered] = 0
        scale = 2 * grad
        for term, kept in zip(ctx.terms, ctx.saved):
            term.backward(kept, scale, weight, d_feats, d_params)
        ctx.saved = None
        return d_feats, d_params[:-1], d_params[-1], None, None, None, None


class GramOutputRegularizer:
    """β/(t) · Σ_{earlier tasks} ‖mask ⊙ (h(e; θ + Δθ) − h*(e))‖², every earlier task at every step.

    The same value as `OutputRegularizer` without a subset (its reference,
    which the tests compare against), computed in the terms described above.
    """

    def __init__(self, hnet: nn.Module, prev_embs: torch.Tensor, beta: float, masks: torch.Tensor | None = None):
        if masks is not None and masks.dtype != torch.bool and not bool(((masks == 0) | (masks == 1)).all()):
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
            chunk_ids = pattern.nonzero().squeeze(1)
            if not chunk_ids.numel():
                continue
            # one term per run of consecutive units: its weights are then a view of the output layer, not a gather
            for unit_ids in _consecutive((unit_class == k).nonzero().squeeze(1)):
                if n * chunk_ids.numel() * unit_ids.numel() >= MIN_TERM_ENTRIES:
                    self.terms.append(_Term(chunk_ids, unit_ids, feats, w_star, b_star))
                else:
                    own[:, chunk_ids.unsqueeze(1), unit_ids] = True
        if bool(own.any()):
            self.terms.append(_Entries(own, feats, w_star, b_star))
        covered = torch.zeros(width, dtype=torch.bool, device=prev_embs.device)
        for term in self.terms:
            if isinstance(term, _Term):
                covered[term.units] = True
        self.uncovered = (~covered).nonzero().squeeze(1)  # units no term writes the gradient of

    @property
    def num_prev(self) -> int:
        return len(self.prev_embs)

    def loss(self, hnet: nn.Module, looked: dict[nn.Parameter, torch.Tensor] | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """`looked`: the looked-ahead values of some parameters (`adam_lookahead`); None: the current ones.
        `generator` is accepted for the reference's signature: every task is regularized, nothing is drawn."""
        looked = looked or {}
        params = dict(hnet.named_parameters())
        weight, bias = params.pop(self.weight_name), params.pop(self.bias_name)  # the features do not use them
        feature_params = {name: at_looked(p, looked) for name, p in params.items()}
        feats = functional_call(hnet, feature_params, (self.prev_embs,), {"features_only": True})
        sse = _OutputLayerSSE.apply(feats, weight, bias, looked.get(weight), looked.get(bias), self.terms,
                                    self.uncovered)
        return self.beta * sse / self.num_prev

    def held_bytes(self) -> int:
        """Memory the snapshot holds (what the explicit form keeps as every earlier task's full outputs)."""
        tensors = [self.prev_embs, *(t for term in self.terms for t in term.held())]
        return sum(t.numel() * t.element_size() for t in tensors)
