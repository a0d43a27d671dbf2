"""Every target network, declared once: its config section and how to build it.

`target.name` picks the entry; the entry's section holds the keys that target
reads (so a key another target uses is an error naming the valid ones). A
target is built from the benchmark's input shape and the method's head layout,
cheaply (no weights are allocated), so parameter counting builds it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

from pydantic import Field, model_validator

from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.nets.conv import ResNet, ZenkeNet
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.nets.target import TargetNetwork
from hypercl_core.sections import Activation, Section, check_sizes

if TYPE_CHECKING:
    from hypercl_core.config import BenchmarkConfig, ExperimentConfig


class MLPTarget(Section):
    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [400, 400], min_length=1)
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _positive(self) -> "MLPTarget":
        check_sizes(self.hidden)
        return self


class ResNetTarget(Section):
    """The CIFAR ResNet of He et al. (2016): 6n+2 layers, batch norm per task."""

    name: Literal["resnet"] = "resnet"
    depth: int = Field(32, ge=8)

    @model_validator(mode="after")
    def _depth(self) -> "ResNetTarget":
        if (self.depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, ...), got {self.depth}")
        return self


class ZenkeNetTarget(Section):
    """The conv net of Zenke et al. (2017), which the paper reproduces in Fig. A3."""

    name: Literal["zenke"] = "zenke"


# (section, input shape of one example, outputs per head, heads, tasks) -> the target
Build = Callable[[Section, tuple[int, ...], int, int, int], TargetNetwork]


@dataclass(frozen=True)
class TargetSpec:
    name: str
    section: type[Section]
    build: Build
    images_only: bool = False  # reads (C, H, W) images; an MLP reads anything, flattened


def _mlp(section: MLPTarget, shape: tuple[int, ...], k: int, heads: int, tasks: int) -> TargetNetwork:
    return TargetMLP(math.prod(shape), section.hidden, k, heads, section.activation)


def _resnet(section: ResNetTarget, shape: tuple[int, ...], k: int, heads: int, tasks: int) -> TargetNetwork:
    return ResNet(section.depth, k, heads, tasks, in_channels=shape[0])


def _zenke(section: ZenkeNetTarget, shape: tuple[int, ...], k: int, heads: int, tasks: int) -> TargetNetwork:
    return ZenkeNet(k, heads, tasks, in_channels=shape[0])


TARGETS: dict[str, TargetSpec] = {spec.name: spec for spec in (
    TargetSpec("mlp", MLPTarget, _mlp),
    TargetSpec("resnet", ResNetTarget, _resnet, images_only=True),
    TargetSpec("zenke", ZenkeNetTarget, _zenke, images_only=True),
)}


def build_target(section: Section, input_shape: tuple[int, ...], outputs_per_head: int, heads: int,
                 num_tasks: int) -> TargetNetwork:
    return TARGETS[section.name].build(section, input_shape, outputs_per_head, heads, num_tasks)


def num_heads(bench: "BenchmarkConfig") -> int:
    """One output head per task where the task is given or its classes are kept apart (CL1, CL3),
    one shared head for CL2 and for benchmarks with one head (regression)."""
    one_head = BENCHMARKS[bench.name].one_head
    return bench.num_tasks if bench.scenario in ("cl1", "cl3") and not one_head else 1


def classifier_target(cfg: "ExperimentConfig") -> TargetNetwork:
    """The configured target (section `target`) on the configured benchmark, one head per task
    as the scenario asks."""
    bench = BENCHMARKS[cfg.benchmark.name]
    return build_target(cfg.target, bench.input_shape(cfg.benchmark), bench.outputs_per_task,
                        num_heads(cfg.benchmark), cfg.benchmark.num_tasks)
