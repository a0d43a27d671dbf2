"""HNET+R: an ordinary classifier (section `target`) that keeps earlier tasks by replaying
the hnet-protected VAE (section `replay`); no hypernetwork protects the classifier itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from hypercl_core.methods.composite import start
from hypercl_core.registry import MethodSpec, register, table1
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.subsystem import Progress, Subsystem
from hypercl_core.metrics import classifier_primary
from hypercl_core.replay.generator import check_replay_benchmark, replay_params
from hypercl_core.replay.vae import HnetVAE
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class HnetRSection(Section):
    name: Literal["hnet_r"] = "hnet_r"


class ReplayMethod:
    """HNET+R: the classifier learns task t by replaying the VAE as frozen after task t-1,
    while the VAE learns task t; only the VAE's generated decoder weights are shipped."""

    def __init__(self, parts: dict[str, Subsystem]):
        self.classifier = parts["classifier"]
        self.replay = parts["replay_vae"]

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        began = time.perf_counter()
        snapshot = self.replay.replay_snapshot(t) if t > 0 else None
        learning = [start(self.classifier, "learn_task", t, progress=progress, replay=snapshot),
                    start(self.replay, "learn_task", t)]
        classifier, replay = (p.result() for p in learning)
        return {"train_s": time.perf_counter() - began, "classifier_train_s": classifier["train_s"],
                "replay_train_s": replay["train_s"], "steps": classifier["steps"], "steps_per_s": classifier["steps_per_s"]}

    def evaluate(self, upto: int) -> dict[str, list[float]]:
        return self.classifier.evaluate(upto)

    def state_dict(self) -> dict:
        return {"classifier": self.classifier.state_dict(), "replay_vae": self.replay.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.replay.load_state_dict(state["replay_vae"])


def hnet_r_scores(cfg: ExperimentConfig) -> list[str]:
    """It answers without inferring a task: no task-inference matrix."""
    return ["acc_task_given"] if cfg.benchmark.scenario == "cl1" else ["acc_task_given", "acc_task_inferred"]


def check_hnet_r(cfg: ExperimentConfig) -> None:
    check_replay_benchmark(cfg)
    if cfg.replay.model != "vae":
        raise ValueError("hnet_r replays from the VAE (the GAN was not used for replay); set replay.model=vae")


register(MethodSpec(
    "hnet_r", HnetRSection, frozenset({"target", "replay"}),
    subsystems=lambda cfg: {"classifier": ReplayClassifier, "replay_vae": HnetVAE}, compose=ReplayMethod,
    scores=hnet_r_scores, primary=classifier_primary, count_params=replay_params, check=check_hnet_r,
    title="HNET+R", reported=table1((97.87, 97.60, 97.76), (99.83, 98.00, 95.30)),
))
