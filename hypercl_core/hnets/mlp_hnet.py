"""Full and chunked MLP hypernetworks.

A chunked hypernetwork reuses one MLP for every chunk of the target weights,
told apart by learned chunk embeddings; a full one (`chunk_dim=None`) has one
output head as wide as the target. Both take a batch of task embeddings, so
the regularizer evaluates every previous task, all chunks, in one call.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hypercl_core.nets.activations import ACTIVATIONS


class HyperNetwork(nn.Module):
    def __init__(
        self,
        num_outputs: int,
        temb_dim: int,
        hidden: list[int],
        activation: str,
        chunk_dim: int | None = None,
        cemb_dim: int = 0,
        output_blocks: list[int] | None = None,
    ):
        super().__init__()
        if output_blocks is not None and (chunk_dim is not None or sum(output_blocks) != num_outputs):
            raise ValueError("output_blocks must split a full hypernetwork's outputs exactly")
        self.output_blocks = output_blocks
        self.num_outputs = num_outputs
        self.chunked = chunk_dim is not None
        self.chunk_dim = chunk_dim if self.chunked else num_outputs
        self.num_chunks = math.ceil(num_outputs / self.chunk_dim)
        self.act = ACTIVATIONS[activation]
        in_dim = temb_dim + (cemb_dim if self.chunked else 0)
        dims = [in_dim, *hidden, self.chunk_dim]
        self.layers = nn.ModuleList([*(nn.Linear(a, b) for a, b in zip(dims[:-2], dims[1:-1])),
                                     OutputLayer(dims[-2], dims[-1])])
        if self.chunked:
            self.chunk_embs = nn.Parameter(torch.empty(self.num_chunks, cemb_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: Xavier-uniform weights, zero biases, N(0,1) chunk embeddings.

        With `output_blocks` (a full hnet generating target tensors of those
        sizes) the output layer is Xavier-initialized block by block, as the
        authors' full hnet with one output head per target tensor: a small
        tensor (a bias, a one-unit output layer) then starts at its own scale
        instead of the scale of the whole output. On the 1D regression this is
        what lets later tasks be learned without overwriting earlier ones.
        """
        for layer in self.layers[:-1]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        out = self.layers[-1]
        out.xavier_uniform_([out.out_features])
        nn.init.zeros_(out.bias)
        if self.output_blocks is not None:
            out.xavier_uniform_(self.output_blocks)
        if self.chunked:
            nn.init.normal_(self.chunk_embs)

    @torch.no_grad()
    def rescale_output_init(self, std: float, probe_embs: torch.Tensor) -> None:
        """Scale the output layer so the generated weights of these embeddings have std `std`.

        The Xavier output layer makes a wide chunk tiny (std ~0.02 for 75,000
        outputs from 25 units); a generator that deep then starts with images
        that hardly depend on its noise input, which a GAN does not recover from.
        """
        self.layers[-1].weight.mul_(std / float(self(probe_embs).std()))

    def forward(self, temb: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        """(B, temb_dim) task embeddings -> (B, num_outputs) target weights.

        With `features_only`, the last hidden activations (B, num_chunks, h)
        instead: the output regularizer applies the output layer itself.
        """
        layers = self.layers[:-1]
        if self.chunked and layers:
            # The first layer on [task emb; chunk emb] is a per-task part plus a per-chunk part, added as an
            # outer sum: no (tasks x chunks x both dims) input is built, and its GEMM shrinks to the chunk
            # embeddings once per call. With tens of thousands of small chunks that layer was most of the work.
            first, split = layers[0], temb.shape[-1]
            per_chunk = torch.addmm(first.bias, self.chunk_embs, first.weight[:, split:].t())
            h = self.act((temb @ first.weight[:, :split].t()).unsqueeze(1) + per_chunk)
            layers = layers[1:]
        elif self.chunked:  # a linear hnet: its features are the inputs themselves
            batch = temb.shape[0]
            h = torch.cat([temb.unsqueeze(1).expand(batch, self.num_chunks, -1),
                           self.chunk_embs.unsqueeze(0).expand(batch, -1, -1)], dim=-1)
        else:
            h = temb
        for layer in layers:
            h = self.act(layer(h))
        if features_only:
            return h.reshape(temb.shape[0], self.num_chunks, -1)
        last = self.layers[-1]
        if self.num_chunks * self.chunk_dim > self.num_outputs:
            return _PaddedOutputLayer.apply(h, last.weight, last.bias, self.num_outputs)
        return last(h).reshape(temb.shape[0], -1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def output_layer_names(self) -> tuple[str, str]:
        last = len(self.layers) - 1
        return f"layers.{last}.weight", f"layers.{last}.bias"


class OutputLayer(nn.Module):
    """A linear layer that holds its weight as (in, out), the transpose of nn.Linear's (out, in).

    A hypernetwork's output layer is wide and shallow: a chunk of tens of
    thousands of units from a last hidden layer of tens. In nn.Linear's layout
    its weight gradient, and every product of the output regularizer with it,
    is a (units, h) matrix with the short side contiguous, which CPU BLAS (MKL on
    this project's AMD machines) computes four to seven times slower than the
    same product laid out with the units contiguous; Adam needs the parameter
    contiguous, so the transposed layout is the parameter itself. Checkpoints
    keep nn.Linear's layout (transposed on save and on load), so they read as
    those of earlier code.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.out_features = out_features
        linear = nn.Linear(in_features, out_features)  # its default init, and so a seed's draws, as before
        self.weight = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = linear.bias

    @torch.no_grad()
    def xavier_uniform_(self, blocks: list[int]) -> None:
        """Xavier-uniform init of each block of output units, drawn in nn.Linear's (out, in) order.

        Drawn in this layout's own order, a seed would start every hnet from
        another init than the code before it did, and entropy-based task
        inference (SplitMNIST CL3) swings by tens of points between inits; the
        same draws keep a seed's runs, and the figures recorded with them.
        """
        for block in self.weight.split(blocks, dim=1):
            block.copy_(nn.init.xavier_uniform_(block.new_empty(block.shape[1], block.shape[0])).t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out), as nn.Linear."""
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        weight = destination[prefix + "weight"]
        destination[prefix + "weight"] = weight.t() if keep_vars else weight.t().contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "weight" in state_dict:  # load_state_dict passes its own copy of the dict
            state_dict[prefix + "weight"] = state_dict[prefix + "weight"].t()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _PaddedOutputLayer(torch.autograd.Function):
    """The chunked output layer, (B, chunks, h) -> (B, num_outputs): the last chunk's padded tail dropped.

    Autograd's slice backward would fill a zero buffer as large as every chunk
    and copy the gradient into it on every step: two passes over the hnet's
    whole output. With one weight set (a training step) the gradient is used
    in place instead, as the full chunks plus the last chunk's used part.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.n = n
        out = torch.addmm(bias, h.reshape(-1, h.shape[-1]), weight)
        return out.view(h.shape[0], -1)[:, :n]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, weight = ctx.saved_tensors
        batch, chunks, width = h.shape[0], h.shape[1], weight.shape[1]
        if batch > 1 or not grad.is_contiguous():
            padded = grad.new_empty(batch, chunks * width)
            padded[:, : ctx.n] = grad
            padded[:, ctx.n :] = 0
            g, rows = padded.view(-1, width), h.reshape(-1, h.shape[-1])
            return (g @ weight.t()).view(h.shape), rows.t() @ g, g.sum(0), None
        full, used = divmod(ctx.n, width)  # chunks wholly used, and the units used of the last (> 0: it is padded)
        flat, rows = grad.view(-1), h[0]
        g = flat[: full * width].view(full, width)
        d_h = h.new_empty(h.shape)  # every row is written: the full chunks, then the last
        torch.mm(g, weight.t(), out=d_h[0, :full])
        d_weight, d_bias = rows[:full].t() @ g, g.sum(0)
        tail = flat[full * width :]
        d_h[0, full] = weight[:, :used] @ tail
        d_weight[:, :used].addr_(rows[full], tail)
        d_bias[:used] += tail
        return d_h, d_weight, d_bias, None


class TaskEmbeddings(nn.Module):
    """One learned embedding per task; earlier ones are frozen by the method."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.embs = nn.ParameterList()

    def add(self, generator: torch.Generator, device: torch.device) -> nn.Parameter:
        emb = nn.Parameter(torch.randn(self.dim, generator=generator).to(device))
        self.embs.append(emb)
        return emb

    @classmethod
    def frozen(cls, dim: int, embs: list[torch.Tensor], device: torch.device) -> "TaskEmbeddings":
        """Embeddings of learned tasks (from a checkpoint): fixed, as after learning."""
        out = cls(dim)
        for emb in embs:
            out.embs.append(nn.Parameter(emb.to(device), requires_grad=False))
        return out

    def __len__(self) -> int:
        return len(self.embs)

    def stacked(self, ids: list[int] | None = None, detach: bool = False) -> torch.Tensor:
        ids = range(len(self.embs)) if ids is None else ids
        out = torch.stack([self.embs[i] for i in ids])
        return out.detach() if detach else out

    def num_params(self) -> int:
        return sum(emb.numel() for emb in self.embs)
