"""Fine-tuning: the target network's own weights learn each task in turn and nothing protects
the earlier ones (the paper's lower bound, Fig. 5); batch norm keeps one set of statistics.

The classifier is HNET+R's without replay: one head per task (CL1), one shared head (CL2) or
a growing one (CL3), Adam on the target's weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from hypercl_core.accounting import ParamCounts
from hypercl_core.methods.hnet_r import hnet_r_scores
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.metrics import classifier_primary
from hypercl_core.nets.targets import classifier_target
from hypercl_core.registry import MethodSpec, register
from hypercl_core.sections import Section

if TYPE_CHECKING:
    from hypercl_core.config import ExperimentConfig


class FinetuneSection(Section):
    name: Literal["finetune"] = "finetune"


class FineTuner(ReplayClassifier):
    replays = False


def finetune_params(cfg: ExperimentConfig) -> ParamCounts:
    """No hypernetwork: the target's weights are what is trained (compression ratio 1)."""
    weights = classifier_target(cfg).num_weights
    return ParamCounts(weights, hnet_weights=0, task_embedding_weights=0, shared_target_weights=weights)


def check_finetune(cfg: ExperimentConfig) -> None:
    if cfg.benchmark.name == "regression1d":
        raise ValueError("finetune trains a classifier; use method.name=hnet with beta 0 for regression1d")


register(MethodSpec(
    "finetune", FinetuneSection, frozenset({"target"}),
    subsystems=lambda cfg: {"classifier": FineTuner},
    scores=hnet_r_scores, primary=classifier_primary, count_params=finetune_params, check=check_finetune,
))
