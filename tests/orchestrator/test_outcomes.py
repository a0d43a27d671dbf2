"""How each trial ended, read back from a real (SQLite) MLflow store as the sweep's driver leaves it."""

from mlflow.tracking import MlflowClient

from orchestrator.outcomes import read_outcomes
from orchestrator.tracking import (END_REASON, ERROR_TAG, INFEASIBLE_TAG, KIND, STOPPED_BY_SCHEDULER, SweepTracker,
                                   embedded_uri)


def test_finished_stopped_rejected_failed_and_unfinished_trials_are_told_apart(tmp_path):
    uri = embedded_uri(tmp_path)
    tracker = SweepTracker(uri, "s")
    client = MlflowClient(uri)

    def trial(status: str, tags: dict[str, str] | None = None, task: int | None = None) -> None:
        run = client.create_run(tracker.experiment_id, tags={KIND: "trial", **(tags or {})}).info.run_id
        if task is not None:
            client.log_metric(run, "task", task, step=task)
        if status != "RUNNING":
            client.set_terminated(run, status)

    for _ in range(2):
        trial("FINISHED", task=5)
    trial("KILLED", {END_REASON: STOPPED_BY_SCHEDULER}, task=1)
    trial("KILLED", {END_REASON: STOPPED_BY_SCHEDULER}, task=1)
    trial("KILLED", {END_REASON: STOPPED_BY_SCHEDULER}, task=2)
    trial("KILLED", {INFEASIBLE_TAG: "no chunk size meets the compression bound"})
    trial("FAILED", {ERROR_TAG: "RuntimeError: boom"}, task=3)
    trial("KILLED", {END_REASON: "the sweep ended without its verdict"}, task=2)
    trial("RUNNING", task=4)

    out = read_outcomes(tracker.trial_runs(), num_tasks=5)
    assert (out.finished, dict(out.stopped_after), out.rejected, out.failed, out.unfinished) == (2, {1: 2, 2: 1}, 1,
                                                                                                 1, 2)
    assert out.total == 9 and out.counts() == {"finished_trials": 2, "stopped_trials": 3, "rejected_trials": 1,
                                               "failed_trials": 1}
    story = out.lines("asha")
    assert story[0] == ("trials: 9 — 2 finished all 5 tasks; 3 stopped early by ASHA (2 after task 1, 1 after task 2); "
                        "1 rejected before training (no chunk size meets the compression bound); 1 failed (errors "
                        "under the sweep's tune/ folder); 2 unfinished (interrupted, or closed without their verdict)")
    assert "expected" in story[1]  # why ASHA stopping most trials is not a failure
    assert out.lines("fifo") == story[:1]  # no ASHA, nothing to explain
