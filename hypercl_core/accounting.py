"""Exact parameter counts and compression ratios, computed without building nets.

Sweeps and the architecture sampler reject infeasible or out-of-range
hypernetworks before any training, so the count must be cheap and exact; a
unit test checks it against the built modules. What a method counts (which
target, which hypernetwork, what else it trains) is in its registry entry;
the arithmetic is here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from hypercl_core.registry import method_spec

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig
    from hypercl_core.sections import HnetConfig


@dataclass(frozen=True)
class ParamCounts:
    target_weights: int
    hnet_weights: int  # MLP weights and biases plus chunk embeddings
    task_embedding_weights: int  # all tasks of the benchmark
    shared_target_weights: int = 0  # HyperMask trains the target's weights too

    @property
    def compression_ratio(self) -> float:
        """Trained parameters over target weights (the paper's |Θ_h ∪ {e}| / |θ_trgt| for HNET)."""
        trained = self.hnet_weights + self.task_embedding_weights + self.shared_target_weights
        return trained / self.target_weights

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "compression_ratio": self.compression_ratio}


def mlp_weights(dims: list[int]) -> int:
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def hnet_weights(h: HnetConfig, outputs: int) -> int:
    """A hypernetwork generating `outputs` values: full (one output per value) or chunked."""
    if h.chunk_dim is None:
        return mlp_weights([h.temb_dim, *h.hidden, outputs])
    chunks = math.ceil(outputs / h.chunk_dim)
    return mlp_weights([h.temb_dim + h.cemb_dim, *h.hidden, h.chunk_dim]) + chunks * h.cemb_dim


def hnet_counts(h: HnetConfig, target_weights: int, num_tasks: int, generated: int | None = None,
                shared: int = 0) -> ParamCounts:
    """A hypernetwork that generates `generated` values (default: every target weight)."""
    outputs = target_weights if generated is None else generated
    return ParamCounts(target_weights, hnet_weights(h, outputs), num_tasks * h.temb_dim, shared)


def count_params(cfg: ExperimentConfig) -> ParamCounts:
    """The method's main hypernetwork against what it generates (its registry entry says which)."""
    return method_spec(cfg).count_params(cfg)
