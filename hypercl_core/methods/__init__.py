"""Continual-learning methods, each declared by its own module (see `registry`).

Importing this package registers every method; building one goes through its
registry entry: the subsystems it names, each on the benchmark loaded onto its
device, composed into one Subsystem where there are several. The experiment
runner does this in one process; the orchestrator builds each subsystem on its
own Ray actor and composes the proxies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypercl_core.allocator import keep_freed_memory
from hypercl_core.data.benchmarks import build_benchmark
from hypercl_core.device import resolve_device
from hypercl_core.methods import (  # noqa: F401 - registers them
    dgr, ewc, finetune, from_scratch, hnet, hnet_r, hnet_tir, hypermask, joint, replay_model, si)
from hypercl_core.registry import METHODS, method_spec
from hypercl_core.subsystem import Progress, Subsystem

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

__all__ = ["METHODS", "Progress", "Subsystem", "build_learner", "build_subsystem", "compose", "subsystem_names"]


def subsystem_names(cfg: ExperimentConfig) -> list[str]:
    """The separately placeable parts of the configured method, main learner first."""
    return list(method_spec(cfg).subsystems(cfg))


def build_subsystem(name: str, cfg: ExperimentConfig, data_root: str | None = None,
                    device: str | None = None) -> Subsystem:
    """Load the benchmark onto the device and build one subsystem of the method."""
    builders = method_spec(cfg).subsystems(cfg)
    if name not in builders:
        raise ValueError(f"method {cfg.method.name} has no subsystem {name!r}; it has {list(builders)}")
    dev = resolve_device(device or cfg.device)
    keep_freed_memory()  # every subsystem's process, local or an actor, trains with megabyte-sized temporaries
    bench = build_benchmark(cfg.benchmark, cfg.seed, dev, data_root)
    return builders[name](cfg, bench, dev)


def compose(cfg: ExperimentConfig, parts: dict[str, Subsystem]) -> Subsystem:
    """The method as one Subsystem over its parts (local objects or actor proxies)."""
    spec = method_spec(cfg)
    return spec.compose(parts) if spec.compose is not None else next(iter(parts.values()))


def build_learner(cfg: ExperimentConfig, data_root: str | None = None, device: str | None = None) -> Subsystem:
    """The whole method in this process."""
    return compose(cfg, {name: build_subsystem(name, cfg, data_root, device) for name in subsystem_names(cfg)})
