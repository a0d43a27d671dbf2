"""Fixtures for orchestrator tests: a real local Ray, tiny sweeps on real MNIST."""

from __future__ import annotations

import pytest
import ray


def start_local_ray(num_gpus: int = 0) -> None:
    """A new local Ray with 2 CPUs (and logical GPUs), never an existing one: a plain `ray.init()`
    joins whatever $RAY_ADDRESS or /tmp/ray/ray_current_cluster names, so a cluster some other
    process left running on the machine would take the test over (and refuse `num_cpus`)."""
    ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=num_gpus, include_dashboard=False, logging_level="ERROR")


@pytest.fixture
def local_ray():
    """A fresh local Ray, shut down afterwards so tests stay independent."""
    start_local_ray()
    yield
    ray.shutdown()


TINY_SWEEP = [
    "benchmark.num_tasks=2",
    "train.iters_per_task=20",
    "target.hidden=[32]",
    "train.eval_batch_size=5000",
    "device=cpu",
]


@pytest.fixture
def mlflow_at():
    """Point MLflow's fluent API (mlflow.search_runs, ...) at a store for one test, and back afterwards:
    its tracking URI is process-wide, and a later test would read the wrong store."""
    import os

    import mlflow

    # set_tracking_uri also sets $MLFLOW_TRACKING_URI (the default of every --tracking-uri): restoring
    # get_tracking_uri()'s answer would leave the variable set to MLflow's default store for later tests.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(before)  # None unsets both
