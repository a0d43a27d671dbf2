"""The HNET+R classifier: an ordinary MLP that keeps earlier tasks by replay.

No hypernetwork here: the classifier's own weights learn the current task's
real data and, from the second task on, replayed images of every earlier task
with soft targets from its copy taken before the task (distillation at
temperature 2, scaled by T²). Each earlier task contributes ceil(128/t) images
to a replay batch; loss = w·CE(real) + (1-w)·distill(replay), w = 0.5 as the
authors (`replay.current_weight`; None: 1/(t+1)). The images come
from a `ReplaySnapshot`: the replay model frozen after the previous task, so
the VAE can learn the current task at the same time, elsewhere.

Heads by scenario: CL1 one head per task (task given), CL2 one shared head,
CL3 a growing head (the outputs of every task learned so far, softmax over all).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hypercl_core.data.tasks import Benchmark
from hypercl_core.hnets.protected import PROGRESS_EVERY
from hypercl_core.subsystem import Progress
from hypercl_core.nets.targets import build_target, num_heads
from hypercl_core.replay.snapshot import ReplaySnapshot
from hypercl_core.schedule import scheduled_steps, task_steps
from hypercl_core.seeding import task_generator

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig

TEMPERATURE = 2.0
REPLAY_BATCH = 128


def replay_per_task(t: int) -> int:
    """Images replayed from each earlier task in one step: ceil(128 / t), about one batch in all."""
    return math.ceil(REPLAY_BATCH / t) if t else 0


def current_share(weight: float | None, t: int) -> float:
    """The current task's share of the loss at task t (`replay.current_weight`; None: 1/(t+1))."""
    return weight if weight is not None else 1 / (t + 1)


class ReplayClassifier:
    replays = True  # from the second task on, learn_task needs the replay model's snapshot

    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        self.cfg = cfg
        self.bench = bench
        self.device = device
        self.scenario, self.k, heads, seed = self.layout(cfg, bench)
        self.target = build_target(cfg.target, bench.input_shape, self.k, heads, bench.num_tasks)
        torch.manual_seed(seed)
        self.weights = nn.Parameter(self.target.init_weights().to(device))

    @staticmethod
    def layout(cfg: ExperimentConfig, bench: Benchmark) -> tuple[str, int, int, int]:
        """(scenario, outputs per head, heads, init seed)."""
        return cfg.benchmark.scenario, bench.outputs_per_task, num_heads(cfg.benchmark), cfg.seed

    def logits(self, x: torch.Tensor, weights: torch.Tensor, task: int, known: int, train: bool = False) -> torch.Tensor:
        """Outputs that answer for `task` when `known` tasks have been met (CL3's growing head).
        An ordinary network keeps one set of batch-norm statistics, updated on every task."""
        if self.scenario == "cl1":
            return self.target(x, weights, task, task=0, train=train)
        if self.scenario == "cl2":
            return self.target(x, weights, 0, task=0, train=train)
        return self.target(x, weights, None, task=0, train=train)[..., : self.k * known]

    def labels(self, y: torch.Tensor, task: int) -> torch.Tensor:
        return y + self.k * task if self.scenario == "cl3" else y

    def learn_task(self, t: int, progress: Progress | None = None,
                   replay: ReplaySnapshot | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]
        if t > 0 and self.replays and (replay is None or replay.num_tasks != t):
            raise ValueError(f"task {t} needs the replay model of tasks 0..{t - 1}")
        gen = task_generator(cfg.seed, t, self.device)
        replay = replay.to(self.device) if replay is not None else None
        self.begin_task(t)
        teacher = self.weights.detach().clone()
        per_task = replay_per_task(t)
        optimizer = self.task_optimizer()
        w = current_share(self.current_weight(), t) if replay is not None else 1.0
        steps = task_steps(cfg.train, task.num_train)
        start = time.perf_counter()
        for step in scheduled_steps(cfg.train, steps, [optimizer]):
            loss = self.task_loss(t, gen)
            if replay is not None:
                images = replay.sample(per_task, gen)  # (t, per_task, pixels)
                loss = w * loss + (1 - w) * self.replay_loss(images, teacher, t)
            penalty = self.penalty()
            if penalty is not None:
                loss = loss + penalty
            self.update(optimizer, loss)
            if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
        if progress is not None:
            progress(steps % PROGRESS_EVERY)
        self.end_task(t)
        seconds = time.perf_counter() - start
        return {"train_s": seconds, "steps": steps, "steps_per_s": steps / max(seconds, 1e-9)}

    # -- what the baselines change (the methods of `methods/own_weights.py`) --
    def current_weight(self) -> float | None:
        return self.cfg.replay.current_weight

    def begin_task(self, t: int) -> None:
        """Before task t's first step."""

    def task_loss(self, t: int, gen: torch.Generator) -> torch.Tensor:
        """The loss on one batch of task t's own data."""
        task = self.bench.tasks[t]
        idx = torch.randint(task.num_train, (self.cfg.train.batch_size,), generator=gen, device=self.device)
        x, y = task.train_batch(idx, gen)
        return F.cross_entropy(self.logits(x, self.weights, t, t + 1, train=True), self.labels(y, t))

    def penalty(self) -> torch.Tensor | None:
        """A term added to every step's loss (a weight regularizer's)."""
        return None

    def task_optimizer(self) -> torch.optim.Adam:
        """The optimizer a task trains with: a fresh Adam, its moments at zero."""
        return torch.optim.Adam([self.weights], lr=self.cfg.train.lr)

    def update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def end_task(self, t: int) -> None:
        """After task t's last step."""

    def scenario_outputs(self, out: torch.Tensor, task: int, known: int) -> torch.Tensor:
        """Every head's outputs (..., heads*k) -> what `logits` gives for `task` with `known` tasks met."""
        if self.scenario == "cl1":
            return out[..., self.k * task : self.k * (task + 1)]
        return out if self.scenario == "cl2" else out[..., : self.k * known]

    def replay_logits(self, images: torch.Tensor, weights: torch.Tensor, known: int,
                      train: bool = False) -> torch.Tensor:
        """(tasks, n, *input) images, task p's in row p -> what `logits` gives each for its own
        task (tasks, n, outputs), every task's images in one pass through the target."""
        t, n = images.shape[:2]
        out = self.target(images.flatten(0, 1), weights, None, task=0, train=train).reshape(t, n, -1)
        if self.scenario == "cl1":
            own = torch.arange(t, device=out.device)
            return out.view(t, n, -1, self.k)[own, :, own]  # task p's images through head p
        return out if self.scenario == "cl2" else out[..., : self.k * known]

    def replay_loss(self, images: torch.Tensor, teacher: torch.Tensor, t: int) -> torch.Tensor:
        """KL(teacher ‖ student) at temperature T, times T², over every replayed task at once.

        In CL3 the student answers over every output including the current task's, and the
        teacher, which never met the current task, puts no mass there: replay is what keeps
        the new outputs from winning on earlier tasks' images.
        """
        with torch.no_grad():
            soft = F.softmax(self.replay_logits(images, teacher, t) / TEMPERATURE, dim=-1)
        student = F.log_softmax(self.replay_logits(images, self.weights, t + 1) / TEMPERATURE, dim=-1)
        soft = F.pad(soft, (0, student.shape[-1] - soft.shape[-1]))
        return F.kl_div(student, soft, reduction="sum") / student.shape[:2].numel() * TEMPERATURE**2

    @torch.no_grad()
    def evaluate(self, upto: int) -> dict[str, list[float]]:
        """Task given (its own head, or its own outputs of the growing head) and, for CL2/CL3,
        task unknown (the shared head, or the argmax over every output learned so far)."""
        given, unknown = [], []
        for j in range(upto + 1):
            right_given, right_unknown, n = 0, 0, 0
            weights = self.weights_for(j)
            for x, y in self.bench.tasks[j].test_batches(self.cfg.train.eval_batch_size):
                if self.scenario == "cl3":
                    out = self.logits(x, weights, j, upto + 1)
                    own = out[:, self.k * j : self.k * (j + 1)]
                    right_given += (own.argmax(-1) == y).sum().item()
                    right_unknown += (out.argmax(-1) == self.labels(y, j)).sum().item()
                else:
                    pred = self.logits(x, weights, j, upto + 1).argmax(-1)
                    right_given += (pred == y).sum().item()
                    right_unknown += (pred == y).sum().item()
                n += len(y)
            given.append(100.0 * right_given / n)
            unknown.append(100.0 * right_unknown / n)
        if self.scenario == "cl1":
            return {"acc_task_given": given}
        return {"acc_task_given": given, "acc_task_inferred": unknown}

    def weights_for(self, task: int) -> torch.Tensor:
        """The weights that answer for `task` at test time."""
        return self.weights

    def state_dict(self) -> dict:
        norm = self.target.norm_state()  # a conv target's running statistics
        return {"weights": self.weights.detach().cpu(), **({"norm": norm} if norm else {})}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.weights.copy_(state["weights"].to(self.device))
        self.target.load_norm_state(state.get("norm", {}))


class TaskInferenceClassifier(ReplayClassifier):
    """HNET+TIR's task-inference network: which task does an image come from? One output
    per task learned so far (a growing softmax), trained on the current task's real images
    and hard-labelled replay of the earlier tasks; the HNET classifier then answers with
    the weights of the task it picks."""

    @staticmethod
    def layout(cfg: ExperimentConfig, bench: Benchmark) -> tuple[str, int, int, int]:
        # A growing head with one output per task; not the HNET classifier's initial draw.
        return "cl3", 1, bench.num_tasks, cfg.seed + 1

    def labels(self, y: torch.Tensor, task: int) -> torch.Tensor:
        return torch.full_like(y, task)

    def replay_loss(self, images: torch.Tensor, teacher: torch.Tensor, t: int) -> torch.Tensor:
        tasks = torch.arange(t, device=images.device).repeat_interleave(images.shape[1])
        return F.cross_entropy(self.replay_logits(images, self.weights, t + 1).flatten(0, 1), tasks)

    @torch.no_grad()
    def predict_tasks(self, upto: int) -> list[torch.Tensor]:
        """The chosen task for every test image of tasks 0..upto, in test order (on the CPU)."""
        out = []
        for j in range(upto + 1):
            chosen = [self.logits(x, self.weights, 0, upto + 1).argmax(-1).cpu()
                      for x, _ in self.bench.tasks[j].test_batches(self.cfg.train.eval_batch_size)]
            out.append(torch.cat(chosen))
        return out

    @torch.no_grad()
    def evaluate(self, upto: int) -> dict[str, list[float]]:
        return {"task_inference_acc": [100.0 * float((p == j).float().mean()) for j, p in
                                       enumerate(self.predict_tasks(upto))]}
