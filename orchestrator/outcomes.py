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


# The scheduler the summary explains (orchestrator.sweep._scheduler builds it from these).
ASHA_GRACE_TASKS = 1  # every trial learns at least this many tasks
ASHA_REDUCTION = 2  # at each rung, the best 1/ASHA_REDUCTION go on


@dataclass
class Outcomes:
    num_tasks: int | None  # None: trials of different lengths (a comparison)
    states: Counter = field(default_factory=Counter)  # trial_state -> trials
    stopped_after: Counter = field(default_factory=Counter)  # the task a stopped trial ended after -> trials

    @property
    def finished(self) -> int:
        return self.states["finished"]

    @property
    def stopped(self) -> int:
        return self.states["stopped"]

    @property
    def rejected(self) -> int:  # no chunk size met the compression bound: never trained
        return self.states["infeasible"]

    @property
    def failed(self) -> int:
        return self.states["failed"]

    @property
    def unfinished(self) -> int:
        return self.states["unfinished"]

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def counts(self) -> dict[str, int]:
        """As metrics on the parent run."""
        return {"finished_trials": self.finished, "stopped_trials": self.stopped, "rejected_trials": self.rejected,
                "failed_trials": self.failed}

    def lines(self, scheduler: str) -> list[str]:
        parts = [f"{self.finished} finished all {self.num_tasks if self.num_tasks else 'their'} tasks"]
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
            lines.append(f"  ASHA compares trials after each task and stops the worse half of those at a rung "
                         f"(grace {ASHA_GRACE_TASKS} task, reduction factor {ASHA_REDUCTION}), so in a small sweep "
                         "most trials stop after one or two tasks: that is expected, and it is how ASHA saves their "
                         "time; only trials that learned every task are ranked below.")
        return lines


def trial_state(run) -> str:
    """How a trial run ended: finished | stopped (by ASHA) | infeasible | failed | unfinished (still RUNNING,
    or closed by the driver without a verdict). The one reading of a run's status and tags for every view."""
    status, tags = run.info.status, run.data.tags
    if status == "FINISHED":
        return "finished"
    if INFEASIBLE_TAG in tags:
        return "infeasible"
    if status == "FAILED" or ERROR_TAG in tags:
        return "failed"
    if status == "KILLED" and tags.get(END_REASON) == STOPPED_BY_SCHEDULER:
        return "stopped"
    return "unfinished"


def read_outcomes(runs: list, num_tasks: int | None) -> Outcomes:
    """`runs`: a sweep's trial runs (SweepTracker.trial_runs)."""
    out = Outcomes(num_tasks)
    for run in runs:
        state = trial_state(run)
        out.states[state] += 1
        if state == "stopped":
            out.stopped_after[int(run.data.metrics.get("task", 0))] += 1
    return out
