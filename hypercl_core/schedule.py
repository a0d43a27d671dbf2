"""How long a task trains and at what learning rate: iterations or epochs, a constant rate or
the step schedule of the Keras CIFAR-10 ResNet example that the paper's CIFAR runs follow."""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    import torch

    from hypercl_core.config import TrainConfig

# Keras CIFAR-10 ResNet example over its 200 epochs: x0.1 after epoch 80, x0.01 after 120,
# x0.001 after 160, x0.0005 after 180; here at the same fractions of a task's steps.
KERAS_RESNET_STEPS = ((0.9, 0.5e-3), (0.8, 1e-3), (0.6, 1e-2), (0.4, 1e-1))


def task_steps(train: TrainConfig, num_train: int) -> int:
    """Optimizer steps for a task of `num_train` examples: the iterations asked, or as many
    batches as the epochs asked make (batches are drawn at random, so an epoch is a count)."""
    if train.epochs_per_task is None:
        return train.iters_per_task
    return max(1, math.ceil(train.epochs_per_task * num_train / train.batch_size))


def lr_factor(train: TrainConfig, step: int, steps: int) -> float:
    """The learning rate at `step` of `steps`, as a multiple of `train.lr`."""
    if train.lr_schedule == "constant":
        return 1.0
    done = step / steps
    return next((factor for start, factor in KERAS_RESNET_STEPS if done >= start), 1.0)


def step_lr(train: TrainConfig, steps: int) -> Callable[[int], float] | None:
    """`lr_factor` over a task of `steps` steps for the training loops; None for a constant rate,
    so those loops leave the optimizer's rate alone."""
    if train.lr_schedule == "constant":
        return None
    return partial(lr_factor, train, steps=steps)


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr


def scheduled_steps(train: TrainConfig, steps: int, optimizers: list[torch.optim.Optimizer]) -> Iterator[int]:
    """The step indices of a task of `steps` steps, each after setting its learning rate on the
    optimizers (a constant rate is left alone): the loops that own a plain optimizer iterate these."""
    factor = step_lr(train, steps)
    for step in range(steps):
        if factor is not None:
            set_lr(optimizers, train.lr * factor(step))
        yield step


def budget(train: TrainConfig) -> str:
    """What a task trains for, in the unit the config gives it."""
    if train.epochs_per_task is None:
        return f"{train.iters_per_task} iterations per task"
    return f"{train.epochs_per_task:g} epochs per task"
