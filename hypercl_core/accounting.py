"""Exact parameter counts and compression ratios, computed without building nets.

Sweeps and the architecture sampler reject infeasible or out-of-range
hypernetworks before any training, so the count must be cheap and exact; a
unit test checks it against the built modules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hypercl_core.config import BenchmarkConfig, ExperimentConfig, HnetConfig

# (input dim, outputs per task) of each benchmark's target network.
BENCHMARK_SHAPES = {"split_mnist": (784, 2), "permuted_mnist": (1024, 10), "regression1d": (1, 1),
                    "class_mnist": (784, 1)}


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


def num_heads(bench: BenchmarkConfig) -> int:
    """Multi-head targets for CL1/CL3 (one head per task), one shared head for CL2."""
    return bench.num_tasks if bench.scenario in ("cl1", "cl3") and bench.name != "regression1d" else 1


def target_layer_dims(cfg: ExperimentConfig) -> list[int]:
    in_dim, per_task = BENCHMARK_SHAPES[cfg.benchmark.name]
    return [in_dim, *cfg.target.hidden, per_task * num_heads(cfg.benchmark)]


def mlp_weights(dims: list[int]) -> int:
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def hnet_outputs(cfg: ExperimentConfig) -> int:
    """What the hypernetwork generates: every target weight (HNET), or a mask
    value for every target weight except the output bias, which HyperMask leaves unmasked."""
    dims = target_layer_dims(cfg)
    return mlp_weights(dims) - (dims[-1] if cfg.method.name == "hypermask" else 0)


def decoder_layer_dims(cfg: ExperimentConfig) -> list[int]:
    """The replay VAE's decoder: latent code and task condition in, an image out."""
    r = cfg.replay
    return [2 * r.latent_dim, *r.decoder_hidden, BENCHMARK_SHAPES[cfg.benchmark.name][0]]


def hnet_weights(h: HnetConfig, outputs: int) -> int:
    if h.chunk_dim is None:
        return mlp_weights([h.temb_dim, *h.hidden, outputs])
    chunks = math.ceil(outputs / h.chunk_dim)
    return mlp_weights([h.temb_dim + h.cemb_dim, *h.hidden, h.chunk_dim]) + chunks * h.cemb_dim


def count_params(cfg: ExperimentConfig) -> ParamCounts:
    """The main hypernetwork against what it generates: the classifier's target (HNET,
    HyperMask) or, where only the replay model has one (VAE alone, HNET+R), the VAE's decoder."""
    if cfg.method.name in ("replay", "hnet_r"):
        decoder = mlp_weights(decoder_layer_dims(cfg))
        h = cfg.replay.hnet
        return ParamCounts(decoder, hnet_weights(h, decoder), cfg.benchmark.num_tasks * h.temb_dim)
    target = mlp_weights(target_layer_dims(cfg))
    shared = target if cfg.method.name == "hypermask" else 0
    return ParamCounts(target, hnet_weights(cfg.hnet, hnet_outputs(cfg)), cfg.benchmark.num_tasks * cfg.hnet.temb_dim,
                       shared)
