"""The hnet-protected VAE replay model (paper section 4 / METHODS.md section 4).

The encoder is an ordinary MLP (it only serves training); the decoder is the
hnet-generated, condition-fed network of `HnetGenerator`, protected by the
output regularizer with lookahead, so the decoder of every earlier task can
still be generated after later tasks. As a subsystem it scores itself by the
negative ELBO on each task's test images and by how far fixed-noise samples
drifted since the task was learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hypercl_core.data.tasks import Benchmark
from hypercl_core.subsystem import Progress
from hypercl_core.replay.generator import HnetGenerator, mlp
from hypercl_core.seeding import task_generator

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


def per_pixel_negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                            logvar: torch.Tensor) -> torch.Tensor:
    """Bernoulli reconstruction of x from decoder logits plus the posterior's analytic KL to
    N(0, I), per pixel over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kl) / x.numel()


class HnetVAE(HnetGenerator):
    output = "sigmoid"

    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        super().__init__(cfg, bench, device)
        dims = [bench.input_dim, *cfg.replay.encoder_hidden]
        self.encoder = nn.Sequential(*mlp(dims), nn.Linear(dims[-1], 2 * cfg.replay.latent_dim)).to(device)

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    def negative_elbo(self, x: torch.Tensor, t: int, noise: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """BCE reconstruction + analytic KL per pixel, averaged over the batch.

        Per pixel, as the authors' code does: that is the scale the output regularizer's
        beta was chosen against (summed over 784 pixels the loss would drown it).
        """
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * noise
        weights = self.hnet((emb if emb is not None else self.embeddings.embs[t]).unsqueeze(0))
        logits = self.decoder(torch.cat([z, self.conditions[t].expand(len(x), -1)], dim=-1), weights[0])
        return per_pixel_negative_elbo(logits, x, mu, logvar)

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]

        def step_loss(emb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(task.num_train, (cfg.train.batch_size,), generator=gen, device=self.device)
            x = task.inputs(task.x_train[idx])
            noise = torch.randn(len(x), cfg.replay.latent_dim, generator=gen, device=self.device)
            return self.negative_elbo(x, t, noise, emb)

        return self.learn_generator_task(t, step_loss, list(self.encoder.parameters()), progress)

    @torch.no_grad()
    def evaluate(self, upto: int) -> dict[str, list[float]]:
        """Negative ELBO (nats per image) on each task's test images, and the sample drift."""
        nll = []
        gen = task_generator(self.cfg.seed, upto, self.device, stream=3)
        for j in range(upto + 1):
            task = self.bench.tasks[j]
            total = 0.0
            for x, _ in task.test_batches(self.cfg.train.eval_batch_size):
                noise = torch.randn(len(x), self.cfg.replay.latent_dim, generator=gen, device=self.device)
                total += self.negative_elbo(x, j, noise).item() * x.numel()
            nll.append(total / len(task.x_test))
        return {"nll": nll, "sample_drift": self.sample_drift(upto)}
