"""HNET+TIR: the HNET classifier answers with the weights of the task that a task-inference
classifier picks; that classifier replays the hnet-protected VAE (section `replay`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from hypercl_core.methods.composite import start
from hypercl_core.methods.hnet import HnetLearner, hnet_params
from hypercl_core.registry import MethodSpec, register, table1
from hypercl_core.methods.replay_classifier import TaskInferenceClassifier
from hypercl_core.subsystem import Progress, Subsystem
from hypercl_core.metrics import classifier_primary, hnet_classifier_scores
from hypercl_core.replay.generator import check_replay_benchmark
from hypercl_core.replay.vae import HnetVAE
from hypercl_core.sections import ProtectedSection

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class HnetTirSection(ProtectedSection):
    """The output regularizer of the HNET classifier (the VAE's is `replay.beta`)."""

    name: Literal["hnet_tir"] = "hnet_tir"


class TaskInferenceMethod:
    """HNET+TIR: the HNET classifier, the replay VAE and the task-inference classifier learn
    task t side by side; the last replays the VAE as frozen after task t-1. At test time it
    picks the task for every image and the HNET classifier answers with that task's weights."""

    def __init__(self, parts: dict[str, Subsystem]):
        self.classifier = parts["target_hnet"]
        self.replay = parts["replay_vae"]
        self.task_inference = parts["task_inference"]

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        began = time.perf_counter()
        snapshot = self.replay.replay_snapshot(t) if t > 0 else None
        learning = [start(self.classifier, "learn_task", t, progress=progress),
                    start(self.replay, "learn_task", t),
                    start(self.task_inference, "learn_task", t, replay=snapshot)]
        classifier, replay, inference = (p.result() for p in learning)
        return {"train_s": time.perf_counter() - began, "classifier_train_s": classifier["train_s"],
                "replay_train_s": replay["train_s"], "task_inference_train_s": inference["train_s"],
                "steps": classifier["steps"], "steps_per_s": classifier["steps_per_s"],
                "trained_compression_ratio": classifier["trained_compression_ratio"]}

    def evaluate(self, upto: int) -> dict[str, list[float]]:
        predictions = self.task_inference.predict_tasks(upto)
        return self.classifier.evaluate(upto, task_predictions=predictions)

    def state_dict(self) -> dict:
        return {"target_hnet": self.classifier.state_dict(), "replay_vae": self.replay.state_dict(),
                "task_inference": self.task_inference.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["target_hnet"])
        self.replay.load_state_dict(state["replay_vae"])
        self.task_inference.load_state_dict(state["task_inference"])


def check_hnet_tir(cfg: ExperimentConfig) -> None:
    check_replay_benchmark(cfg)
    if cfg.replay.model != "vae":
        raise ValueError("hnet_tir replays from the VAE (the GAN was not used for replay); set replay.model=vae")
    if cfg.benchmark.scenario == "cl1":
        raise ValueError("hnet_tir infers the task, which CL1 gives; use method.name=hnet for cl1")


register(MethodSpec(
    "hnet_tir", HnetTirSection, frozenset({"target", "hnet", "replay"}),
    subsystems=lambda cfg: {"target_hnet": HnetLearner, "replay_vae": HnetVAE, "task_inference": TaskInferenceClassifier},
    compose=TaskInferenceMethod, scores=hnet_classifier_scores, primary=classifier_primary, count_params=hnet_params,
    check=check_hnet_tir, title="HNET+TIR", reported=table1((None, 97.58, 97.59), (None, 94.43, 89.59)),
))
