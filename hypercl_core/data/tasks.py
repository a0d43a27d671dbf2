"""Benchmarks as sequences of tasks whose tensors live on the training device.

Tasks that share inputs (PermutedMNIST) share one tensor and apply their
permutation per batch, so ten tasks cost one copy of the images. Images kept
as uint8 (CIFAR, MNIST as 3x32x32) become floats per batch (`decode`), after
the batch's random augmentation where the benchmark has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np
import torch

from hypercl_core.data.mnist import pad_to_32, to_unit_float

if TYPE_CHECKING:
    from hypercl_core.config import BenchmarkConfig

Decode = Callable[[torch.Tensor], torch.Tensor]  # stored inputs -> what the network reads
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # a stored batch -> a randomly altered one


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
    decode: Optional[Decode] = None
    augment: Optional[Augment] = None  # training batches only

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Stored inputs as the network reads them."""
        if self.decode is not None:
            x = self.decode(x)
        return x if self.perm is None else x[:, self.perm]

    def train_batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training examples `idx`, augmented (if the benchmark augments) with draws from the
        task's generator, so a seed gives the same batches."""
        x = self.x_train[idx]
        if self.augment is not None:
            x = self.augment(x, generator)
        return self.inputs(x), self.y_train[idx]

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
    input_shape: tuple[int, ...]  # one example as the network reads it: (784,), (3, 32, 32), ...
    outputs_per_task: int  # classes per task (1 for regression)
    regression: bool = False

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def input_dim(self) -> int:
        """Values per example, for networks that read a flat vector."""
        return math.prod(self.input_shape)


def _tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True)).to(device=device, dtype=dtype)


def rgb32(images: torch.Tensor) -> torch.Tensor:
    """Stored (N, 1, 32, 32) uint8 digits -> (N, 3, 32, 32) floats in [0, 1], the input a CIFAR
    conv net takes (one channel replicated three times)."""
    return (images.float() / 255.0).expand(-1, 3, -1, -1)


def _digit_images(images: np.ndarray, device: torch.device, as_rgb32: bool) -> torch.Tensor:
    """Flat [0, 1] floats, or (as_rgb32) zero-padded 32x32 uint8 decoded per batch by `rgb32`."""
    if as_rgb32:
        return _tensor(pad_to_32(images)[:, None], device, torch.uint8)
    return _tensor(to_unit_float(images), device, torch.float32)


def split_mnist(mnist, num_tasks: int, device: torch.device, as_rgb32: bool = False) -> Benchmark:
    """Task t holds digits 2t and 2t+1; labels 0/1 within the task."""
    return _digit_groups(mnist, num_tasks, 2, "split_mnist", device, as_rgb32)


def class_mnist(mnist, num_tasks: int, device: torch.device, as_rgb32: bool = False) -> Benchmark:
    """Class-incremental MNIST: task t is digit t alone (for replay models)."""
    return _digit_groups(mnist, num_tasks, 1, "class_mnist", device, as_rgb32)


def _digit_groups(mnist, num_tasks: int, per_task: int, name: str, device: torch.device,
                  as_rgb32: bool) -> Benchmark:
    """Task t holds digits per_task*t .. per_task*t + per_task-1, labelled from 0 within the task."""
    x_train = _digit_images(mnist.train_x, device, as_rgb32)
    x_test = _digit_images(mnist.test_x, device, as_rgb32)
    y_train = _tensor(mnist.train_y, device, torch.long)
    y_test = _tensor(mnist.test_y, device, torch.long)
    tasks = []
    for t in range(num_tasks):
        first = per_task * t
        tr = (y_train >= first) & (y_train < first + per_task)
        te = (y_test >= first) & (y_test < first + per_task)
        tasks.append(Task(t, x_train[tr], y_train[tr] - first, x_test[te], y_test[te] - first, class_offset=first,
                          decode=rgb32 if as_rgb32 else None))
    return Benchmark(name, tasks, input_shape=(3, 32, 32) if as_rgb32 else (784,), outputs_per_task=per_task)


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
    return Benchmark("permuted_mnist", tasks, input_shape=(1024,), outputs_per_task=10)


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
    return Benchmark("regression1d", tasks, input_shape=(1,), outputs_per_task=1, regression=True)
