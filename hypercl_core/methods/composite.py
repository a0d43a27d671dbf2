"""Methods made of several subsystems, driven one task at a time.

The driver decides what runs when and what travels between subsystems; it
never knows where they run. A subsystem that can work in the background (a
Ray actor's proxy) offers `submit(method, ...)` and the driver starts every
independent call before waiting on any, so subsystems on separate GPUs learn
the same task at the same time; a local subsystem just runs the call.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from hypercl_core.methods import Progress, Subsystem


class Pending(Protocol):
    def result(self) -> Any: ...


class _Done:
    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def start(subsystem: Subsystem, method: str, *args: Any, **kwargs: Any) -> Pending:
    submit = getattr(subsystem, "submit", None)
    if submit is not None:
        return submit(method, *args, **kwargs)
    return _Done(getattr(subsystem, method)(*args, **kwargs))


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
                "replay_train_s": replay["train_s"], "steps_per_s": classifier["steps_per_s"]}

    def evaluate(self, upto: int) -> dict[str, list[float]]:
        return self.classifier.evaluate(upto)

    def state_dict(self) -> dict:
        return {"classifier": self.classifier.state_dict(), "replay_vae": self.replay.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.replay.load_state_dict(state["replay_vae"])


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
                "steps_per_s": classifier["steps_per_s"],
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
