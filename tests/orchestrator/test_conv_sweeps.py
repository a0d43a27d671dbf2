"""Sweeps and the robustness study on a conv target, unchanged: real local Ray and MLflow, an
hnet-generated ResNet-8 on split CIFAR-10/100 files written here, the compression bound from
the target's own shapes."""

from __future__ import annotations

import csv
import io

import pytest
import ray
from mlflow.tracking import MlflowClient

from hypercl_core.accounting import count_params
from hypercl_core.config import config_from_flat
from orchestrator.cli import main
from orchestrator.robustness import STUDY_CSV
from orchestrator.tracking import KIND, decode_params, embedded_uri
from tests.cifar_files import write_cifar

pytestmark = pytest.mark.slow
TINY_CONV = ["benchmark.num_tasks=2", "target.depth=8", "train.epochs_per_task=null", "train.iters_per_task=4",
             "train.eval_batch_size=64", "device=cpu"]


def _args(root, *items: str) -> list[str]:
    return ["--config", "split_cifar_resnet32", "--data-root", str(root / "data"), "--runs-dir", str(root / "runs"),
            "--max-concurrent", "2", *[a for s in [*TINY_CONV, *items] for a in ("--set", s)]]


def test_a_sweep_and_a_robustness_study_on_resnet(tmp_path, capsys):
    write_cifar(tmp_path / "data")
    # the smoke space keeps the preset's chunk: give one that fits ResNet-8's 76,180 weights
    assert main(["sweep", "--space", "smoke", "--num-samples", "2", "--name", "conv",
                 *_args(tmp_path, "hnet.chunk_dim=1000")]) == 0  # its local Ray stays up for the study below
    client = MlflowClient(embedded_uri(tmp_path / "runs" / "sweeps" / "conv"))
    experiment = client.get_experiment_by_name("conv")
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    for run in trials:
        params = decode_params(run.data.params)
        assert params["target.name"] == "resnet" and params["benchmark.name"] == "split_cifar"
        cfg = config_from_flat(params, saved=True)  # what `best --export` rebuilds
        assert run.data.metrics["compression_ratio"] == pytest.approx(count_params(cfg).compression_ratio)
        assert 0 <= run.data.metrics["final_acc"] <= 100

    study = ["robustness", "--n-archs", "2", "--bins", "1", "--ratio-range", "0.05", "1.0", "--name", "rb"]
    assert main([*study, *_args(tmp_path)]) == 0  # architectures, chunks included, within the ratio range
    ray.shutdown()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "runs" / "sweeps" / "rb" / STUDY_CSV).read_text())))
    assert len(rows) == 2 and all(r["status"] == "FINISHED" and r["ratio"] == r["trained_ratio"] for r in rows)
    assert "ratio bin" in capsys.readouterr().out
