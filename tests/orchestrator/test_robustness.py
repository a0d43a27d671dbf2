"""`hypercl robustness` end to end: real local Ray, real MLflow, tiny trials on real MNIST."""

from __future__ import annotations

import csv
import io

import pytest
import ray
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.robustness import STUDY_CSV, STUDY_PNG
from orchestrator.tracking import KIND, PARENT, embedded_uri

pytestmark = pytest.mark.slow

TINY = ["--set", "benchmark.num_tasks=2", "--set", "train.iters_per_task=10", "--max-concurrent", "2"]


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_tiny_study_end_to_end_and_plot_only_redraws_it_from_mlflow(tmp_path, capsys, data_root):
    args = ["robustness", "--preset", "split_mnist_cl1", "--n-archs", "4", "--bins", "2", "--ratio-range", "0.05",
            "1.0", "--runs-dir", str(tmp_path), "--name", "rb", *TINY]
    assert main(args) == 0
    ray.shutdown()
    out = capsys.readouterr().out
    assert "ratio bin" in out and "wrote" in out
    folder = tmp_path / "sweeps" / "rb"
    rows = _rows(folder / STUDY_CSV)
    assert len(rows) == 4 and all(r["status"] == "FINISHED" for r in rows)
    for row in rows:
        assert 0.05 <= float(row["ratio"]) <= 1.0
        assert row["ratio"] == row["trained_ratio"]  # predicted before training == counted on the trained model
        assert 0 <= float(row["final_acc"]) <= 100 and float(row["wall_s"]) > 0
        assert int(row["hidden_layers"]) == len(row["hidden"].split(","))
    # stratified: two bins of two
    assert sum(float(r["ratio"]) < (0.05 * 1.0) ** 0.5 for r in rows) == 2
    assert (folder / STUDY_PNG).stat().st_size > 10_000

    client = MlflowClient(embedded_uri(folder))
    experiment = client.get_experiment_by_name("rb")
    parent = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'robustness'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.params["study.bins"] == "2"
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {STUDY_CSV, STUDY_PNG}
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")
    assert len(trials) == 4 and all(t.data.tags[PARENT] == parent[0].info.run_id for t in trials)

    original = (folder / STUDY_CSV).read_text()
    (folder / STUDY_CSV).unlink()
    (folder / STUDY_PNG).unlink()
    assert main(["robustness", "--plot-only", "--name", "rb", "--runs-dir", str(tmp_path)]) == 0
    assert (folder / STUDY_CSV).read_text() == original
    assert (folder / STUDY_PNG).is_file()


def test_failed_architectures_are_listed_with_their_error(tmp_path, capsys, data_root):
    args = ["robustness", "--preset", "split_mnist_cl1", "--n-archs", "2", "--bins", "1", "--runs-dir",
            str(tmp_path), "--name", "bad", "--set", "device=cuda:99", *TINY]
    assert main(args) == 1  # no architecture finished
    ray.shutdown()
    out = capsys.readouterr().out
    rows = _rows(tmp_path / "sweeps" / "bad" / STUDY_CSV)
    assert len(rows) == 2 and all(r["status"] == "FAILED" and r["error"] for r in rows)
    assert out.count("FAILED hidden=") == 2


@pytest.mark.parametrize("extra, message", [
    (["--set", "hnet.chunk_dim=100"], "conflicts with the study"),
    (["--ratio-range", "2", "1"], "need 0 < LO < HI"),
    (["--n-archs", "20000"], "lower --n-archs"),
    (["--bins", "0"], "--bins must be at least 1"),
    (["--set", "hnet.chunk_dim=null", "--set", "hnet.hidden=[5]"], "conflicts with the study"),
])
def test_bad_study_requests_exit_2_and_create_nothing(tmp_path, capsys, extra, message):
    args = ["robustness", "--preset", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--name", "x", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "sweeps").exists()


def test_plot_only_and_resume_refuse_what_is_not_a_study(tmp_path, capsys):
    assert main(["robustness", "--plot-only", "--runs-dir", str(tmp_path)]) == 2
    assert "--plot-only needs --name" in capsys.readouterr().err
    assert main(["robustness", "--plot-only", "--name", "nosuch", "--runs-dir", str(tmp_path)]) == 2
    assert "no sweep named 'nosuch'" in capsys.readouterr().err
    assert main(["robustness", "--resume", str(tmp_path)]) == 2
    assert "is not a sweep folder" in capsys.readouterr().err
