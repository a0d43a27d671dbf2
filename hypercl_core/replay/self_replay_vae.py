"""DGR's generator (Shin et al. 2017, as van de Ven & Tolias 2019 ran it): an ordinary VAE,
no hypernetwork, that keeps the earlier tasks by replaying itself.

From task 1 on, each step mixes a batch of the task's images with a batch drawn from
the VAE as frozen after the previous task, loss = w·ELBO(current) + (1−w)·ELBO(replayed),
w = 1/(t+1) unless set. The decoder is a flat-weight MLP, so the frozen copy a
classifier replays (`GeneratorSnapshot`) is one tensor.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from hypercl_core.data.tasks import Benchmark
from hypercl_core.methods.replay_classifier import current_share
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.replay.generator import mlp
from hypercl_core.replay.snapshot import GeneratorSnapshot
from hypercl_core.replay.vae import per_pixel_negative_elbo
from hypercl_core.schedule import scheduled_steps, task_steps
from hypercl_core.seeding import derived_seed, task_generator
from hypercl_core.subsystem import Progress

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

INIT_STREAM = 7  # its initial draw: neither the classifier's nor another seed's


def vae_layer_dims(method, pixels: int) -> tuple[list[int], list[int]]:
    """(encoder dims to the last hidden layer, decoder dims) of the `method` section's VAE."""
    return [pixels, *method.encoder_hidden], [method.latent_dim, *method.decoder_hidden, pixels]


class SelfReplayVAE:
    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        self.cfg, self.bench, self.device = cfg, bench, device
        m = cfg.method
        enc, dec = vae_layer_dims(m, bench.input_dim)
        torch.manual_seed(derived_seed(cfg.seed, INIT_STREAM))
        self.encoder = nn.Sequential(*mlp(enc), nn.Linear(enc[-1], 2 * m.latent_dim)).to(device)
        self.decoder_dims = dec
        self.decoder = TargetMLP(dec[0], dec[1:-1], dec[-1], 1, "relu")
        self.weights = nn.Parameter(self.decoder.init_weights().to(device))
        self.tasks_learned = 0

    def negative_elbo(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * noise
        return per_pixel_negative_elbo(self.decoder(z, self.weights), x, mu, logvar)

    def replay_snapshot(self, t: int) -> GeneratorSnapshot:
        if self.tasks_learned != t:
            raise ValueError(f"the snapshot for task {t} needs tasks 0..{t - 1} learned; "
                             f"{self.tasks_learned} are")
        return GeneratorSnapshot(self.decoder_dims, self.weights.detach().clone(), t)

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]
        previous = self.replay_snapshot(t) if t > 0 else None
        gen = task_generator(cfg.seed, t, self.device, stream=5)
        optimizer = torch.optim.Adam([*self.encoder.parameters(), self.weights], lr=cfg.train.lr)
        w = current_share(cfg.method.current_weight, t)
        latent, batch = cfg.method.latent_dim, cfg.train.batch_size
        steps = task_steps(cfg.train, task.num_train)
        start = time.perf_counter()
        for _ in scheduled_steps(cfg.train, steps, [optimizer]):
            idx = torch.randint(task.num_train, (batch,), generator=gen, device=self.device)
            noise = torch.randn(2, batch, latent, generator=gen, device=self.device)
            loss = self.negative_elbo(task.inputs(task.x_train[idx]), noise[0])
            if previous is not None:
                replayed = previous.draw(batch, gen)  # the generator of tasks 0..t-1
                loss = w * loss + (1 - w) * self.negative_elbo(replayed, noise[1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.tasks_learned = t + 1
        seconds = time.perf_counter() - start
        return {"train_s": seconds, "steps": steps, "steps_per_s": steps / max(seconds, 1e-9)}

    def state_dict(self) -> dict:
        return {"encoder": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
                "weights": self.weights.detach().cpu(), "tasks_learned": self.tasks_learned}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.weights.copy_(state["weights"].to(self.device))
        self.tasks_learned = state["tasks_learned"]
