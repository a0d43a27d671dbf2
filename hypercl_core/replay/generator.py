"""What the hnet-protected replay models share: a generator MLP whose weights a chunked
hypernetwork produces per task, conditioned on a fixed random vector of the task.

The VAE's decoder and the GAN's generator are both this; they differ in how they
learn a task and in their output squashing (sigmoid pixels for the VAE's
Bernoulli likelihood, tanh for the GAN's [-1, 1] data). Everything a caller
uses after training (sampling, the frozen snapshot a classifier replays from,
fixed-noise samples kept per task for `hypercl samples`, state) lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hypercl_core.accounting import ParamCounts, hnet_counts, mlp_weights
from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.data.tasks import Benchmark
from hypercl_core.hnets.mlp_hnet import HyperNetwork, TaskEmbeddings
from hypercl_core.hnets.protected import Protection, StepLoss, learn_protected_task
from hypercl_core.subsystem import Progress
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.replay.snapshot import ReplaySnapshot, decode_logits, to_pixels
from hypercl_core.schedule import step_lr, task_steps
from hypercl_core.seeding import task_generator

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

SAMPLES_KEPT = 8  # per task, drawn with the same noise after learning it and at every evaluation


def decoder_layer_dims(cfg: ExperimentConfig) -> list[int]:
    """The generator MLP: latent code and task condition in, a flat image out."""
    r = cfg.replay
    return [2 * r.latent_dim, *r.decoder_hidden, BENCHMARKS[cfg.benchmark.name].flat_size]


def replay_params(cfg: ExperimentConfig) -> ParamCounts:
    """The replay model's hypernetwork against the decoder (generator) it generates."""
    decoder = mlp_weights(decoder_layer_dims(cfg))
    return hnet_counts(cfg.replay.hnet, decoder, cfg.benchmark.num_tasks)


def check_replay_benchmark(cfg: ExperimentConfig) -> None:
    """Replay models generate MNIST digits as flat images."""
    bench = BENCHMARKS[cfg.benchmark.name]
    if bench.regression:
        raise ValueError("the replay VAE models MNIST images; pick an MNIST benchmark")
    if bench.images or cfg.benchmark.as_rgb32:
        raise ValueError(f"the replay models generate flat MNIST digits; {cfg.benchmark.name} with these inputs has "
                         "none: pick split_mnist, permuted_mnist or class_mnist with benchmark.as_rgb32=false")


class HnetGenerator:
    output = "sigmoid"  # or "tanh": how raw outputs become images

    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        self.cfg = cfg
        self.bench = bench
        self.device = device
        r = cfg.replay
        torch.manual_seed(cfg.seed)
        in_dim, *hidden, out_dim = decoder_layer_dims(cfg)
        self.decoder = TargetMLP(in_dim, hidden, out_dim, 1, "relu")
        h = r.hnet
        self.hnet = HyperNetwork(self.decoder.num_weights, h.temb_dim, h.hidden, h.activation, h.chunk_dim,
                                 h.cemb_dim).to(device)
        self.embeddings = TaskEmbeddings(h.temb_dim)
        fixed = task_generator(cfg.seed, -1, torch.device("cpu"), stream=2)
        self.conditions = torch.randn(bench.num_tasks, r.latent_dim, generator=fixed).to(device)
        self.noise = torch.randn(SAMPLES_KEPT, r.latent_dim, generator=fixed).to(device)
        if r.init_weight_std is not None:
            # probed with embeddings drawn as task embeddings are (N(0, I))
            self.hnet.rescale_output_init(r.init_weight_std, torch.randn(16, h.temb_dim, generator=fixed).to(device))
        self.samples_after_learning: dict[int, torch.Tensor] = {}

    # -- generation -------------------------------------------------------
    def decode(self, z: torch.Tensor, task_ids: list[int]) -> torch.Tensor:
        """Raw outputs: z (T, N, latent) through each listed task's generated network."""
        return decode_logits(self.decoder, self.hnet(self.embeddings.stacked(task_ids)), z, self.conditions[task_ids])

    @torch.no_grad()
    def sample(self, task_ids: list[int], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(len(task_ids), n, pixels) images in [0, 1], every task in one batched call."""
        z = torch.randn(len(task_ids), n, self.cfg.replay.latent_dim, generator=generator, device=self.device)
        return to_pixels(self.decode(z, task_ids), self.output)

    @torch.no_grad()
    def replay_snapshot(self, t: int) -> ReplaySnapshot:
        """The generator of tasks 0..t-1 as it is now (before learning task t), on the CPU."""
        weights = self.hnet(self.embeddings.stacked(range(t)))
        return ReplaySnapshot(decoder_layer_dims(self.cfg), weights.cpu(), self.conditions[:t].cpu(), self.output)

    @torch.no_grad()
    def kept_samples(self, task_ids: list[int]) -> torch.Tensor:
        """The fixed-noise samples of these tasks as the model generates them now."""
        z = self.noise.unsqueeze(0).expand(len(task_ids), -1, -1)
        return to_pixels(self.decode(z, task_ids), self.output)

    def sample_drift(self, upto: int) -> list[float]:
        """Mean squared pixel change of each task's kept samples since it was learned (0 = kept)."""
        now = self.kept_samples(list(range(upto + 1))).cpu()
        return [float((now[j] - self.samples_after_learning[j]).pow(2).mean()) for j in range(upto + 1)]

    # -- training ---------------------------------------------------------
    def learn_generator_task(self, t: int, step_loss: StepLoss, trained: list[nn.Parameter],
                             progress: Progress | None) -> dict[str, float]:
        """One task under the output regularizer; keeps the task's fixed-noise samples."""
        cfg = self.cfg
        steps = task_steps(cfg.train, self.bench.tasks[t].num_train)
        seconds = learn_protected_task(
            self.hnet, self.embeddings, t, step_loss, trained=[*self.hnet.parameters(), *trained], lr=cfg.train.lr,
            steps=steps, protection=Protection(cfg.replay.beta, cfg.replay.lookahead),
            seed=cfg.seed, device=self.device, progress=progress, lr_factor=step_lr(cfg.train, steps))
        self.samples_after_learning[t] = self.kept_samples([t])[0].cpu()
        trained_weights = self.hnet.num_params() + self.embeddings.num_params()
        return {"train_s": seconds, "steps": steps, "steps_per_s": steps / max(seconds, 1e-9),
                "trained_compression_ratio": trained_weights / self.decoder.num_weights}

    # -- state ------------------------------------------------------------
    def extra_modules(self) -> dict[str, nn.Module]:
        """Ordinary networks the model trains besides the hnet (encoder, discriminator)."""
        return {}

    def state_dict(self) -> dict:
        return {
            "hnet": {k: v.detach().cpu() for k, v in self.hnet.state_dict().items()},
            **{name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in self.extra_modules().items()},
            "embeddings": [e.detach().cpu() for e in self.embeddings.embs],
            "samples_after_learning": dict(self.samples_after_learning),
        }

    def load_state_dict(self, state: dict) -> None:
        self.hnet.load_state_dict(state["hnet"])
        for name, module in self.extra_modules().items():
            module.load_state_dict(state[name])
        self.embeddings = TaskEmbeddings.frozen(self.cfg.replay.hnet.temb_dim, state["embeddings"], self.device)
        self.samples_after_learning = dict(state["samples_after_learning"])


def mlp(dims: list[int], dropout: float = 0.0) -> list[nn.Module]:
    """Linear + ReLU (+ dropout) layers over `dims`, the last layer left to the caller."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return layers
