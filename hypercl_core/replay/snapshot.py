"""A replay generator frozen after some task: what a classifier needs to replay earlier tasks.

It holds the decoder weights the hypernetwork generated for each earlier task
(not the hypernetwork, nor the VAE), so it is small, picklable and can be
shipped to a classifier on another GPU while the VAE goes on learning the next
task.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from hypercl_core.nets.mlp import TargetMLP


def decode_logits(decoder: TargetMLP, weights: torch.Tensor, z: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """Image logits (T, N, pixels): z (T, N, latent) beside each task's condition (T, latent),
    through that task's decoder weights (T, decoder weights), all tasks in one batched call."""
    cond = conditions.unsqueeze(1).expand(-1, z.shape[1], -1)
    return decoder(torch.cat([z, cond], dim=-1), weights)


def to_pixels(raw: torch.Tensor, output: str) -> torch.Tensor:
    """Generator outputs as images in [0, 1]: sigmoid (VAE) or tanh rescaled (GAN)."""
    return torch.sigmoid(raw) if output == "sigmoid" else (torch.tanh(raw) + 1) / 2


@dataclass
class ReplaySnapshot:
    decoder_dims: list[int]  # [latent + condition, *hidden, pixels]
    weights: torch.Tensor  # (tasks, decoder weights), one generated decoder per earlier task
    conditions: torch.Tensor  # (tasks, latent)
    output: str = "sigmoid"

    @property
    def num_tasks(self) -> int:
        return len(self.weights)

    def to(self, device: torch.device) -> "ReplaySnapshot":
        return ReplaySnapshot(self.decoder_dims, self.weights.to(device), self.conditions.to(device), self.output)

    @functools.cached_property
    def decoder(self) -> TargetMLP:
        """Built once: a classifier samples from the snapshot at every training step."""
        in_dim, *hidden, out_dim = self.decoder_dims
        return TargetMLP(in_dim, hidden, out_dim, 1, "relu")

    @torch.no_grad()
    def sample(self, per_task: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(tasks, per_task, pixels) images in [0, 1]: every earlier task in one batched decoder call."""
        latent = self.conditions.shape[1]
        z = torch.randn(self.num_tasks, per_task, latent, generator=generator, device=self.weights.device)
        return to_pixels(decode_logits(self.decoder, self.weights, z, self.conditions), self.output)


@dataclass
class GeneratorSnapshot:
    """One unconditional decoder frozen after `num_tasks` tasks (DGR's own VAE): it generates
    every earlier task's images at once, so a replayed batch is drawn from it `num_tasks` times."""

    decoder_dims: list[int]  # [latent, *hidden, pixels]
    weights: torch.Tensor  # (decoder weights,)
    num_tasks: int

    def to(self, device: torch.device) -> "GeneratorSnapshot":
        return GeneratorSnapshot(self.decoder_dims, self.weights.to(device), self.num_tasks)

    @functools.cached_property
    def decoder(self) -> TargetMLP:
        in_dim, *hidden, out_dim = self.decoder_dims
        return TargetMLP(in_dim, hidden, out_dim, 1, "relu")

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, pixels) images in [0, 1]."""
        z = torch.randn(n, self.decoder_dims[0], generator=generator, device=self.weights.device)
        return torch.sigmoid(self.decoder(z, self.weights))

    def sample(self, per_task: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(num_tasks, per_task, pixels), the shape `ReplaySnapshot` gives: independent draws."""
        return self.draw(self.num_tasks * per_task, generator).reshape(self.num_tasks, per_task, -1)
