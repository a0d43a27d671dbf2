"""How each trial of a sweep ended, read from MLflow: the story a sweep tells when it closes.

With ASHA most trials of a small sweep stop after one or two tasks, which is what
the scheduler is for but reads like a failure to someone who has not met it;
the summary says what it did and why, and keeps finished and stopped trials
apart (only finished ones are ranked by `hypercl best`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from orchestrator.tracking import END_REASON, ERROR_TAG, INFEASIBLE_TAG, STOPPED_BY_SCHEDULER


@dataclass
class Outcomes:
    num_tasks: int
    finished: int = 0
    stopped_after: Counter = field(default_factory=Counter)  # task it was stopped after -> trials
    rejected: int = 0  # no chunk size met the compression bound: never trained
    failed: int = 0
    unfinished: int = 0  # still RUNNING in MLflow (the sweep was interrupted) or closed without a verdict

    @property
    def stopped(self) -> int:
        return sum(self.stopped_after.values())

    @property
    def total(self) -> int:
        return self.finished + self.stopped + self.rejected + self.failed + self.unfinished

    def counts(self) -> dict[str, int]:
        """As metrics on the parent run."""
        return {"finished_trials": self.finished, "stopped_trials": self.stopped, "rejected_trials": self.rejected,
                "failed_trials": self.failed}

    def lines(self, scheduler: str) -> list[str]:
        parts = [f"{self.finished} finished all {self.num_tasks} tasks"]
        if self.stopped:
            after = ", ".join(f"{n} after task {task}" for task, n in sorted(self.stopped_after.items()))
            parts.append(f"{self.stopped} stopped early by ASHA ({after})")
        for count, what in ((self.rejected, "rejected before training (no chunk size meets the compression bound)"),
                            (self.failed, "failed (errors under the sweep's tune/ folder)"),
                            (self.unfinished, "unfinished (interrupted, or closed without their verdict)")):
            if count:
                parts.append(f"{count} {what}")
        lines = [f"trials: {self.total} — " + "; ".join(parts)]
        if scheduler == "asha" and self.stopped:
            lines.append("  ASHA compares trials after each task and stops the worse half of those at a rung "
                         "(grace 1 task, reduction factor 2), so in a small sweep most trials stop after one or two "
                         "tasks: that is expected, and it is how ASHA saves their time; only trials that learned "
                         "every task are ranked below.")
        return lines


def read_outcomes(runs: list, num_tasks: int) -> Outcomes:
    """`runs`: a sweep's trial runs (SweepTracker.trial_runs)."""
    out = Outcomes(num_tasks)
    for run in runs:
        status, tags = run.info.status, run.data.tags
        if status == "FINISHED":
            out.finished += 1
        elif INFEASIBLE_TAG in tags:
            out.rejected += 1
        elif status == "FAILED" or ERROR_TAG in tags:
            out.failed += 1
        elif status == "KILLED" and tags.get(END_REASON) == STOPPED_BY_SCHEDULER:
            out.stopped_after[int(run.data.metrics.get("task", 0))] += 1
        else:
            out.unfinished += 1
    return out
