"""The hnet-protected replay model learned on its own: a VAE or a GAN (section `replay`).

It learns to generate each task's images and is scored by what it generates
(negative ELBO, drift of fixed-noise samples); the classifiers that replay it
are HNET+R and HNET+TIR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from hypercl_core.registry import MethodSpec, register
from hypercl_core.replay.gan import HnetGAN
from hypercl_core.replay.generator import check_replay_benchmark, replay_params
from hypercl_core.replay.vae import HnetVAE
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

MODELS = {"vae": HnetVAE, "gan": HnetGAN}


class ReplaySection(Section):
    name: Literal["replay"] = "replay"


def replay_scores(cfg: ExperimentConfig) -> list[str]:
    return ["nll", "sample_drift"] if cfg.replay.model == "vae" else ["sample_drift"]


register(MethodSpec(
    "replay", ReplaySection, frozenset({"replay"}),
    subsystems=lambda cfg: {f"replay_{cfg.replay.model}": MODELS[cfg.replay.model]},
    scores=replay_scores, primary=lambda cfg: replay_scores(cfg)[0], count_params=replay_params,
    check=check_replay_benchmark, classifies=False, title="replay model",
))
