"""DGR+distill (Shin et al. 2017 with van de Ven & Tolias's distillation): HNET+R without the
hypernetwork. The classifier is HNET+R's (replayed images with soft targets from its copy
before the task, temperature 2); the generator is an ordinary VAE trained on its own
replay (`SelfReplayVAE`). Both learn task t at once, the classifier replaying the VAE as
frozen after task t−1, as in HNET+R; the same composition places them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import torch
from pydantic import Field

from hypercl_core.accounting import mlp_weights
from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.methods.hnet_r import ReplayMethod
from hypercl_core.methods.own_weights import register_own_weights, trained_weights
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.registry import table1
from hypercl_core.replay.generator import check_replay_benchmark
from hypercl_core.replay.self_replay_vae import SelfReplayVAE, vae_layer_dims
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class DgrSection(Section):
    name: Literal["dgr"] = "dgr"
    encoder_hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)
    decoder_hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)
    latent_dim: int = Field(100, ge=1)
    # The current task's share of both losses (classifier and VAE); None: 1/(t+1), theirs.
    current_weight: Optional[float] = Field(None, gt=0, le=1)


class DgrClassifier(ReplayClassifier):
    def current_weight(self) -> float | None:
        return self.cfg.method.current_weight

    def replay_logits(self, images: torch.Tensor, weights: torch.Tensor, known: int,
                      train: bool = False) -> torch.Tensor:
        """An unconditional generator's images belong to no task, so in CL1 every replayed image
        goes through every earlier task's head (as van de Ven & Tolias): (tasks, all images, k)."""
        if self.scenario != "cl1":
            return super().replay_logits(images, weights, known, train)
        out = self.target(images.flatten(0, 1), weights, None, task=0, train=train)
        return out.view(len(out), -1, self.k)[:, : images.shape[0]].transpose(0, 1)


def dgr_params(cfg: ExperimentConfig):
    """The classifier plus the VAE it replays (encoder with its μ/log σ² layer, and decoder)."""
    enc, dec = vae_layer_dims(cfg.method, BENCHMARKS[cfg.benchmark.name].flat_size)
    vae = mlp_weights([*enc, 2 * cfg.method.latent_dim]) + mlp_weights(dec)
    return trained_weights(cfg, extra=vae)


register_own_weights("dgr", DgrSection, {"classifier": DgrClassifier, "replay_vae": SelfReplayVAE}, "DGR+distill",
                     count_params=dgr_params, check=check_replay_benchmark, compose=ReplayMethod,
                     reported=table1((97.51, 97.35, 96.38), (99.61, 96.83, 91.79)))
