"""Fault tolerance on a real multi-node Ray (ray.cluster_utils.Cluster) and a real MLflow server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from orchestrator import sweep
from orchestrator.cli import main
from orchestrator.tracking import KIND, TRIAL_ID
from tests.orchestrator.conftest import TINY_SWEEP

pytestmark = pytest.mark.slow


def _trial_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")


def test_worker_node_removed_mid_trial_and_every_trial_completes(tmp_path, data_root):
    # The head takes no trials, so the two trials run one on each worker node.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    overrides = [*TINY_SWEEP, "train.iters_per_task=150"]
    shared = tmp_path / "shared"  # what --storage names on a real cluster (s3://..., NFS)
    spec = sweep.plan_sweep("smoke", "split_mnist_cl1", overrides, name="nodes", num_samples=2,
                            max_concurrent=2, data_root=str(data_root), gpus_per_subsystem=0, storage=str(shared))
    folder = sweep.new_sweep_folder(tmp_path, "nodes")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    removed: dict[str, str] = {}

    def remove_when_a_trial_on_it_finished_task_1() -> None:
        deadline = time.time() + 400
        while time.time() < deadline and not removed:
            time.sleep(1)
            try:
                runs = _trial_runs(uri, "nodes")
            except Exception:  # the store is still being created
                continue
            for run in runs:
                where = run.data.tags.get("placement.target_hnet", "")
                trial_id = run.data.tags.get(TRIAL_ID)
                # Tune's checkpoint of task 1, not the MLflow metric logged just before it, marks "task 1 done"
                checkpointed = any((shared / "nodes").glob(f"run_trial_{trial_id}_*/checkpoint_000000"))
                if doomed.node_id in where and checkpointed and run.info.status == "RUNNING":
                    cluster.remove_node(doomed)
                    removed["run"] = run.info.run_id

    killer = threading.Thread(target=remove_when_a_trial_on_it_finished_task_1, daemon=True)
    killer.start()
    try:
        sweep.start(spec, folder, address=cluster.address)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
    assert removed, "no trial ran on the node to be removed"
    runs = _trial_runs(uri, "nodes")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    retried = next(r for r in runs if r.info.run_id == removed["run"])
    assert int(retried.data.tags["hypercl.resumed_from_task"]) >= 1  # restarted after task 1, not at task 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("mlflow server did not come up")
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def test_sweep_logs_to_a_tracking_server(tmp_path, mlflow_server, capsys, data_root):
    args = ["sweep", "--space", "smoke", "--preset", "split_mnist_cl1", "--num-samples", "2", "--max-concurrent",
            "2", "--runs-dir", str(tmp_path / "runs"), "--name", "srv", "--tracking-uri", mlflow_server]
    for item in TINY_SWEEP:
        args += ["--set", item]
    assert main(args) == 0
    ray.shutdown()
    assert not (tmp_path / "runs" / "sweeps" / "srv" / "mlflow.db").exists()  # nothing local
    runs = _trial_runs(mlflow_server, "srv")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    client = MlflowClient(mlflow_server)
    assert "matrix.png" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    capsys.readouterr()
    assert main(["best", "--name", "srv", "--tracking-uri", mlflow_server, "--top", "2"]) == 0
    assert runs[0].info.run_id in capsys.readouterr().out
