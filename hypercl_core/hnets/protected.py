"""One task of a hypernetwork protected by the output regularizer.

The classifiers (HNET, HyperMask) and the replay VAE's decoder learn their
tasks the same way: a fresh task embedding, Adam on the hypernetwork (and on
whatever else the model trains) and on that embedding, and from the second
task on the output regularizer pulling the outputs for every earlier embedding
back to their snapshot, with the optimizer's next step looked ahead. Only the
loss of one batch differs, so that is what the caller passes in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from hypercl_core.hnets.mlp_hnet import HyperNetwork, TaskEmbeddings
from hypercl_core.gram_regularizer import GramOutputRegularizer
from hypercl_core.regularizer import OutputRegularizer, adam_lookahead
from hypercl_core.schedule import set_lr
from hypercl_core.seeding import task_generator

PROGRESS_EVERY = 25
# (current task embedding, the task's random generator) -> one batch's loss
StepLoss = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Protection:
    beta: float
    lookahead: bool = True
    reg_subset: int | None = None  # regularize a random K of the earlier tasks per step


def output_regularizer(hnet: HyperNetwork, prev_embs: torch.Tensor, protection: Protection,
                       masks: torch.Tensor | None) -> OutputRegularizer | GramOutputRegularizer:
    """Every earlier task in the Gram form (its cost does not grow with them); a drawn subset explicitly."""
    if protection.reg_subset is None:
        return GramOutputRegularizer(hnet, prev_embs, protection.beta, masks)
    return OutputRegularizer(hnet, prev_embs, protection.beta, masks, protection.reg_subset)


def learn_protected_task(hnet: HyperNetwork, embeddings: TaskEmbeddings, t: int, step_loss: StepLoss, *,
                         trained: list[torch.nn.Parameter], lr: float, steps: int, protection: Protection,
                         seed: int, device: torch.device, output_masks: torch.Tensor | None = None,
                         progress: Callable[[int], None] | None = None,
                         lr_factor: Callable[[int], float] | None = None) -> float:
    """Learn task `t` in `steps` Adam steps; returns the seconds it took.

    `output_masks` (tasks x hnet outputs, binary) limits each earlier task's
    regularizer to the outputs it uses (its own head of a multi-head target).
    `lr_factor(step)` scales `lr` per step (None: constant).
    """
    if len(embeddings) != t:
        raise RuntimeError(f"task {t} requested after {len(embeddings)} tasks were learned")
    gen = task_generator(seed, t, device)
    emb = embeddings.add(task_generator(seed, t, torch.device("cpu"), stream=1), device)
    # Fused: one pass over the hnet's weights per step instead of one per Adam operation (3x on CPU). One
    # optimizer for both (each parameter's update is its own): one step call, not two, per training step.
    optimizer = torch.optim.Adam([{"params": trained}, {"params": [emb]}], lr=lr, fused=True)
    reg = None
    if t > 0 and protection.beta > 0:
        masks = output_masks[:t] if output_masks is not None else None  # bool: 4x less than floats to pass over
        reg = output_regularizer(hnet, embeddings.stacked(range(t), detach=True), protection, masks)
    start = time.perf_counter()
    for step in range(steps):
        if lr_factor is not None:
            set_lr([optimizer], lr * lr_factor(step))
        optimizer.zero_grad(set_to_none=True)
        step_loss(emb, gen).backward()
        if reg is not None:
            looked = adam_lookahead(optimizer) if protection.lookahead else None
            reg.loss(hnet, looked, gen).backward()
        optimizer.step()
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None:
        progress(steps % PROGRESS_EVERY)
    emb.requires_grad_(False)
    return time.perf_counter() - start
