"""The hnet-protected GAN (paper appendix, Fig. A8): a conditional generator whose
weights a hypernetwork generates per task, and an ordinary discriminator.

Least-squares loss in its Pearson χ² form: the discriminator pushes real images
to 1 and generated ones to -1, the generator pushes its images to 0. Data are
scaled to [-1, 1] to match the generator's tanh. The discriminator sees the
task's condition vector next to the image and is updated once per generator
step, inside the same protected task loop as the VAE (so the generator's
hypernetwork gets the output regularizer with lookahead).

What keeps it from collapsing to one image per class (found in probes on one
digit; the full run and the collapsed one are in benchmarks/RESULTS.md): the
discriminator initialized as the authors' networks are (Xavier, zero biases),
generated weights starting at an ordinary scale (`replay.init_weight_std`),
and a generator rate below the discriminator's (`replay.discriminator_lr`),
since the hnet makes every generator step large.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hypercl_core.data.tasks import Benchmark
from hypercl_core.subsystem import Progress
from hypercl_core.replay.generator import HnetGenerator, mlp

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class HnetGAN(HnetGenerator):
    output = "tanh"

    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        super().__init__(cfg, bench, device)
        r = cfg.replay
        dims = [bench.input_dim + r.latent_dim, *r.discriminator_hidden]
        self.discriminator = nn.Sequential(*mlp(dims, r.dropout), nn.Linear(dims[-1], 1)).to(device)
        for layer in self.discriminator:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def critic(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([images, cond], dim=-1)).squeeze(-1)

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.replay.discriminator_lr or cfg.train.lr)
        self.discriminator.train()

        def step_loss(emb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(task.num_train, (cfg.train.batch_size,), generator=gen, device=self.device)
            real = task.inputs(task.x_train[idx]) * 2 - 1
            z = torch.randn(len(real), cfg.replay.latent_dim, generator=gen, device=self.device)
            cond = self.conditions[t].expand(len(real), -1)
            fake = torch.tanh(self.decoder(torch.cat([z, cond], dim=-1), self.hnet(emb.unsqueeze(0)).squeeze(0)))
            d_opt.zero_grad(set_to_none=True)
            d_loss = 0.5 * ((self.critic(real, cond) - 1).pow(2).mean() + (self.critic(fake.detach(), cond) + 1).pow(2).mean())
            d_loss.backward()
            d_opt.step()
            return 0.5 * self.critic(fake, cond).pow(2).mean()

        stats = self.learn_generator_task(t, step_loss, [], progress)
        self.discriminator.eval()
        return stats

    @torch.no_grad()
    def evaluate(self, upto: int) -> dict[str, list[float]]:
        return {"sample_drift": self.sample_drift(upto)}

    # The discriminator's dropout is the one draw from the global random stream (nn.Dropout
    # takes no generator): its state travels with the checkpoint, so a resumed run (in this
    # process or on an actor) repeats the uninterrupted one.
    def state_dict(self) -> dict:
        return {**super().state_dict(), "dropout_rng": (self.device.type, self._rng_state())}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        device_type, rng = state.get("dropout_rng", (None, None))
        if device_type == self.device.type == "cuda":
            torch.cuda.set_rng_state(rng, self.device)
        elif device_type == self.device.type == "cpu":
            torch.set_rng_state(rng)

    def _rng_state(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()
