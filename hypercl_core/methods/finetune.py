"""Fine-tuning: the target network's own weights learn each task in turn and nothing protects
the earlier ones (the paper's lower bound, Fig. 5); batch norm keeps one set of statistics.
"""

from __future__ import annotations

from typing import Literal

from hypercl_core.methods.own_weights import register_own_weights
from hypercl_core.methods.replay_classifier import ReplayClassifier
from hypercl_core.sections import Section


class FinetuneSection(Section):
    name: Literal["finetune"] = "finetune"


class FineTuner(ReplayClassifier):
    replays = False


register_own_weights("finetune", FinetuneSection, {"classifier": FineTuner}, "Fine-tuning")
