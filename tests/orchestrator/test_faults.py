"""Fault tolerance on a real multi-node Ray (ray.cluster_utils.Cluster) and a real MLflow server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from hypercl_core.config import load_config
from orchestrator import sweep
from orchestrator.cli import main
from orchestrator.tracking import KIND, TRIAL_ID, embedded_uri
from tests.orchestrator.conftest import TINY_SWEEP
from tests.orchestrator.servers import MlflowServer

pytestmark = pytest.mark.slow


def _trial_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")


def _watch_runs(uri: str, name: str, act, timeout: float = 400) -> None:
    """Hand each trial run, as the store shows it, to `act` until it says it acted."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            runs = _trial_runs(uri, name)
        except Exception:  # the store is still being created
            continue
        if any(act(run) for run in runs):
            return


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
    folder = sweep.new_sweep_folder(tmp_path, spec)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    removed: dict[str, str] = {}

    def remove_the_node_under_a_trial_past_task_1(run) -> bool:
        where = run.data.tags.get("placement.target_hnet", "")
        # the trial's stored checkpoint, not the MLflow metric logged just after it, marks "task 1 done"
        checkpointed = (shared / "nodes" / "trials" / str(run.data.tags.get(TRIAL_ID)) / "checkpoint.pt").is_file()
        if doomed.node_id in where and checkpointed and run.info.status == "RUNNING":
            cluster.remove_node(doomed)
            removed["run"] = run.info.run_id
        return bool(removed)

    killer = threading.Thread(target=_watch_runs, args=(uri, "nodes", remove_the_node_under_a_trial_past_task_1),
                              daemon=True)
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


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server.uri
    server.stop()


def test_sweep_logs_to_a_tracking_server(tmp_path, mlflow_server, capsys, data_root):
    args = ["sweep", "--space", "smoke", "--config", "split_mnist_cl1", "--num-samples", "2", "--max-concurrent",
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
    # the same name again, its folder gone (as with the cluster): refused, or it would inherit t0000, t0001
    args[args.index("--runs-dir") + 1] = str(tmp_path / "elsewhere")
    assert main(args) == 2
    assert "already has a sweep named 'srv'" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def _each_task_logged_once(client: MlflowClient, run, tasks: int) -> None:
    for metric in ("task", "final_acc", "acc_task0", "during_acc"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == list(range(1, tasks + 1)), (metric, steps)


def _longer_config(folder: Path) -> str:
    """Three tasks long enough (a few seconds each here) that a kill lands inside one."""
    path = folder / "longer.yaml"
    path.write_text(load_config("split_mnist_cl1", [*TINY_SWEEP, "benchmark.num_tasks=3",
                                                    "train.iters_per_task=400"]).to_yaml())
    return str(path)


def test_worker_killed_mid_task_is_retried_from_its_last_finished_task(tmp_path, data_root):
    spec = sweep.plan_rerun(_longer_config(tmp_path), seeds=1, name="wk", max_concurrent=1, data_root=str(data_root))
    folder = sweep.new_sweep_folder(tmp_path, spec)
    uri = embedded_uri(folder)
    killed: dict[str, int] = {}

    def kill_the_worker_once_task_1_is_logged(run) -> bool:
        pid = run.data.tags.get("hypercl.worker_pid")
        if pid and run.data.metrics.get("task") == 1 and run.info.status == "RUNNING":
            os.kill(int(pid), signal.SIGKILL)
            killed["pid"] = int(pid)
        return bool(killed)

    killer = threading.Thread(target=_watch_runs, args=(uri, "wk", kill_the_worker_once_task_1_is_logged),
                              daemon=True)
    killer.start()
    try:
        outcome = sweep.start(spec, folder, address=None)
    finally:
        killer.join(timeout=5)
        ray.shutdown()
    assert killed, "the trial's worker was never seen running task 2"
    assert not outcome.interrupted and outcome.finished_trials == 1
    client = MlflowClient(uri)
    (run,) = _trial_runs(uri, "wk")
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["hypercl.resumed_from_task"]) == 1  # task 1 was not trained again
    assert int(run.data.tags["hypercl.worker_pid"]) != killed["pid"]  # a new worker finished it
    _each_task_logged_once(client, run, tasks=3)


def test_tracking_server_down_for_30s_mid_sweep_loses_and_doubles_nothing(tmp_path, data_root):
    server = MlflowServer(tmp_path)
    server.start()
    spec = sweep.plan_rerun(_longer_config(tmp_path), seeds=2, name="outage", max_concurrent=2,
                            data_root=str(data_root), tracking_uri=server.uri)
    folder = sweep.new_sweep_folder(tmp_path, spec)
    outage: dict[str, float] = {}

    def stop_for_30s_once_a_task_is_logged() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                if any(r.data.metrics.get("task") == 1 for r in _trial_runs(server.uri, "outage")):
                    break
            except Exception:
                continue
        server.stop()
        outage["stopped"] = time.time()
        time.sleep(30)
        server.start()
        outage["restarted"] = time.time()

    breaker = threading.Thread(target=stop_for_30s_once_a_task_is_logged, daemon=True)
    breaker.start()
    try:
        outcome = sweep.start(spec, folder, address=None)
        breaker.join(timeout=120)
        assert outage.get("restarted"), "the server was never stopped while trials ran"
        assert not outcome.interrupted and outcome.finished_trials == 2
        client = MlflowClient(server.uri)
        runs = _trial_runs(server.uri, "outage")
        assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
        logged_at = []
        for run in runs:
            _each_task_logged_once(client, run, tasks=3)
            assert {"results.json", "matrix.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
            logged_at += [m.timestamp / 1000 for m in client.get_metric_history(run.info.run_id, "task")]
        # a task ended while the server was down: its metrics waited (MLflow's client retries) and landed once
        assert any(outage["stopped"] < t < outage["restarted"] for t in logged_at), (outage, logged_at)
    finally:
        ray.shutdown()
        server.stop()
