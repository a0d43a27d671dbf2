"""`hypercl best` ranking and the sweep objective it defaults to, on a real (SQLite) MLflow store."""

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hypercl_core.errors import UserError
from orchestrator.best import best_runs, sweep_objective
from orchestrator.tracking import KIND, embedded_uri


def _store(folder: Path, name: str, trials: dict[str, float], parent_tags=None, parent_metrics=None,
           kind: str = "sweep") -> str:
    """A sweep's experiment as SweepTracker and TrialTracker leave it: a parent run and finished trials."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = embedded_uri(folder)
    client = MlflowClient(uri)
    experiment = client.create_experiment(name, artifact_location=(folder / "artifacts").resolve().as_uri())
    parent = client.create_run(experiment, run_name=kind, tags={KIND: kind, **(parent_tags or {})}).info.run_id
    for key, value in (parent_metrics or {}).items():
        client.log_metric(parent, key, value)
    for i, (metric, value) in enumerate(trials.items()):
        run = client.create_run(experiment, run_name=f"t{i}", tags={KIND: "trial", "mlflow.parentRunId": parent})
        client.log_metric(run.info.run_id, metric.split("#")[0], value)
        client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def test_losses_rank_lowest_first(tmp_path):
    uri = _store(tmp_path / "sweeps" / "gan", "gan",
                 {"final_sample_drift#a": 0.3, "final_sample_drift#b": 0.1, "final_sample_drift#c": 0.2})
    ranked = [r.data.metrics["final_sample_drift"] for r in best_runs(uri, "gan", "final_sample_drift", top=3)]
    assert ranked == [0.1, 0.2, 0.3]
    ranked = [r.data.metrics["final_sample_drift"] for r in best_runs(uri, "gan", "final_sample_drift", 3, "max")]
    assert ranked == [0.3, 0.2, 0.1]  # an explicit mode wins


def test_accuracies_rank_highest_first_and_an_unknown_metric_needs_a_mode(tmp_path):
    uri = _store(tmp_path / "sweeps" / "s", "s", {"final_acc#a": 90.0, "final_acc#b": 95.0})
    assert [r.data.metrics["final_acc"] for r in best_runs(uri, "s", "final_acc", top=2)] == [95.0, 90.0]
    with pytest.raises(UserError, match="--mode"):
        best_runs(uri, "s", "final_acuracy", top=2)


def test_objective_comes_from_the_sweep_folder(tmp_path):
    folder = tmp_path / "sweeps" / "s"
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"kind": "sweep", "metric": "final_nll", "mode": "min"}))
    assert sweep_objective(tmp_path, "s", None) == ("final_nll", "min")
    assert sweep_objective(tmp_path, "s", "http://unused:5000") == ("final_nll", "min")  # the folder is enough


def test_objective_without_a_folder_comes_from_the_parent_runs_tags(tmp_path):
    store = tmp_path / "server"
    uri = _store(store, "s", {"final_mse": 0.1}, kind="rerun",
                 parent_tags={"hypercl.metric": "final_mse", "hypercl.mode": "min"})
    assert sweep_objective(tmp_path / "elsewhere", "s", uri) == ("final_mse", "min")


def test_objective_of_an_untagged_parent_is_its_summary_with_the_metrics_own_mode(tmp_path):
    uri = _store(tmp_path / "server", "s", {"final_sample_drift": 0.1},
                 parent_metrics={"finished_trials": 1, "best_final_sample_drift": 0.1,
                                 "final_sample_drift_mean": 0.1, "final_sample_drift_sem": 0.0})
    assert sweep_objective(tmp_path / "elsewhere", "s", uri) == ("final_sample_drift", "min")


def test_objective_falls_back_to_final_acc(tmp_path):
    assert sweep_objective(tmp_path, "gone", None) == ("final_acc", "max")  # nothing left to read
    uri = _store(tmp_path / "server", "s", {})  # a parent that has summarised nothing yet
    assert sweep_objective(tmp_path / "elsewhere", "s", uri) == ("final_acc", "max")
    # the embedded store of a folder whose sweep.yaml is gone
    _store(tmp_path / "sweeps" / "t", "t", {}, parent_tags={"hypercl.metric": "final_nll"})
    assert sweep_objective(tmp_path, "t", None) == ("final_nll", "min")


def test_objective_of_a_sweep_the_store_does_not_know_is_one_line(tmp_path):
    uri = _store(tmp_path / "server", "s", {})
    with pytest.raises(UserError, match="no sweep named 'other'"):
        sweep_objective(tmp_path, "other", uri)
