"""Continual-learning methods, each split into subsystems with a small interface.

A subsystem learns tasks by index (`learn_task(t)`), scores itself on the
tasks seen so far (`evaluate(upto)`), and round-trips its state
(`state_dict` / `load_state_dict`). The experiment runner drives these calls
in one process; the orchestrator makes the same calls on Ray actors.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from hypercl_core.config import ExperimentConfig
from hypercl_core.data.tasks import build_benchmark

Progress = Callable[[int], None]


class Subsystem(Protocol):
    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]: ...

    def evaluate(self, upto: int) -> dict[str, list[float]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def resolve_device(spec: str) -> torch.device:
    """The torch device for a config's `device`, refused here (one line) rather than deep in CUDA."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        from hypercl_core.errors import ConfigError  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available here; use --set device=auto or cpu")
        count, index = torch.cuda.device_count(), torch.device(spec).index
        if index is not None and index >= count:
            raise ConfigError(f"device {spec!r} requested but this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}; "
                              "use --set device=cuda:<index> or auto")
    return torch.device(spec)


def subsystem_names(cfg: ExperimentConfig) -> list[str]:
    """The separately placeable parts of the configured method, main learner first."""
    return {"hnet": ["target_hnet"], "hypermask": ["target_hypermask"], "replay": [f"replay_{cfg.replay and cfg.replay.model}"],
            "hnet_r": ["classifier", "replay_vae"],
            "hnet_tir": ["target_hnet", "replay_vae", "task_inference"]}[cfg.method.name]


def build_subsystem(name: str, cfg: ExperimentConfig, data_root: str | None = None,
                    device: str | None = None) -> Subsystem:
    """Load the benchmark onto the device and build one subsystem of the method."""
    from hypercl_core.methods.hnet import HnetLearner  # noqa: PLC0415
    from hypercl_core.methods.hypermask import HyperMaskLearner  # noqa: PLC0415
    from hypercl_core.methods.replay_classifier import ReplayClassifier, TaskInferenceClassifier  # noqa: PLC0415
    from hypercl_core.replay.gan import HnetGAN  # noqa: PLC0415
    from hypercl_core.replay.vae import HnetVAE  # noqa: PLC0415

    builders = {"target_hnet": HnetLearner, "target_hypermask": HyperMaskLearner, "replay_vae": HnetVAE, "replay_gan": HnetGAN,
                "classifier": ReplayClassifier, "task_inference": TaskInferenceClassifier}
    if name not in builders:
        raise ValueError(f"unknown subsystem {name!r}; known: {sorted(builders)}")
    dev = resolve_device(device or cfg.device)
    bench = build_benchmark(cfg.benchmark, cfg.seed, dev, data_root)
    return builders[name](cfg, bench, dev)


def compose(cfg: ExperimentConfig, parts: dict[str, Subsystem]) -> Subsystem:
    """The method as one Subsystem over its parts (local objects or actor proxies)."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    from hypercl_core.methods.composite import ReplayMethod, TaskInferenceMethod  # noqa: PLC0415

    return {"hnet_r": ReplayMethod, "hnet_tir": TaskInferenceMethod}[cfg.method.name](parts)


def build_learner(cfg: ExperimentConfig, data_root: str | None = None, device: str | None = None) -> Subsystem:
    """The whole method in this process."""
    return compose(cfg, {name: build_subsystem(name, cfg, data_root, device) for name in subsystem_names(cfg)})
