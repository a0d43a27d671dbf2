"""Every benchmark, declared once: what it reads, how its tasks are made, what it allows.

The config validates names, task counts and scenarios against these entries,
parameter counting reads input shapes and classes per task from them, and
`build_benchmark` / `require_data` are the only places that load data. A new
benchmark is one entry here plus the function that builds its tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from hypercl_core.data import cifar, tasks
from hypercl_core.data.mnist import load_mnist, require_mnist, resolve_data_root
from hypercl_core.data.tasks import Benchmark, Task

if TYPE_CHECKING:
    from hypercl_core.config import BenchmarkConfig

Builder = Callable[["BenchmarkConfig", int, torch.device, Path], Benchmark]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    build: Builder  # (config section, seed, device, data root) -> the tasks on the device
    outputs_per_task: int  # classes per task (1 for regression)
    max_tasks: int | None
    scenarios: tuple[str, ...] = ("cl1", "cl2", "cl3")
    # (data root, config section): check the files the benchmark reads before anything is
    # written, one line if one is missing (None: generated data).
    require: Callable[[Path, "BenchmarkConfig"], object] | None = None
    regression: bool = False
    one_head: bool = False  # one output head for every task even when the task is given (regression)
    classifiable: bool = True  # False: one class per task, which only generative models learn
    images: bool = False  # inputs are always (C, H, W) images (else vectors, or images with as_rgb32)
    flat_size: int = 0  # values per example as a vector (MNIST 784, PermutedMNIST 1024)
    title: str = ""  # how tables name it; {tasks} is replaced by the task count (default: its name)

    def label(self, num_tasks: int) -> str:
        return (self.title or self.name).format(tasks=num_tasks)

    def input_shape(self, cfg: BenchmarkConfig) -> tuple[int, ...]:
        return (3, 32, 32) if self.images or cfg.as_rgb32 else (self.flat_size,)


def _require_mnist(root: Path, cfg: BenchmarkConfig) -> object:
    return require_mnist(root)


def _split_mnist(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    return tasks.split_mnist(load_mnist(root), cfg.num_tasks, device, cfg.as_rgb32)


def _class_mnist(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    return tasks.class_mnist(load_mnist(root), cfg.num_tasks, device, cfg.as_rgb32)


def _permuted_mnist(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    return tasks.permuted_mnist(load_mnist(root), cfg.num_tasks, seed, device)


def _regression1d(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    return tasks.regression1d(cfg, seed, device)


def _cifar_tasks(name: str, splits: list) -> Benchmark:
    """uint8 images on the device, normalized per batch, training batches cropped and flipped there."""
    made = [Task(t, *split, class_offset=cifar.CLASSES_PER_TASK * t, decode=cifar.to_float, augment=cifar.augment)
            for t, split in enumerate(splits)]
    return Benchmark(name, made, input_shape=cifar.IMAGE_SHAPE, outputs_per_task=cifar.CLASSES_PER_TASK)


def _split_cifar(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    """Task 1 CIFAR-10, then CIFAR-100 in consecutive 10-class splits (von Oswald et al. 2020)."""
    return _cifar_tasks("split_cifar", cifar.split_cifar(root, cfg.num_tasks, device))


def _split_cifar100(cfg: BenchmarkConfig, seed: int, device: torch.device, root: Path) -> Benchmark:
    """CIFAR-100 in consecutive 10-class splits (HyperMask's split CIFAR-100)."""
    return _cifar_tasks("split_cifar100", cifar.split_cifar(root, cfg.num_tasks, device, with_cifar10=False))


def _require_cifar(root: Path, cfg: BenchmarkConfig) -> object:
    return cifar.require_cifar(root, "both" if cfg.num_tasks > 1 else "cifar10")


def _require_cifar100(root: Path, cfg: BenchmarkConfig) -> object:
    return cifar.require_cifar(root, "cifar100")


BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("split_mnist", _split_mnist, outputs_per_task=2, max_tasks=5, require=_require_mnist, flat_size=784,
                  title="SplitMNIST"),
    BenchmarkSpec("permuted_mnist", _permuted_mnist, outputs_per_task=10, max_tasks=None, require=_require_mnist,
                  flat_size=1024, title="PermutedMNIST-{tasks}"),
    BenchmarkSpec("regression1d", _regression1d, outputs_per_task=1, max_tasks=len(tasks.POLYNOMIALS),
                  scenarios=("cl1",), regression=True, one_head=True, flat_size=1, title="1D regression"),
    # One digit per task (class-incremental), for replay models.
    BenchmarkSpec("class_mnist", _class_mnist, outputs_per_task=1, max_tasks=10, require=_require_mnist,
                  classifiable=False, flat_size=784),
    BenchmarkSpec("split_cifar", _split_cifar, outputs_per_task=cifar.CLASSES_PER_TASK, max_tasks=cifar.MAX_TASKS,
                  require=_require_cifar, images=True, flat_size=3 * 32 * 32, title="split CIFAR-10/100"),
    BenchmarkSpec("split_cifar100", _split_cifar100, outputs_per_task=cifar.CLASSES_PER_TASK,
                  max_tasks=cifar.MAX_TASKS - 1, require=_require_cifar100, images=True, flat_size=3 * 32 * 32,
                  title="split CIFAR-100"),
)}


def require_data(cfg: BenchmarkConfig, data_root: str | os.PathLike | None = None) -> Path:
    """The resolved data root, after checking that it holds the files this benchmark reads.

    Call it before anything is written (run folder, sweep folder), so a missing dataset
    is one line (a `DataError`) and not a half-made run; benchmarks that read no files pass.
    """
    root = resolve_data_root(data_root)
    spec = BENCHMARKS[cfg.name]
    if spec.require is not None:
        spec.require(root, cfg)
    return root


def build_benchmark(cfg: BenchmarkConfig, seed: int, device: torch.device, data_root: str | None = None) -> Benchmark:
    return BENCHMARKS[cfg.name].build(cfg, seed, device, resolve_data_root(data_root))
