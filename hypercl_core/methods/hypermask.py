"""HyperMask (Książek & Spurek, 2023): one shared target network, a mask per task.

The hypernetwork maps a task embedding to a semi-binary mask over the target's
weights: |tanh| of its output, with the lowest p percent of every tensor set to
zero and the rest kept as they are. Task t runs the target with W ⊙ m_t. What
protects earlier tasks is the output regularizer on the hypernetwork's raw
outputs (no lookahead) plus an L1 penalty on changing W where the current mask
uses it. Everything else (training loop, evaluation, HNET+ENT task inference,
state) is HNET's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import nn

from hypercl_core.accounting import ParamCounts, hnet_counts
from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.data.tasks import Benchmark
from hypercl_core.hnets.protected import Protection
from hypercl_core.methods.hnet import HnetLearner
from hypercl_core.registry import MethodSpec, register
from hypercl_core.metrics import classifier_primary, hnet_classifier_scores
from hypercl_core.nets.target import ParamSpec, TargetNetwork
from hypercl_core.nets.targets import classifier_target
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class HyperMaskSection(Section):
    name: Literal["hypermask"] = "hypermask"
    beta: float = Field(0.01, ge=0)  # the output regularizer on the raw hnet outputs (no lookahead)
    reg_subset: int | None = Field(None, ge=1)
    # Per-tensor percentile p of mask entries set to zero, and the weight of the masked L1
    # penalty on changing the shared weights.
    sparsity: float = Field(0.0, ge=0, lt=100)
    l1: float = Field(1e-3, ge=0)


def masked(spec: ParamSpec) -> bool:
    """Kernels and hidden biases get a mask; the output bias and batch-norm scale and shift stay as trained."""
    return spec.role == "weight" or (spec.role == "bias" and not spec.output)


def masked_size(target: TargetNetwork) -> int:
    return sum(spec.size for spec in target.param_specs if masked(spec))


class HyperMaskLearner(HnetLearner):
    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        super().__init__(cfg, bench, device)
        self.weights = nn.Parameter(self.target.init_weights().to(device))
        self.weights_before_task = self.weights.detach().clone()

    def generated_size(self) -> int:
        return masked_size(self.target)

    def protection(self) -> Protection:
        return Protection(self.cfg.method.beta, lookahead=False, reg_subset=self.cfg.method.reg_subset)

    def masks(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, masked weights) hnet outputs -> (B, all weights) semi-binary masks, 1 where unmasked."""
        specs = self.target.param_specs
        scores = iter(torch.split(raw.tanh().abs(), [s.size for s in specs if masked(s)], dim=-1))
        parts = []
        for spec in specs:
            if not masked(spec):
                parts.append(raw.new_ones(raw.shape[0], spec.size))
                continue
            part = next(scores)
            zeros = math.floor(self.cfg.method.sparsity / 100 * part.shape[-1])
            if zeros:
                threshold = part.kthvalue(zeros, dim=-1, keepdim=True).values
                part = part * (part > threshold)
            parts.append(part)
        return torch.cat(parts, dim=-1)

    def output_blocks(self) -> None:
        """Mask scores go through |tanh| and a per-tensor percentile, not used as weights:
        one init scale for the whole output layer (the setting HyperMask was measured with)."""
        return None

    def task_weights(self, embs: torch.Tensor) -> torch.Tensor:
        return self.weights * self.masks(self.hnet(embs))

    def step_loss(self, t: int, emb: torch.Tensor, x: torch.Tensor, y: torch.Tensor, head: int) -> torch.Tensor:
        mask = self.masks(self.hnet(emb.unsqueeze(0)))[0]
        loss = self._task_loss(self.target(x, self.weights * mask, head, task=t, train=True), y)
        if t > 0 and self.cfg.method.l1 > 0:
            loss = loss + self.cfg.method.l1 * ((self.weights - self.weights_before_task).abs() * mask).sum()
        return loss

    def trained_parameters(self) -> list[nn.Parameter]:
        return [*self.hnet.parameters(), self.weights]

    def begin_task(self, t: int) -> None:
        self.weights_before_task = self.weights.detach().clone()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.weights.copy_(state["weights"].to(self.device))


def hypermask_params(cfg: ExperimentConfig) -> ParamCounts:
    target = classifier_target(cfg)
    return hnet_counts(cfg.hnet, target.num_weights, cfg.benchmark.num_tasks, generated=masked_size(target),
                       shared=target.num_weights)


def check_hypermask(cfg: ExperimentConfig) -> None:
    if cfg.hnet.chunk_dim is not None:
        raise ValueError("hypermask generates whole masks: set hnet.chunk_dim=null")
    if BENCHMARKS[cfg.benchmark.name].regression:
        raise ValueError(f"hypermask is for classification benchmarks; use method.name=hnet for {cfg.benchmark.name}")


register(MethodSpec(
    "hypermask", HyperMaskSection, frozenset({"target", "hnet"}),
    subsystems=lambda cfg: {"target_hypermask": HyperMaskLearner},
    scores=hnet_classifier_scores, primary=classifier_primary, count_params=hypermask_params, check=check_hypermask,
    title="HyperMask",
))
