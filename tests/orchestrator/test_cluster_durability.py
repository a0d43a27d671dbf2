"""A cluster sweep whose results outlive the cluster: MLflow on PostgreSQL, the study in PostgreSQL.

Real multi-node Ray (ray.cluster_utils.Cluster), a real `mlflow server` on a
PostgreSQL backend store with its own artifact destination (S3 on a real
cluster), the Optuna study in a second PostgreSQL database, trial checkpoints
on shared storage. The driver is killed mid-sweep and resumed; then the
head's sweep folder is deleted, and what researchers do next still works from
the servers alone.
"""

from __future__ import annotations

import shutil

import optuna
import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from orchestrator.cli import main
from orchestrator.tracking import KIND
from tests.orchestrator.conftest import TINY_SWEEP
from tests.orchestrator.drivers import Driver
from tests.orchestrator.servers import MlflowServer

pytestmark = pytest.mark.slow


def _finished(uri: str, name: str) -> int:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], filter_string=(
        f"tags.`{KIND}` = 'trial' and attributes.status = 'FINISHED'")))


def test_cluster_sweep_on_postgres_survives_a_driver_kill_and_the_loss_of_its_folder(tmp_path, data_root,
                                                                                        postgres_server):
    server = MlflowServer(tmp_path, backend=postgres_server.url("mlflow"))
    study_storage = postgres_server.url("optuna")  # its own database: both keep an alembic_version table
    server.start()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    runs = tmp_path / "runs"
    on_cluster = ["--address", cluster.address, "--tracking-uri", server.uri, "--storage", str(tmp_path / "shared"),
                  "--gpus-per-subsystem", "0", "--data-root", str(data_root), "--runs-dir", str(runs)]
    tiny = [arg for item in TINY_SWEEP for arg in ("--set", item)]
    try:
        sweep_args = ["sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--num-samples", "3",
                      "--max-concurrent", "2", "--name", "pg", "--study-storage", study_storage, *on_cluster, *tiny]
        driver = Driver(sweep_args, tmp_path / "first.log")
        assert driver.wait(kill_when=lambda: _finished(server.uri, "pg") >= 1) == -9, driver.tail()
        assert _finished(server.uri, "pg") < 3
        folder = runs / "sweeps" / "pg"
        resumed = Driver(["sweep", "--resume", str(folder), "--address", cluster.address], tmp_path / "resume.log")
        assert resumed.wait() == 0, resumed.tail()
        assert "study: postgresql://" in resumed.output() and f"tracking: {server.uri}" in resumed.output(), resumed.tail()

        study = optuna.load_study(study_name="pg", storage=study_storage)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
        assert _finished(server.uri, "pg") == 3

        shutil.rmtree(runs / "sweeps")  # the head's disk, gone with `ray down`
        exported = tmp_path / "best.yaml"
        assert main(["best", "--name", "pg", "--tracking-uri", server.uri, "--runs-dir", str(runs),
                     "--export", str(exported)]) == 0
        assert main(["rerun", "--config", str(exported), "--seeds", "2", "--name", "pg-rerun", *on_cluster]) == 0
        ray.shutdown()
        assert _finished(server.uri, "pg-rerun") == 2

        assert main(["robustness", "--config", "split_mnist_cl1", "--n-archs", "2", "--bins", "1", "--ratio-range",
                     "0.05", "1.0", "--name", "pg-rob", *on_cluster, *tiny]) == 0
        ray.shutdown()
        shutil.rmtree(runs / "sweeps")
        assert main(["robustness", "--plot-only", "--name", "pg-rob", "--tracking-uri", server.uri,
                     "--runs-dir", str(runs)]) == 0
        assert (runs / "sweeps" / "pg-rob" / "study.png").is_file()
    finally:
        ray.shutdown()
        cluster.shutdown()
        server.stop()
