"""End-to-end sweeps: real local Ray, real Optuna, real MLflow, tiny trials on real MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import optuna
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from hypercl_core.errors import UserError
from orchestrator import sweep
from orchestrator.cli import main
from orchestrator.tracking import KIND, PARENT, TRIAL_ID, decode_params, embedded_uri
from tests.orchestrator.conftest import TINY_SWEEP

pytestmark = pytest.mark.slow


def _sweep_args(runs: Path, name: str, samples: int, *extra: str) -> list[str]:
    args = ["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--num-samples", str(samples),
            "--max-concurrent", "2", "--runs-dir", str(runs), "--name", name]
    for item in TINY_SWEEP:
        args += ["--set", item]
    return [*args, *extra]


def _trial_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")


def test_sweep_tracks_every_trial_and_best_agrees_with_mlflow(tmp_path, capsys, data_root, monkeypatch, mlflow_at):
    assert main(_sweep_args(tmp_path, "s1", 3, "--scheduler", "asha")) == 0
    ray.shutdown()
    captured = capsys.readouterr()
    out = captured.out
    assert "best" in out and "mlflow ui --backend-store-uri" in out
    folder = tmp_path / "sweeps" / "s1"
    uri = embedded_uri(folder)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("s1")
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].info.run_name == "s1"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the UI link opens the runs (MLflow 3.17 reads the view from the link, not from the kind tag)
    assert f"/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" in out
    assert "trials: 3 — " in out  # how each trial ended, before the ranking
    trials = _trial_runs(uri, "s1")
    assert len(trials) == 3 and len({t.data.tags[TRIAL_ID] for t in trials}) == 3
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{folder / 'optuna.db'}")
    linked = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert linked == {run.info.run_id for run in trials}  # each study trial names its MLflow run
    for run in [parents[0], *trials]:  # provenance: the command in-process too, and the code's commit
        assert run.data.tags["hypercl.command"].startswith("hypercl sweep --space smoke")
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40 and run.data.tags["mlflow.user"]
    for run in trials:
        assert run.data.tags[PARENT] == parents[0].info.run_id
        params = decode_params(run.data.params)
        assert params["benchmark.num_tasks"] == 2 and params["hnet.chunk_dim"] is not None
        assert 0 < run.data.metrics["compression_ratio"] <= 1.0
        history = client.get_metric_history(run.info.run_id, "final_acc")
        if run.info.status == "FINISHED":  # ASHA may stop one after task 1
            assert [m.step for m in history][:2] == [1, 2]
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"config.yaml", "config.json", "matrix.csv", "matrix.png", "matrix_acc_task_given.json",
                    "results.json"} <= artifacts
            assert f"{run.data.tags[TRIAL_ID]} done: final_acc" in captured.err
        else:
            assert run.info.status == "KILLED" and run.data.tags["hypercl.end_reason"]
            assert f"{run.data.tags[TRIAL_ID]} stopped by the scheduler after task 1: final_acc" in captured.err

    assert len(study.trials) == 3
    # Optuna learns from full runs only: a trial ASHA stopped is PRUNED, not COMPLETE with its partial score
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == sum(r.info.status == "FINISHED" for r in trials)
    assert states.count(optuna.trial.TrialState.PRUNED) == sum(r.info.status == "KILLED" for r in trials)

    # `best` must rank exactly as MLflow's own search does
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what mlflow.set_tracking_uri sets; restored below
    mlflow_at(uri)
    reference = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED'",
        order_by=["metrics.final_acc DESC"],
    )
    # params are plain text: the UI's filter on a string param finds the runs (JSON-encoded, it found none)
    elu = mlflow.search_runs(experiment_ids=[experiment.experiment_id],
                             filter_string=f"tags.`{KIND}` = 'trial' and params.`hnet.activation` = 'elu'")
    assert set(elu["run_id"]) == {r.info.run_id for r in trials if decode_params(r.data.params)["hnet.activation"]
                                  == "elu"}
    assert not len(mlflow.search_runs(experiment_ids=[experiment.experiment_id],
                                      filter_string="params.`hnet.activation` = '\"elu\"'"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # else every command below would default to the s1 store
    assert main(["best", "--name", "s1", "--runs-dir", str(tmp_path), "--top", "3",
                 "--export", str(tmp_path / "exports" / "best.yaml")]) == 0  # folder made for it
    table = capsys.readouterr().out
    ranked = [line.split()[-1] for line in table.splitlines() if line[:1].isdigit()]
    assert ranked == list(reference["run_id"])[: len(ranked)] and ranked
    exported = load_config(str(tmp_path / "exports" / "best.yaml"))
    top = client.get_run(ranked[0])
    assert exported.flat() == decode_params(top.data.params)

    # rerun the winner over seeds: one parent with mean ± SEM, one nested run per seed
    assert main(["rerun", str(tmp_path / "exports" / "best.yaml"), "--seeds", "2", "--runs-dir", str(tmp_path),
                 "--name", "r1"]) == 0
    ray.shutdown()
    assert "SEM over 2 of 2 seeds" in capsys.readouterr().out
    r_uri = embedded_uri(tmp_path / "sweeps" / "r1")
    seeds = sorted(decode_params(r.data.params)["seed"] for r in _trial_runs(r_uri, "r1"))
    assert seeds == [0, 1]
    r_client = MlflowClient(r_uri)
    parent = r_client.search_runs([r_client.get_experiment_by_name("r1").experiment_id],
                                  filter_string=f"tags.`{KIND}` = 'rerun'")[0]
    assert {"final_acc_mean", "final_acc_sem"} <= set(parent.data.metrics)

    # resumed by a relative path (as the CLI prints it), a finished rerun adds no run; sweep --resume points to rerun
    monkeypatch.chdir(tmp_path)
    assert main(["rerun", "--resume", "sweeps/r1"]) == 0
    ray.shutdown()
    assert len(_trial_runs(r_uri, "r1")) == 2
    assert main(["sweep", "--resume", "sweeps/r1"]) == 2
    assert "hypercl rerun --resume sweeps/r1" in capsys.readouterr().err


def test_an_architecture_beyond_the_bound_is_never_trained_and_told_to_the_study_as_a_violated_constraint(
        tmp_path, capsys, data_root):
    # on the tiny target, [5, 5] meets the bound 0.5 (excess -0.15) and [100, 100] cannot (excess +1.96)
    space = tmp_path / "tight.yaml"
    space.write_text(yaml.safe_dump({"name": "tight", "max_compression_ratio": 0.5,
                                     "params": {"hnet.hidden": {"choice": [[5, 5], [100, 100]]}}}))
    args = _sweep_args(tmp_path, "tight", 4)
    args[args.index("smoke")] = str(space)
    assert main(args) == 0
    ray.shutdown()
    assert "rejected before training (no chunk size meets the compression bound)" in capsys.readouterr().out
    folder = tmp_path / "sweeps" / "tight"
    client = MlflowClient(embedded_uri(folder))
    runs = {r.data.tags[TRIAL_ID]: r for r in _trial_runs(embedded_uri(folder), "tight")}
    study = optuna.load_study(study_name="tight", storage=f"sqlite:///{folder / 'optuna.db'}")
    wide = [t for t in study.trials if t.params["hnet.hidden"] == "[100, 100]"]
    assert wide and len(wide) < len(study.trials)  # both kinds drawn (TPE's start-up draws are seeded)
    for trial in study.trials:
        run = runs[f"t{trial.number:04d}"]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        if trial in wide:  # never trained: no metric, no artifact; PRUNED with no made-up score
            assert run.info.status == "KILLED" and "hypercl.infeasible" in run.data.tags
            assert not run.data.metrics and not client.list_artifacts(run.info.run_id)
            assert trial.state == optuna.trial.TrialState.PRUNED and trial.value is None
            assert trial.constraints["compression_excess"] > 1
        else:
            assert run.info.status == "FINISHED" and trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.constraints["compression_excess"] < 0


def test_bad_sweep_inputs_exit_2_and_record_nothing(tmp_path, capsys):
    bad_space = tmp_path / "bad.yaml"
    bad_space.write_text(yaml.safe_dump({"name": "bad", "params": {"hnet.hidden": {"choice": []}}}))
    cases = [
        (["sweep", "--space", str(bad_space), "--preset", "split_mnist_cl1"], "choice list is empty"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--tracking-uri", "http://127.0.0.1:9"],
         "unreachable"),
        (["best", "--name", "nosuch"], "no sweep named 'nosuch'"),
        (["sweep", "--resume", str(tmp_path)], "is not a sweep folder"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--max-concurrent", "0"], "--max-concurrent"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--gpus-per-subsystem", "2"],
         "--gpus-per-subsystem must be 0, 1 or a fraction"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--gpus-per-subsystem", "0.25"],
         "--gpus-per-subsystem 0.25 but this machine has no GPU"),
        (["sweep", "--space", "smoke", "--preset", "nosuch"], "neither a YAML file nor a preset"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--address", "auto"], "--tracking-uri http://"),
        (["rerun", "split_mnist_cl1", "--address", "auto", "--tracking-uri", "http://127.0.0.1:9"], "--storage s3://"),
        (["rerun", "split_mnist_cl1", "--address", "auto", "--tracking-uri", "http://127.0.0.1:9", "--storage",
          "s3://bucket/hypercl"], "--gpus-per-subsystem 1"),
        (["rerun"], "needs a config"),
        (["best", "--name", "x", "--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--study-storage",
          "postgresql://nobody@127.0.0.1:9/none"], "cannot open the study storage"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--study-storage", "nosuch://x"],
         "cannot open the study storage"),
        (["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--address", "ray://127.0.0.1:10001",
          "--tracking-uri", "http://127.0.0.1:9", "--storage", "s3://b/p", "--gpus-per-subsystem", "0"],
         "pass --study-storage postgresql://"),
    ]
    for args, fragment in cases:
        assert main([*args, "--runs-dir", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
    impossible = tmp_path / "tight.yaml"
    impossible.write_text(yaml.safe_dump({"name": "tight", "max_compression_ratio": 1e-6,
                                          "params": {"method.beta": {"choice": [0.01]}}}))
    assert main(["sweep", "--space", str(impossible), "--preset", "split_mnist_cl1", "--runs-dir",
                 str(tmp_path / "runs")]) == 2
    assert "compression ratio" in capsys.readouterr().err


def test_mlflow_tracking_uri_and_ray_address_are_the_defaults_they_are_elsewhere(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    for args in (["best", "--name", "x"], ["robustness", "--plot-only", "--name", "x"],
                 ["sweep", "--space", "smoke", "--preset", "split_mnist_cl1"], ["rerun", "split_mnist_cl1"]):
        assert main([*args, "--runs-dir", str(tmp_path / "runs")]) == 2
        assert "http://127.0.0.1:9 is unreachable" in capsys.readouterr().err, args
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # Ray would join $RAY_ADDRESS silently; the sweep treats it as --address, so the cluster checks apply
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert main(["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--address runs trials on other nodes" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_best_refuses_an_existing_sweep_name_on_the_wrong_server(tmp_path, capsys):
    folder = tmp_path / "sweeps" / "x"
    folder.mkdir(parents=True)
    MlflowClient(embedded_uri(folder)).create_experiment("other")
    assert main(["best", "--name", "x", "--runs-dir", str(tmp_path)]) == 2
    assert "sweeps there: other" in capsys.readouterr().err


def test_a_study_storage_that_is_an_mlflow_database_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(db).create_experiment("e")
    with pytest.raises(UserError, match="is an MLflow database; give the study a database of its own"):
        sweep.check_study_storage(db)
    sweep.check_study_storage(f"sqlite:///{tmp_path / 'optuna.db'}")  # a new or Optuna database is fine


def test_one_driver_per_sweep(tmp_path):
    first = sweep._lock(tmp_path, "s")
    with pytest.raises(UserError, match=f"sweep 's' is already running \\(driver pid {os.getpid()}"):
        sweep._lock(tmp_path, "s")
    first.close()  # the driver ended (a killed process's lock goes with it)
    sweep._lock(tmp_path, "s").close()
