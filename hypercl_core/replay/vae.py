"""The hnet-protected VAE replay model (paper section 4 / METHODS.md section 4).

The encoder is an ordinary MLP (it only serves training); the decoder is a
functional MLP whose weights a chunked hypernetwork generates from the task
embedding, protected by the output regularizer with lookahead, so the decoder
of every earlier task can still be generated after later tasks. The decoder
reads the latent code next to a fixed random condition vector of its task.

As a subsystem it learns tasks, scores itself (negative ELBO on each task's
test images, and how far fixed-noise samples drifted since the task was
learned) and keeps those samples for `hypercl samples`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hypercl_core.accounting import decoder_layer_dims
from hypercl_core.config import ExperimentConfig
from hypercl_core.data.tasks import Benchmark
from hypercl_core.hnets.mlp_hnet import HyperNetwork, TaskEmbeddings
from hypercl_core.hnets.protected import Protection, learn_protected_task
from hypercl_core.methods import Progress
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.replay.snapshot import ReplaySnapshot, decode_logits
from hypercl_core.seeding import task_generator

SAMPLES_KEPT = 8  # per task, drawn with the same noise after learning it and at every evaluation


class HnetVAE:
    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        self.cfg = cfg
        self.bench = bench
        self.device = device
        r = cfg.replay
        torch.manual_seed(cfg.seed)
        dims = [bench.input_dim, *r.encoder_hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*layers, nn.Linear(dims[-1], 2 * r.latent_dim)).to(device)
        in_dim, *hidden, out_dim = decoder_layer_dims(cfg)
        self.decoder = TargetMLP(in_dim, hidden, out_dim, 1, "relu")
        h = r.hnet
        self.hnet = HyperNetwork(self.decoder.num_weights, h.temb_dim, h.hidden, h.activation, h.chunk_dim,
                                 h.cemb_dim).to(device)
        self.embeddings = TaskEmbeddings(h.temb_dim)
        fixed = task_generator(cfg.seed, -1, torch.device("cpu"), stream=2)
        self.conditions = torch.randn(bench.num_tasks, r.latent_dim, generator=fixed).to(device)
        self.noise = torch.randn(SAMPLES_KEPT, r.latent_dim, generator=fixed).to(device)
        self.samples_after_learning: dict[int, torch.Tensor] = {}

    # -- generation -------------------------------------------------------
    def decode(self, z: torch.Tensor, task_ids: list[int]) -> torch.Tensor:
        """Logits of images: z (T, N, latent) decoded with each listed task's generated decoder."""
        return decode_logits(self.decoder, self.hnet(self.embeddings.stacked(task_ids)), z, self.conditions[task_ids])

    @torch.no_grad()
    def sample(self, task_ids: list[int], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(len(task_ids), n, pixels) images in [0, 1], one batch per task in one decoder call."""
        z = torch.randn(len(task_ids), n, self.cfg.replay.latent_dim, generator=generator, device=self.device)
        return torch.sigmoid(self.decode(z, task_ids))

    @torch.no_grad()
    def replay_snapshot(self, t: int) -> ReplaySnapshot:
        """The generator of tasks 0..t-1 as it is now (before learning task t), on the CPU."""
        weights = self.hnet(self.embeddings.stacked(range(t)))
        return ReplaySnapshot(decoder_layer_dims(self.cfg), weights.cpu(), self.conditions[:t].cpu())

    @torch.no_grad()
    def kept_samples(self, task_ids: list[int]) -> torch.Tensor:
        """The fixed-noise samples of these tasks as the model generates them now."""
        z = self.noise.unsqueeze(0).expand(len(task_ids), -1, -1)
        return torch.sigmoid(self.decode(z, task_ids))

    # -- training ---------------------------------------------------------
    def negative_elbo(self, x: torch.Tensor, t: int, noise: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """BCE reconstruction + analytic KL per pixel, averaged over the batch.

        Per pixel, as the authors' code does: that is the scale the output regularizer's
        beta was chosen against (summed over 784 pixels the loss would drown it).
        """
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * noise
        weights = self.hnet((emb if emb is not None else self.embeddings.embs[t]).unsqueeze(0))
        logits = self.decoder(torch.cat([z, self.conditions[t].expand(len(x), -1)], dim=-1), weights[0])
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (bce + kl) / x.numel()

    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]
        latent = cfg.replay.latent_dim

        def step_loss(emb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(task.num_train, (cfg.train.batch_size,), generator=gen, device=self.device)
            x = task.inputs(task.x_train[idx])
            noise = torch.randn(len(x), latent, generator=gen, device=self.device)
            return self.negative_elbo(x, t, noise, emb)

        seconds = learn_protected_task(
            self.hnet, self.embeddings, t, step_loss, trained=[*self.hnet.parameters(), *self.encoder.parameters()],
            lr=cfg.train.lr, steps=cfg.train.iters_per_task,
            protection=Protection(cfg.replay.beta, cfg.replay.lookahead), seed=cfg.seed, device=self.device,
            progress=progress)
        self.samples_after_learning[t] = self.kept_samples([t])[0].cpu()
        trained = self.hnet.num_params() + self.embeddings.num_params()
        return {"train_s": seconds, "steps_per_s": cfg.train.iters_per_task / max(seconds, 1e-9),
                "trained_compression_ratio": trained / self.decoder.num_weights}

    # -- evaluation -------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, upto: int) -> dict[str, list[float]]:
        """Negative ELBO (nats per image) on each task's test images, and the mean squared
        pixel change of its kept samples since the task was learned (0 = nothing forgotten)."""
        nll, drift = [], []
        now = self.kept_samples(list(range(upto + 1))).cpu()
        gen = task_generator(self.cfg.seed, upto, self.device, stream=3)
        for j in range(upto + 1):
            task = self.bench.tasks[j]
            total = 0.0
            for x, _ in task.test_batches(self.cfg.train.eval_batch_size):
                noise = torch.randn(len(x), self.cfg.replay.latent_dim, generator=gen, device=self.device)
                total += self.negative_elbo(x, j, noise).item() * x.numel()
            nll.append(total / len(task.x_test))  # nats per image
            drift.append(float((now[j] - self.samples_after_learning[j]).pow(2).mean()))
        return {"nll": nll, "sample_drift": drift}

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "hnet": {k: v.detach().cpu() for k, v in self.hnet.state_dict().items()},
            "encoder": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            "embeddings": [e.detach().cpu() for e in self.embeddings.embs],
            "samples_after_learning": dict(self.samples_after_learning),
        }

    def load_state_dict(self, state: dict) -> None:
        self.hnet.load_state_dict(state["hnet"])
        self.encoder.load_state_dict(state["encoder"])
        self.embeddings = TaskEmbeddings.frozen(self.cfg.replay.hnet.temb_dim, state["embeddings"], self.device)
        self.samples_after_learning = dict(state["samples_after_learning"])
