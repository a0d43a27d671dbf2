"""Fixtures for orchestrator tests: a real local Ray, tiny sweeps on real MNIST."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture
def local_ray():
    """A fresh local Ray with 2 CPUs, shut down afterwards so tests stay independent."""
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
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
