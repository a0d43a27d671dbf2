"""What the baselines share: a classifier that trains the target network's own weights.

Fine-tuning, training from scratch, joint training, online EWC, SI and DGR+distill
(the paper's comparisons, Table 1 and Fig. 5) have no hypernetwork. Each is HNET+R's
classifier (`ReplayClassifier`: heads by scenario, Adam on the target's weights,
the same evaluation) with one of its hooks changed, and registers through
`register_own_weights`, which fills in what they all declare alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from hypercl_core.accounting import ParamCounts
from hypercl_core.methods.hnet_r import hnet_r_scores
from hypercl_core.metrics import classifier_primary
from hypercl_core.nets.targets import classifier_target
from hypercl_core.registry import MethodSpec, register
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


def trained_weights(cfg: ExperimentConfig, copies: int = 1, extra: int = 0) -> ParamCounts:
    """No hypernetwork: `copies` target networks (one per task, from scratch) and `extra`
    other trained weights (DGR's generator) over one target's weights."""
    weights = classifier_target(cfg).num_weights
    return ParamCounts(weights, hnet_weights=0, task_embedding_weights=0,
                       shared_target_weights=copies * weights + extra)


def check_classifies(cfg: ExperimentConfig) -> None:
    if cfg.benchmark.name == "regression1d":
        raise ValueError(f"{cfg.method.name} trains a classifier; use method.name=hnet with beta 0 for regression1d")


def register_own_weights(name: str, section: type[Section], subsystems: dict[str, Callable], title: str,
                         count_params: Callable[[ExperimentConfig], ParamCounts] = trained_weights,
                         check: Callable[[ExperimentConfig], None] | None = None, compose=None,
                         reported: dict | None = None) -> MethodSpec:
    def checks(cfg: ExperimentConfig) -> None:
        check_classifies(cfg)
        if check is not None:
            check(cfg)

    return register(MethodSpec(
        name, section, frozenset({"target"}), subsystems=lambda cfg: dict(subsystems), compose=compose,
        scores=hnet_r_scores, primary=classifier_primary, count_params=count_params, check=checks,
        title=title, reported=reported or {},
    ))
