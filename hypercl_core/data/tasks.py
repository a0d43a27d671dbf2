"""Benchmarks as sequences of tasks whose tensors live on the training device.

Tasks that share inputs (PermutedMNIST) share one tensor and apply their
permutation per batch, so ten tasks cost one copy of the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from hypercl_core.config import BenchmarkConfig, ExperimentConfig
from hypercl_core.data.mnist import load_mnist, pad_to_32, require_mnist, resolve_data_root, to_unit_float


@dataclass
class Task:
    """One task's data. Labels are local to the task's head (0..k-1)."""

    task_id: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_offset: int = 0  # global label = class_offset + local label (CL3)
    perm: Optional[torch.Tensor] = None  # input permutation, applied lazily

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.perm is None else x[:, self.perm]

    def train_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs(self.x_train[idx]), self.y_train[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.x_test), batch_size):
            stop = start + batch_size
            yield self.inputs(self.x_test[start:stop]), self.y_test[start:stop]

    @property
    def num_train(self) -> int:
        return len(self.x_train)


@dataclass
class Benchmark:
    name: str
    tasks: list[Task]
    input_dim: int
    outputs_per_task: int  # classes per task (1 for regression)
    regression: bool = False

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)


def reads_mnist(cfg: BenchmarkConfig) -> bool:
    """Whether the benchmark's tasks are made from MNIST (all but the generated 1D regression)."""
    return cfg.name != "regression1d"


def require_data(cfg: ExperimentConfig, data_root: str | os.PathLike | None = None) -> Path:
    """The resolved data root, after checking that it holds the files this config reads.

    Call it before anything is written (run folder, sweep folder), so a missing dataset
    is one line (a `DataError`) and not a half-made run; configs that read no files pass.
    """
    root = resolve_data_root(data_root)
    if reads_mnist(cfg.benchmark):
        require_mnist(root)
    return root


def build_benchmark(cfg: BenchmarkConfig, seed: int, device: torch.device, data_root: str | None = None) -> Benchmark:
    if cfg.name == "regression1d":
        return regression1d(cfg, seed, device)
    mnist = load_mnist(resolve_data_root(data_root))
    if cfg.name == "split_mnist":
        return split_mnist(mnist, cfg.num_tasks, device)
    if cfg.name == "class_mnist":
        return class_mnist(mnist, cfg.num_tasks, device)
    return permuted_mnist(mnist, cfg.num_tasks, seed, device)


def _tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True)).to(device=device, dtype=dtype)


def split_mnist(mnist, num_tasks: int, device: torch.device) -> Benchmark:
    """Task t holds digits 2t and 2t+1; labels 0/1 within the task."""
    return _digit_groups(mnist, num_tasks, 2, "split_mnist", device)


def class_mnist(mnist, num_tasks: int, device: torch.device) -> Benchmark:
    """Class-incremental MNIST: task t is digit t alone (for replay models)."""
    return _digit_groups(mnist, num_tasks, 1, "class_mnist", device)


def _digit_groups(mnist, num_tasks: int, per_task: int, name: str, device: torch.device) -> Benchmark:
    """Task t holds digits per_task*t .. per_task*t + per_task-1, labelled from 0 within the task."""
    x_train = _tensor(to_unit_float(mnist.train_x), device, torch.float32)
    x_test = _tensor(to_unit_float(mnist.test_x), device, torch.float32)
    y_train = _tensor(mnist.train_y, device, torch.long)
    y_test = _tensor(mnist.test_y, device, torch.long)
    tasks = []
    for t in range(num_tasks):
        first = per_task * t
        tr = (y_train >= first) & (y_train < first + per_task)
        te = (y_test >= first) & (y_test < first + per_task)
        tasks.append(Task(t, x_train[tr], y_train[tr] - first, x_test[te], y_test[te] - first, class_offset=first))
    return Benchmark(name, tasks, input_dim=784, outputs_per_task=per_task)


def permuted_mnist(mnist, num_tasks: int, seed: int, device: torch.device) -> Benchmark:
    """32x32 zero-padded digits; task 0 unpermuted, the rest fixed by the seed."""
    x_train = _tensor(to_unit_float(pad_to_32(mnist.train_x)), device, torch.float32)
    x_test = _tensor(to_unit_float(pad_to_32(mnist.test_x)), device, torch.float32)
    y_train = _tensor(mnist.train_y, device, torch.long)
    y_test = _tensor(mnist.test_y, device, torch.long)
    perms = permutations(num_tasks, 1024, seed)
    tasks = [
        Task(t, x_train, y_train, x_test, y_test, class_offset=10 * t, perm=None if t == 0 else perms[t].to(device))
        for t in range(num_tasks)
    ]
    return Benchmark("permuted_mnist", tasks, input_dim=1024, outputs_per_task=10)


def permutations(num_tasks: int, dim: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(10_007 * seed + 17)
    return [torch.arange(dim)] + [torch.randperm(dim, generator=gen) for _ in range(num_tasks - 1)]


POLYNOMIALS = (
    (lambda x: x + 3.0, (-4.0, -2.0)),
    (lambda x: 2.0 * x**2 - 1.0, (-1.0, 1.0)),
    (lambda x: (x - 3.0) ** 3, (2.0, 4.0)),
)


def regression1d(cfg: BenchmarkConfig, seed: int, device: torch.device) -> Benchmark:
    """The paper's three polynomials (Fig. 2): noisy training points, clean test curve."""
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(cfg.num_tasks):
        fn, (lo, hi) = POLYNOMIALS[t]
        x_tr = torch.rand(cfg.train_points, 1, generator=gen) * (hi - lo) + lo
        y_tr = fn(x_tr) + cfg.noise_std * torch.randn(x_tr.shape, generator=gen)
        x_te = torch.linspace(lo, hi, 1000).unsqueeze(1)
        tasks.append(Task(t, x_tr.to(device), y_tr.to(device), x_te.to(device), fn(x_te).to(device)))
    return Benchmark("regression1d", tasks, input_dim=1, outputs_per_task=1, regression=True)
