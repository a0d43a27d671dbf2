"""Shared fixtures: the real MNIST root and tiny configs that run in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# postgres_server / postgres_url: a throwaway PostgreSQL (tests/postgres.py)
pytest_plugins = ["tests.postgres"]

from hypercl_core.config import ExperimentConfig, load_config  # noqa: E402
from hypercl_core.data.mnist import resolve_data_root  # noqa: E402
from hypercl_core.methods import METHODS  # noqa: E402


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = resolve_data_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST expected under {root}/MNIST/raw (set HYPERCL_DATA)")
    return root


def tiny(preset: str = "split_mnist_cl1", **flat) -> ExperimentConfig:
    """A preset shrunk to a few steps and a small target, plus dotted overrides."""
    overrides = {
        "train.iters_per_task": 30,
        "target.hidden": [64],
        "hnet.hidden": [8],
        "hnet.chunk_dim": 4000,
        "hnet.temb_dim": 8,
        "hnet.cemb_dim": 8,
        "device": "cpu",
    }
    overrides.update(flat)
    return load_config(preset, [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()])


# A replay VAE small enough for seconds-long runs.
SMALL_REPLAY = ["replay.encoder_hidden=[64]", "replay.decoder_hidden=[32, 64]", "replay.latent_dim=8",
                "replay.hnet.chunk_dim=4000", "replay.hnet.temb_dim=8", "replay.hnet.cemb_dim=8", "device=cpu"]


def tiny_vae(*overrides: str, tasks: int = 3, iters: int = 40) -> ExperimentConfig:
    return load_config("class_mnist_vae", [*SMALL_REPLAY, "train.eval_batch_size=1000", f"benchmark.num_tasks={tasks}",
                                           f"train.iters_per_task={iters}", *overrides])


def tiny_with_replay(method: str, scenario: str, tasks: int = 2, *overrides: str) -> ExperimentConfig:
    """A SplitMNIST preset of a replay method (hnet_r, hnet_tir), shrunk like `tiny`."""
    small_hnet = ["hnet.hidden=[8]", "hnet.chunk_dim=4000", "hnet.temb_dim=8", "hnet.cemb_dim=8"]
    if "hnet" not in METHODS[method].reads:  # HNET+R's classifier is an ordinary network
        small_hnet = []
    return load_config(f"split_mnist_{scenario}_{method}", [*SMALL_REPLAY, *small_hnet, "target.hidden=[64]",
                                                            "train.iters_per_task=40", f"benchmark.num_tasks={tasks}",
                                                            *overrides])


def run_cut_after_first_task(cfg: ExperimentConfig, run_dir: Path, data_root: Path) -> None:
    """Start a run and interrupt it (Ctrl-C) right after its first task was checkpointed."""
    from hypercl_core.experiment import start_run  # noqa: PLC0415

    def stop(t: int, metrics: dict) -> None:
        if t == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, run_dir, data_root=str(data_root)).run(show_progress=False, on_task_end=stop)
