"""Random hypernetwork architectures of the paper's robustness study (Fig. A7).

The grid (1 or 2 hidden layers of 5, 10, 20, ..., 100 units; chunk embedding
8/12/24/56/96; output size from the paper's list) is small enough to count
exactly: every architecture's compression ratio on the base config's target
is known before anything trains. Plain random draws crowd into the ratios
where the grid is dense and leave the extremes with a handful of points, so
the sampler fills ratio bins evenly instead, passing what an almost empty bin
cannot hold on to the others.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from hypercl_core.accounting import count_params
from hypercl_core.config import ExperimentConfig
from hypercl_core.errors import UserError

LAYER_SIZES = (5, *range(10, 101, 10))
CEMB_DIMS = (8, 12, 24, 56, 96)
OUTPUT_SIZES = (10, 50, 100, 200, 300, 400, 500, 750, *range(1000, 10001, 1000), 20000, 30000, 40000)
# The keys an architecture sets; a study's --set must leave them alone.
ARCH_KEYS = ("hnet.hidden", "hnet.cemb_dim", "hnet.chunk_dim")
BinScale = Literal["log", "linear"]


@dataclass(frozen=True)
class Architecture:
    hidden: tuple[int, ...]
    cemb_dim: int
    chunk_dim: int
    ratio: float  # exact compression ratio on the base config's target

    def overrides(self) -> dict[str, Any]:
        return {"hnet.hidden": list(self.hidden), "hnet.cemb_dim": self.cemb_dim, "hnet.chunk_dim": self.chunk_dim}


def hidden_layouts() -> list[tuple[int, ...]]:
    one = [(size,) for size in LAYER_SIZES]
    return one + list(itertools.product(LAYER_SIZES, repeat=2))


def all_architectures(base: ExperimentConfig) -> list[Architecture]:
    """Every architecture of the grid with its ratio (13,860 of them; counting takes half a second)."""
    out = []
    for hidden, cemb, chunk in itertools.product(hidden_layouts(), CEMB_DIMS, OUTPUT_SIZES):
        hnet = base.hnet.model_copy(update={"hidden": list(hidden), "cemb_dim": cemb, "chunk_dim": chunk})
        ratio = count_params(base.model_copy(update={"hnet": hnet})).compression_ratio
        out.append(Architecture(hidden, cemb, chunk, ratio))
    return out


def bin_edges(lo: float, hi: float, bins: int, scale: BinScale = "log") -> list[float]:
    """Log-spaced by default: the ratios of interest span two decades."""
    if scale == "log":
        step = (math.log(hi) - math.log(lo)) / bins
        inner = [math.exp(math.log(lo) + i * step) for i in range(1, bins)]
    else:
        inner = [lo + (hi - lo) * i / bins for i in range(1, bins)]
    return [lo, *inner, hi]  # the ends exactly as given: exp(log(x)) need not round-trip


def bin_index(ratio: float, edges: list[float]) -> int:
    """Bins are [e_i, e_i+1), the last one closed; -1 outside."""
    if ratio < edges[0] or ratio > edges[-1]:
        return -1
    for i in range(len(edges) - 1):
        if ratio < edges[i + 1]:
            return i
    return len(edges) - 2


def bin_quotas(capacity: list[int], n: int, rng: random.Random) -> list[int]:
    """As even as the capacities allow: the smallest bins are filled first and what they
    cannot take is shared among the rest; leftovers go one each to random bins with room."""
    quotas = [0] * len(capacity)
    left = n
    order = sorted(range(len(capacity)), key=lambda i: capacity[i])
    for k, i in enumerate(order):
        quotas[i] = min(capacity[i], left // (len(order) - k))
        left -= quotas[i]
    roomy = [i for i in order if quotas[i] < capacity[i]]
    rng.shuffle(roomy)
    for i in roomy[:left]:
        quotas[i] += 1
    return quotas


def stratified_sample(archs: list[Architecture], n: int, ratio_range: tuple[float, float], bins: int,
                      seed: int = 0, scale: BinScale = "log") -> list[Architecture]:
    """`n` architectures with ratios inside `ratio_range`, spread evenly over `bins` bins, sorted by ratio."""
    lo, hi = ratio_range
    edges = bin_edges(lo, hi, bins, scale)
    buckets: list[list[Architecture]] = [[] for _ in range(bins)]
    for arch in archs:
        index = bin_index(arch.ratio, edges)
        if index >= 0:
            buckets[index].append(arch)
    available = sum(map(len, buckets))
    if available < n:
        raise UserError(f"only {available} architectures of the grid have a compression ratio in [{lo:g}, {hi:g}] "
                        f"on this target; lower --n-archs or widen --ratio-range")
    rng = random.Random(seed)
    quotas = bin_quotas([len(b) for b in buckets], n, rng)
    chosen = [arch for bucket, quota in zip(buckets, quotas) for arch in rng.sample(bucket, quota)]
    return sorted(chosen, key=lambda a: a.ratio)


def check_study_request(n: int, ratio_range: tuple[float, float], bins: int) -> None:
    lo, hi = ratio_range
    if not 0 < lo < hi:
        raise UserError(f"--ratio-range {lo:g} {hi:g}: need 0 < LO < HI, e.g. --ratio-range 0.01 2.0")
    if bins < 1:
        raise UserError(f"--bins must be at least 1, got {bins}")
    if n < 1:
        raise UserError(f"--n-archs must be at least 1, got {n}")
