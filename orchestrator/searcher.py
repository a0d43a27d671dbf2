"""The sweep's Optuna searcher, telling trials the scheduler stopped from finished ones.

When ASHA stops a trial after task k, Tune hands the searcher that trial's last
report as its result: a final accuracy over k tasks, which after one or two
tasks is often higher than a full run's. Told to Optuna as COMPLETE, TPE would
learn most from the configs ASHA judged worst. They are told as PRUNED instead
(TPE ranks pruned trials below every complete one, by how far they got), while a
rejected architecture keeps its worst-value COMPLETE, so TPE learns to avoid it.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class FullRunSearch(OptunaSearch):
    def __init__(self, num_tasks: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped_early = (result is not None and not result.get("infeasible")
                         and result.get("task", self.num_tasks) < self.num_tasks)
        super().on_trial_complete(trial_id, None if stopped_early else result, error)
