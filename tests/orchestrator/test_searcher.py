"""Optuna learns from full runs: a trial ASHA stopped early is PRUNED, not COMPLETE with a partial score."""

import optuna
from ray import tune

from orchestrator.searcher import FullRunSearch


def test_stopped_trials_are_pruned_finished_and_rejected_ones_complete(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    search = FullRunSearch(5, space={"train.lr": tune.loguniform(1e-4, 1e-2)}, metric="final_acc", mode="max",
                           storage=storage, study_name="s", sampler=optuna.samplers.TPESampler(seed=0))
    reports = {
        "stopped": {"final_acc": 99.9, "task": 1, "infeasible": 0},   # ASHA stopped it after task 1
        "finished": {"final_acc": 97.0, "task": 5, "infeasible": 0},
        "rejected": {"final_acc": 0.0, "task": 0, "infeasible": 1},    # architecture never trained
    }
    for trial_id, result in reports.items():
        assert "train.lr" in search.suggest(trial_id)
        search.on_trial_result(trial_id, {**result, "training_iteration": max(result["task"], 1)})
        search.on_trial_complete(trial_id, result)
    search.suggest("crashed")
    search.on_trial_complete("crashed", error=True)

    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    states = [t.state for t in trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert [t.value for t in trials[1:3]] == [97.0, 0.0]
