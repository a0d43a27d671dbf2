"""The durable searchers on a real Optuna study and a real MLflow store: what a new driver session hands out."""

import optuna
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.search import Searcher

from orchestrator.searcher import COMPRESSION_EXCESS, MLFLOW_RUN, TRIAL_KEY, StudySearch, VariantSearch
from orchestrator.tracking import KIND, TRIAL_ID

SPACE = {"train.lr": tune.loguniform(1e-4, 1e-2), "hnet.activation": tune.choice(["relu", "elu"])}
COMPLETE, PRUNED, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                   optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING)


def _search(tmp_path, samples: int = 10, concurrent: int | None = None) -> StudySearch:
    """A new searcher on the sweep's study, as each driver session makes it."""
    return StudySearch(SPACE, "final_acc", "max", num_tasks=5, num_samples=samples, max_concurrent=concurrent,
                       storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", seed=0)


def _states(tmp_path) -> list:
    return [t.state for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials]


def test_stopped_and_rejected_trials_are_pruned_and_rejected_ones_violate_the_constraint(tmp_path):
    search = _search(tmp_path)
    reports = {  # what trial.py reports: the searcher's fields beside the metrics
        "stopped": {"final_acc": 99.9, "task": 1, "infeasible": 0, COMPRESSION_EXCESS: -0.2, MLFLOW_RUN: "r0"},
        "finished": {"final_acc": 97.0, "task": 5, "infeasible": 0, COMPRESSION_EXCESS: -0.5, MLFLOW_RUN: "r1"},
        # never trained; the worst value is only there because Tune wants the metric in every report
        "rejected": {"final_acc": 0.0, "task": 0, "infeasible": 1, COMPRESSION_EXCESS: 0.3, MLFLOW_RUN: "r2"},
    }
    for trial_id, result in reports.items():
        assert {"train.lr", "hnet.activation", TRIAL_KEY} == set(search.suggest(trial_id))
        if trial_id != "stopped":  # Tune hands the report ASHA stops a trial on to on_trial_complete only
            search.on_trial_result(trial_id, result)
        search.on_trial_complete(trial_id, result)
    search.suggest("crashed")
    search.on_trial_complete("crashed", error=True)

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").get_trials()
    assert [t.state for t in trials] == [PRUNED, COMPLETE, PRUNED, FAIL]
    assert trials[1].value == 97.0 and trials[2].value is None  # no made-up score for the rejected one
    assert trials[0].intermediate_values == {1: 99.9}  # by task: how far TPE sees a pruned trial got
    assert [t.constraints for t in trials[:3]] == [{COMPRESSION_EXCESS: -0.2}, {COMPRESSION_EXCESS: -0.5},
                                                   {COMPRESSION_EXCESS: 0.3}]
    assert [t.user_attrs.get(MLFLOW_RUN) for t in trials] == ["r0", "r1", "r2", None]


def test_tpe_learns_the_compression_bound_from_the_constraint(tmp_path):
    """A space mostly beyond the bound: TPE, told only a violated constraint for each rejected trial,
    proposes fewer and fewer of them (the trials are scored here, not trained)."""
    space = {"x": tune.uniform(0.0, 1.0)}
    search = StudySearch(space, "final_acc", "max", num_tasks=5, num_samples=60, max_concurrent=None,
                         storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", seed=0)
    infeasible = []
    for i in range(60):
        x = search.suggest(f"tune-{i}")["x"]
        excess = x - 0.3  # only x <= 0.3 meets the bound; the best score lies inside, at 0.15
        result = ({"final_acc": 0.0, "task": 0, "infeasible": 1} if excess > 0 else
                  {"final_acc": 100.0 - 50 * abs(x - 0.15), "task": 5, "infeasible": 0})
        search.on_trial_complete(f"tune-{i}", {**result, COMPRESSION_EXCESS: excess})
        infeasible.append(excess > 0)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert all(t.value is None for t, bad in zip(study.trials, infeasible) if bad)
    assert sum(infeasible[:10]) >= 5, infeasible  # TPE's 10 random start-up trials: ~70 % infeasible
    assert sum(infeasible[30:]) <= 9, infeasible  # the last 30: at most 30 %


def test_a_new_session_hands_out_cut_off_trials_again_then_fills_the_study(tmp_path):
    first = _search(tmp_path, samples=3)
    a, b = first.suggest("tune-a"), first.suggest("tune-b")
    first.on_trial_complete("tune-a", {"final_acc": 90.0, "task": 5})
    # the driver dies: study trial 1 stays RUNNING; and one more was asked just before the kill
    orphan = first.study.ask(fixed_distributions=first.distributions)

    second = _search(tmp_path, samples=3)
    assert second.done_count() == 1
    again = [second.suggest("tune-x"), second.suggest("tune-y")]
    assert again[0] == b  # same key, same params: same MLflow run and checkpoint
    assert again[1][TRIAL_KEY] == "t0002" and again[1]["train.lr"] == orphan.params["train.lr"]
    assert second.suggest("tune-z") == Searcher.FINISHED  # 3 trials: the study is full
    for tune_id in ("tune-x", "tune-y"):
        second.on_trial_complete(tune_id, {"final_acc": 91.0, "task": 5})
    assert _states(tmp_path) == [COMPLETE] * 3
    assert not _search(tmp_path, samples=3).has_work()
    assert a[TRIAL_KEY] == "t0000"


def test_a_trial_told_before_the_kill_is_not_told_twice(tmp_path):
    first = _search(tmp_path, samples=1)
    key = first.suggest("tune-a")[TRIAL_KEY]
    first.on_trial_complete("tune-a", {"final_acc": 90.0, "task": 5})
    # Tune's state had not caught up: the trial runs again in a new session and reports again
    second = _search(tmp_path, samples=1)
    second._live["tune-b"] = key
    second.on_trial_complete("tune-b", {"final_acc": 95.0, "task": 5})
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.value for t in study.trials] == [90.0]


def test_a_trial_killed_inside_ask_draws_its_missing_params_and_runs(tmp_path):
    first = _search(tmp_path, samples=2)
    half = first.study.ask()  # ask() wrote the trial and one param, then the driver died
    lr = half.suggest_float("train.lr", 1e-4, 1e-2, log=True)
    second = _search(tmp_path, samples=2)
    adopted = second.suggest("tune-0")
    assert adopted[TRIAL_KEY] == "t0000" and adopted["train.lr"] == lr and adopted["hnet.activation"] in ("relu", "elu")
    assert second.suggest("tune-1")[TRIAL_KEY] == "t0001" and second.suggest("tune-2") == Searcher.FINISHED
    assert second.study.get_trials()[0].params == {k: v for k, v in adopted.items() if k != TRIAL_KEY}
    assert _states(tmp_path) == [RUNNING, RUNNING]  # two trials, as asked: none failed, none extra


def test_draws_depend_on_the_study_not_on_how_many_sessions_it_took(tmp_path):
    one_go = _search(tmp_path / "a", samples=4)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = [one_go.suggest(str(i)) for i in range(4)]
    first = _search(tmp_path / "b", samples=4)
    interrupted = [first.suggest(str(i)) for i in range(2)]
    for tune_id in ("0", "1"):
        first.on_trial_complete(tune_id, {"final_acc": 1.0, "task": 5})
    for i in range(2):
        one_go.on_trial_complete(str(i), {"final_acc": 1.0, "task": 5})
    second = _search(tmp_path / "b", samples=4)  # the driver was killed and resumed
    interrupted += [second.suggest(str(i)) for i in range(2, 4)]
    assert interrupted == straight  # same keys, same draws: the kill changed nothing
    assert len({h["train.lr"] for h in interrupted}) == 4  # a new session does not repeat the first's draws


def test_at_most_max_concurrent_live_trials(tmp_path):
    search = _search(tmp_path, samples=5, concurrent=2)
    assert search.suggest("a") and search.suggest("b")
    assert search.suggest("c") is None
    search.on_trial_complete("a", {"final_acc": 1.0, "task": 5})
    assert search.suggest("c")[TRIAL_KEY] == "t0002"


def test_variants_run_until_their_mlflow_run_finished(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("r")
    for key, status in (("v0000", "FAILED"), ("v0001", "FINISHED"), ("v0002", "RUNNING")):
        run = client.create_run(experiment, tags={KIND: "trial", TRIAL_ID: key})
        client.set_terminated(run.info.run_id, status)
    search = VariantSearch(4, uri, experiment, "final_acc", "max", max_concurrent=None)
    assert search.done_count() == 1
    handed = [search.suggest(str(i)) for i in range(3)]
    assert [h[TRIAL_KEY] for h in handed] == ["v0000", "v0002", "v0003"]
    assert search.suggest("3") == Searcher.FINISHED
