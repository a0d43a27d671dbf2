"""Online EWC (Schwarz et al. 2018), as van de Ven & Tolias (2019) ran it for the paper's Table 1.

After task t the diagonal Fisher F_t of the task's training examples is added to a
running sum decayed by γ, F̃_t = F_t + γ F̃_{t-1}, and the weights θ*_t are kept; the
penalty on later tasks is (λ/2) Σ γ F̃ (θ − θ*)². The second γ is van de Ven & Tolias's:
it is in the code their λ values were found with, so those values carry over as given.

F_t is the mean of squared log-likelihood gradients at the model's own predicted label
(the true Fisher's one-sample estimate, not the empirical Fisher), over the outputs the
scenario uses (the task's head, the shared head, or every class so far), in eval mode.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field

from hypercl_core.methods.own_weights import register_own_weights
from hypercl_core.methods.quadratic_penalty import QuadraticPenalty
from hypercl_core.registry import table1
from hypercl_core.sections import Section
from hypercl_core.seeding import task_generator


class EwcSection(Section):
    name: Literal["ewc"] = "ewc"
    lam: float = Field(1.0, ge=0)  # λ, the penalty's strength
    gamma: float = Field(1.0, ge=0, le=1)  # γ, the decay of earlier tasks' Fisher
    fisher_samples: Optional[int] = Field(None, ge=1)  # examples per Fisher estimate; None: the whole task
    keep_optimizer: bool = False  # one Adam over all tasks (van de Ven & Tolias's default), not one per task


class OnlineEWC(QuadraticPenalty):
    @property
    def scale(self) -> float:
        m = self.cfg.method
        return m.lam * m.gamma / 2

    def end_task(self, t: int) -> None:
        m = self.cfg.method
        self.importance = self.fisher(t) + m.gamma * self.importance
        self.anchor = self.weights.detach().clone()

    @torch.no_grad()
    def fisher(self, t: int) -> torch.Tensor:
        task = self.bench.tasks[t]
        n = task.num_train if self.cfg.method.fisher_samples is None else min(self.cfg.method.fisher_samples,
                                                                              task.num_train)
        gen = task_generator(self.cfg.seed, t, self.device, stream=4)
        chosen = torch.randperm(task.num_train, generator=gen, device=self.device)[:n]

        def predicted_nll(out: torch.Tensor) -> torch.Tensor:
            log_p = F.log_softmax(self.scenario_outputs(out, t, t + 1), dim=-1)
            return -log_p.gather(1, log_p.argmax(-1, keepdim=True)).squeeze(1)

        total = torch.zeros_like(self.importance)
        for idx in chosen.split(self.cfg.train.eval_batch_size):
            with torch.enable_grad():
                total += self.target.squared_grad_sum(task.inputs(task.x_train[idx]), self.weights, predicted_nll)
        return total / n


register_own_weights("ewc", EwcSection, {"classifier": OnlineEWC}, "Online EWC",
                     reported=table1((95.96, 94.42, 33.88), (99.12, 64.32, 19.96)))
