"""HNET: a task-conditioned hypernetwork generates the target network's weights.

Only the hypernetwork and the current task embedding learn; the output
regularizer keeps the weights generated for earlier embeddings in place.
With β=0 the same code is the fine-tuning control. Unknown task identity is
resolved by predictive entropy over all learned embeddings (HNET+ENT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from hypercl_core.accounting import ParamCounts, hnet_counts
from hypercl_core.data.tasks import Benchmark
from hypercl_core.hnets.mlp_hnet import HyperNetwork, TaskEmbeddings
from hypercl_core.hnets.protected import Protection, learn_protected_task
from hypercl_core.registry import MethodSpec, register, table1
from hypercl_core.schedule import step_lr, task_steps
from hypercl_core.subsystem import Progress
from hypercl_core.metrics import classifier_primary, hnet_classifier_scores, infers_task, matrix_names
from hypercl_core.nets.targets import classifier_target
from hypercl_core.sections import ProtectedSection

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class HnetSection(ProtectedSection):
    name: Literal["hnet"] = "hnet"


class HnetLearner:
    """The target-hypernetwork subsystem (the classifier or regressor of HNET)."""

    def __init__(self, cfg: ExperimentConfig, bench: Benchmark, device: torch.device):
        self.cfg = cfg
        self.bench = bench
        self.device = device
        self.target = classifier_target(cfg)
        self.heads = self.target.num_heads
        torch.manual_seed(cfg.seed)
        h = cfg.hnet
        self.hnet = HyperNetwork(self.generated_size(), h.temb_dim, h.hidden, h.activation, h.chunk_dim, h.cemb_dim,
                                 None if h.chunk_dim else self.output_blocks()).to(device)
        self.embeddings = TaskEmbeddings(h.temb_dim)
        # Which hnet outputs a past task uses (shared layers and its own head), for the regularizer.
        self.head_masks = (
            torch.stack([self.target.head_mask(t)[: self.hnet.num_outputs] for t in range(self.heads)]).to(device)
            if self.heads > 1 else None
        )

    # -- what a subclass changes -------------------------------------------
    def generated_size(self) -> int:
        """How many values the hypernetwork generates: HNET generates every target weight."""
        return self.target.num_weights

    def output_blocks(self) -> list[int] | None:
        """How a full hnet's outputs split into tensors that deserve their own init scale:
        HNET generates the target's weight tensors."""
        return list(self.target.param_sizes)

    def task_weights(self, embs: torch.Tensor) -> torch.Tensor:
        """(B, temb) task embeddings -> (B, target weights): HNET's are the hnet's outputs."""
        return self.hnet(embs)

    def step_loss(self, t: int, emb: torch.Tensor, x: torch.Tensor, y: torch.Tensor, head: int) -> torch.Tensor:
        return self._task_loss(self.target(x, self.task_weights(emb.unsqueeze(0)).squeeze(0), head, task=t, train=True), y)

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """What the task-loss optimizer updates besides the current embedding."""
        return list(self.hnet.parameters())

    def begin_task(self, t: int) -> None:
        """Snapshot whatever the method compares against while learning task t."""

    def protection(self) -> Protection:
        m = self.cfg.method
        return Protection(m.beta, m.lookahead, m.reg_subset)

    # -- training ---------------------------------------------------------
    def learn_task(self, t: int, progress: Progress | None = None) -> dict[str, float]:
        cfg, task = self.cfg, self.bench.tasks[t]
        head = t if self.heads > 1 else 0

        def step_loss(emb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(task.num_train, (cfg.train.batch_size,), generator=gen, device=self.device)
            x, y = task.train_batch(idx, gen)
            return self.step_loss(t, emb, x, y, head)

        self.begin_task(t)
        steps = task_steps(cfg.train, task.num_train)
        seconds = learn_protected_task(
            self.hnet, self.embeddings, t, step_loss, trained=self.trained_parameters(), lr=cfg.train.lr,
            steps=steps, protection=self.protection(), seed=cfg.seed, device=self.device,
            output_masks=self.head_masks, progress=progress, lr_factor=step_lr(cfg.train, steps))
        return {"train_s": seconds, "steps": steps, "steps_per_s": steps / max(seconds, 1e-9),
                "trained_compression_ratio": self.trained_compression_ratio()}

    def trained_compression_ratio(self) -> float:
        """Counted on the built modules, as a check on the ratio `count_params` predicted
        before training; after the last task every task embedding is included."""
        trained = sum(p.numel() for p in self.trained_parameters()) + self.embeddings.num_params()
        return trained / self.target.num_weights

    def _task_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) if self.bench.regression else F.cross_entropy(out, y)

    # -- inference --------------------------------------------------------
    @torch.no_grad()
    def generated_weights(self, upto: int) -> torch.Tensor:
        return self.task_weights(self.embeddings.stacked(range(upto + 1)))

    @torch.no_grad()
    def evaluate(self, upto: int, task_predictions: list[torch.Tensor] | None = None) -> dict[str, list[float]]:
        """Scores on tasks 0..upto: given task id, and (classification) task inferred: by
        entropy (HNET+ENT), or as `task_predictions` says (HNET+TIR: the task-inference
        classifier's choice for every test image of each task)."""
        weights = self.generated_weights(upto)
        if self.bench.regression:
            return {"mse": [self._mse(j, weights[j]) for j in range(upto + 1)]}
        infer = infers_task(self.cfg)
        scores: dict[str, list[float]] = {name: [] for name in matrix_names(self.cfg)}
        for j in range(upto + 1):
            given, inferred, task_ok, n = 0, 0, 0, 0
            for x, y in self.bench.tasks[j].test_batches(self.cfg.train.eval_batch_size):
                given += (self.target(x, weights[j], j if self.heads > 1 else 0, task=j).argmax(-1) == y).sum().item()
                if not infer:
                    n += len(y)
                    continue
                chosen = task_predictions[j][n : n + len(y)].to(x.device) if task_predictions is not None else None
                n += len(y)
                t_hat, pred = self.infer(x, weights, chosen)
                task_ok += (t_hat == j).sum().item()
                # CL3 needs the right task and class; CL2's shared head only the class.
                right = (pred == y) & (t_hat == j) if self.heads > 1 else pred == y
                inferred += right.sum().item()
            scores["acc_task_given"].append(100.0 * given / n)
            if infer:
                scores["acc_task_inferred"].append(100.0 * inferred / n)
                scores["task_inference_acc"].append(100.0 * task_ok / n)
        return scores

    def infer(self, x: torch.Tensor, weights: torch.Tensor,
              chosen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every task's generated network on the batch and answer with the chosen task's:
        the least uncertain one (HNET+ENT) unless the task per image is given."""
        tasks = torch.arange(len(weights), device=x.device)
        logits = self.target(x, weights, tasks if self.heads > 1 else 0, task=tasks)  # (T, N, k)
        if chosen is None:
            logp = logits.log_softmax(-1)
            chosen = (-(logp.exp() * logp).sum(-1)).argmin(0)  # lowest entropy, (N,)
        pred = logits[chosen, torch.arange(len(x), device=x.device)].argmax(-1)
        return chosen, pred

    def _mse(self, j: int, weights: torch.Tensor) -> float:
        task = self.bench.tasks[j]
        return F.mse_loss(self.target(task.x_test, weights, 0, task=j), task.y_test).item()

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "hnet": {k: v.detach().cpu() for k, v in self.hnet.state_dict().items()},
            "embeddings": [e.detach().cpu() for e in self.embeddings.embs],
            **({"norm": norm} if (norm := self.target.norm_state()) else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.hnet.load_state_dict(state["hnet"])
        self.embeddings = TaskEmbeddings.frozen(self.cfg.hnet.temb_dim, state["embeddings"], self.device)
        self.target.load_norm_state(state.get("norm", {}))


def hnet_params(cfg: ExperimentConfig) -> ParamCounts:
    return hnet_counts(cfg.hnet, classifier_target(cfg).num_weights, cfg.benchmark.num_tasks)


register(MethodSpec(
    "hnet", HnetSection, frozenset({"target", "hnet"}),
    subsystems=lambda cfg: {"target_hnet": HnetLearner},
    scores=hnet_classifier_scores, primary=classifier_primary, count_params=hnet_params,
    title="HNET+ENT", reported=table1((97.57, 92.80, 91.75), (99.79, 87.01, 69.48)),
))
