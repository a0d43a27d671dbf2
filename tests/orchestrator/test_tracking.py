"""What a sweep leaves in MLflow, on a real SQLite store: plain-text params, provenance, the config and matrix."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from hypercl_core.provenance import provenance
from orchestrator.best import export_config
from orchestrator.tracking import (EXPERIMENT_KIND, KIND, SweepTracker, TrialTracker, decode_params, decode_value,
                                   embedded_uri, encode_value, matrix_table, provenance_tags)

VALUES = ["elu", "1e-3", "true", "null", "[1, 2]", '"quoted"', "", "with space", 0.001, 1e-05, 3, 0, True, False,
          None, [100, 100], [], [[10, 10], [25]], float("inf")]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_value_round_trips_and_old_json_encoded_stores_decode_the_same(value):
    assert decode_value(encode_value(value)) == value
    assert decode_value(json.dumps(value)) == value  # how every param was stored before plain text


def test_strings_are_stored_as_typed_and_only_ambiguous_ones_quoted():
    assert [encode_value(v) for v in ("elu", "with space", "1e-3", "true")] == ["elu", "with space", '"1e-3"',
                                                                               '"true"']
    assert [encode_value(v) for v in ([100, 100], 0.001, True)] == ["[100,100]", "0.001", "true"]


def _trial(uri: str, tracker: SweepTracker, parent: str, key: str, cfg, origin: dict) -> TrialTracker:
    trial = TrialTracker(uri, tracker.experiment_id, parent, key, f"trial-{key}", origin)
    trial.log_config(cfg.model_dump(), cfg.flat())
    return trial


def test_a_sweeps_runs_filter_by_plain_params_and_carry_their_provenance(tmp_path, mlflow_at):
    uri = embedded_uri(tmp_path)
    origin = provenance("hypercl sweep --space smoke --name s")
    tracker = SweepTracker(uri, "s", artifact_root=tmp_path / "artifacts")
    parent = tracker.parent_run("sweep", origin=origin)
    elu = load_config("split_mnist_cl1", ["hnet.activation=elu"])
    relu = load_config("split_mnist_cl1", ["hnet.activation=relu"])
    runs = {key: _trial(uri, tracker, parent, key, cfg, {**origin, "host": "worker-1"}).run_id
            for key, cfg in (("t0000", elu), ("t0001", relu), ("t0002", elu))}

    client = MlflowClient(uri)
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND[0]] == "custom_model_development"  # the UI opens on training runs
    mlflow_at(uri)
    found = mlflow.search_runs([tracker.experiment_id], filter_string="params.`hnet.activation` = 'elu'")
    assert sorted(found["run_id"]) == sorted([runs["t0000"], runs["t0002"]])
    found = mlflow.search_runs([tracker.experiment_id], filter_string="params.`hnet.hidden` = '[10,10]'")
    assert len(found) == 3
    assert len(mlflow.search_runs([tracker.experiment_id], filter_string="params.`train.lr` = '0.001'")) == 3

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    parent_run = client.get_run(parent)
    assert parent_run.info.run_name == "s"  # named after the sweep, not "sweep"
    for run in [parent_run, *(client.get_run(r) for r in runs.values())]:
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == head and tags["hypercl.git_commit"] == head
        assert tags["hypercl.git_dirty"] in ("True", "False")
        assert tags["hypercl.command"] == "hypercl sweep --space smoke --name s"
        assert tags["mlflow.source.name"] == "hypercl sweep" and tags["mlflow.user"] == origin["user"]
        assert tags["hypercl.hypercl_version"] == origin["hypercl_version"]
    assert client.get_run(runs["t0001"]).data.tags["hypercl.host"] == "worker-1"
    assert parent_run.data.tags["hypercl.host"] == origin["host"]
    # the config as one dict, exactly what the trial ran
    config = client.download_artifacts(runs["t0001"], "config.json", str(tmp_path / "dl"))
    assert json.loads(Path(config).read_text()) == relu.model_dump()


def test_best_exports_the_same_config_from_old_json_encoded_and_new_plain_stores(tmp_path):
    cfg = load_config("split_mnist_cl1", ["hnet.hidden=[25,25]", "method.beta=0.05"])
    uri = embedded_uri(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("old")
    old = client.create_run(experiment, tags={KIND: "trial"})
    client.log_batch(old.info.run_id, params=[Param(k, json.dumps(v)) for k, v in cfg.flat().items()])
    tracker = SweepTracker(uri, "new")
    new = _trial(uri, tracker, tracker.parent_run("sweep"), "t0000", cfg, provenance("hypercl sweep"))
    for run_id, out in ((old.info.run_id, "old.yaml"), (new.run_id, "new.yaml")):
        run = client.get_run(run_id)
        assert decode_params(run.data.params) == cfg.flat()
        export_config(run, tmp_path / out, "final_acc")
        assert load_config(str(tmp_path / out)) == cfg
    assert client.get_run(old.info.run_id).data.params["hnet.activation"] == '"elu"'
    assert client.get_run(new.run_id).data.params["hnet.activation"] == "elu"


def test_the_score_matrix_table_is_one_based_with_gaps_before_a_task_is_learned():
    table = matrix_table([[99.0, None, None], [98.5, 97.0, None], [98.0, 96.5, 99.5]])
    assert table == {"after_task": [1, 2, 3], "task_1": [99.0, 98.5, 98.0], "task_2": [None, 97.0, 96.5],
                     "task_3": [None, None, 99.5]}


def test_system_metrics_are_logged_on_the_trial_run_until_it_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # 10 s by default
    uri = embedded_uri(tmp_path)
    tracker = SweepTracker(uri, "s")
    trial = TrialTracker(uri, tracker.experiment_id, tracker.parent_run("sweep"), "t0000", "trial-t0000")
    monitor = trial.monitor_system()
    client, deadline = MlflowClient(uri), time.monotonic() + 30
    while "system/cpu_utilization_percentage" not in client.get_run(trial.run_id).data.metrics:
        assert time.monotonic() < deadline, "no system metric logged in 30 s"
        time.sleep(0.2)
    thread = monitor._process
    monitor.finish()
    assert not thread.is_alive()  # stopped: a trial's monitor thread does not outlive its trial
    assert "system/system_memory_usage_megabytes" in client.get_run(trial.run_id).data.metrics


def test_a_resumed_trial_keeps_its_first_provenance_and_adds_each_later_session(tmp_path):
    uri = embedded_uri(tmp_path)
    tracker = SweepTracker(uri, "s")
    parent = tracker.parent_run("sweep", origin=provenance("hypercl sweep --space smoke --name s"))
    first = {**provenance("hypercl sweep --space smoke --name s"), "git_commit": "a" * 40, "git_dirty": False}
    TrialTracker(uri, tracker.experiment_id, parent, "t0000", "trial-t0000", first)
    later = {**first, "command": "hypercl sweep --resume runs/sweeps/s", "git_commit": "b" * 40}
    trial = TrialTracker(uri, tracker.experiment_id, parent, "t0000", "trial-t0000", later)
    tags = MlflowClient(uri).get_run(trial.run_id).data.tags
    assert tags["hypercl.command"] == "hypercl sweep --space smoke --name s" and tags["hypercl.git_commit"] == "a" * 40
    assert tags["hypercl.resume1.command"] == "hypercl sweep --resume runs/sweeps/s"
    assert tags["hypercl.resume1.git_commit"] == "b" * 40 and tags["hypercl.code_changed"] == "True"
    tracker.parent_run("sweep", run_id=parent, origin=later)  # a resumed driver session
    parent_tags = MlflowClient(uri).get_run(parent).data.tags
    assert parent_tags["hypercl.command"] == "hypercl sweep --space smoke --name s"
    assert parent_tags["hypercl.resumes"] == "1" and "hypercl.resume1.command" in parent_tags


def test_a_retried_finish_logs_the_score_table_once(tmp_path):
    uri = embedded_uri(tmp_path)
    tracker = SweepTracker(uri, "s")
    trial = TrialTracker(uri, tracker.experiment_id, tracker.parent_run("sweep"), "t0000", "trial-t0000")
    (tmp_path / "run").mkdir()
    results = {"summary": {"final_acc": 98.0}, "primary_matrix": "acc_task_given",
               "matrices": {"acc_task_given": [[99.0, None], [98.5, 97.5]]}}
    for _ in range(2):  # a trial cut off after finish() logged the table, then run again
        trial.finish(results, tmp_path / "run", step=2)
    table = json.loads(Path(MlflowClient(uri).download_artifacts(trial.run_id, "matrix_acc_task_given.json",
                                                                 str(tmp_path / "dl"))).read_text())
    assert len(table["data"]) == 2  # two rows, as the matrix has, not four


def test_the_mlflow_source_is_the_subcommand_whatever_options_come_first():
    assert provenance_tags({"command": "hypercl -q sweep --space smoke"})["mlflow.source.name"] == "hypercl sweep"
