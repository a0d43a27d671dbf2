"""`hypercl robustness` end to end: real local Ray, real MLflow, tiny trials on real MNIST."""

from __future__ import annotations

import csv
import io

import pytest
import ray
from matplotlib.collections import PathCollection
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from hypercl_core.errors import UserError
from orchestrator import robustness
from orchestrator.cli import main
from orchestrator.robustness import BINS_CSV, STUDY_CSV, STUDY_PNG, STUDY_YAML, Study
from orchestrator.tracking import KIND, PARENT, embedded_uri

TINY = ["--set", "benchmark.num_tasks=2", "--set", "train.iters_per_task=10", "--max-concurrent", "2"]


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.mark.slow
def test_tiny_study_end_to_end_and_plot_only_redraws_it_from_mlflow(tmp_path, capsys, data_root):
    args = ["robustness", "--config", "split_mnist_cl1", "--n-archs", "4", "--bins", "2", "--ratio-range", "0.05",
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


@pytest.mark.slow
def test_failed_architectures_are_listed_with_their_error(tmp_path, capsys, data_root):
    args = ["robustness", "--config", "split_mnist_cl1", "--n-archs", "1", "--bins", "1", "--runs-dir",
            str(tmp_path), "--name", "bad", "--set", "device=cuda:99", *TINY]
    assert main(args) == 1  # no architecture finished
    ray.shutdown()
    out = capsys.readouterr().out
    rows = _rows(tmp_path / "sweeps" / "bad" / STUDY_CSV)
    assert len(rows) == 1 and rows[0]["status"] == "FAILED" and "cuda:99" in rows[0]["error"]
    assert out.count("FAILED hidden=") == 1


@pytest.mark.parametrize("extra, message", [
    (["--set", "hnet.chunk_dim=100"], "conflicts with the study"),
    (["--ratio-range", "2", "1"], "need 0 < LO < HI"),
    (["--n-archs", "20000"], "lower --n-archs"),
    (["--bins", "0"], "--bins must be at least 1"),
    (["--set", "hnet.chunk_dim=null", "--set", "hnet.hidden=[5]"], "conflicts with the study"),
])
def test_bad_study_requests_exit_2_and_create_nothing(tmp_path, capsys, extra, message):
    args = ["robustness", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--name", "x", *extra]
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


def _arch(ratio: float, final: float | None, during: float | None = None, status: str = "FINISHED") -> dict:
    """A study row as robustness._row makes it from a trial run."""
    return {"run_id": f"r{ratio}-{final}", "status": status, "hidden_layers": 2, "hidden": "10,10", "cemb_dim": 8,
            "output_size": 1000, "ratio": ratio, "trained_ratio": ratio if status == "FINISHED" else None,
            "during_acc": final if during is None and final is not None else during, "final_acc": final,
            "wall_s": 20.0, "seed": 0, "error": "RuntimeError: boom" if status == "FAILED" else ""}


def _study(rows: list[dict], preset: str = "split_mnist_cl1") -> Study:
    """Three log bins over 0.01-1 (edges 0.01, 0.0464, 0.215, 1): the first one left empty."""
    config = load_config(preset, ["train.iters_per_task=300"])
    request = {"ratio_lo": 0.01, "ratio_hi": 1.0, "bins": 3, "bin_scale": "log", "seed": 0, "n_archs": len(rows)}
    return Study("robustness-x-20260101-000000", preset, config, request, rows)


ROWS = [_arch(0.05, 99.0), _arch(0.06, 98.0), _arch(0.07, 97.0), _arch(0.08, 50.0),  # bin 1: one never learned
        _arch(0.3, 90.0, 95.0), _arch(0.5, 80.0, 85.0),  # bin 2
        _arch(0.4, None, status="FAILED")]


def test_bins_report_median_and_interquartile_range_and_keep_empty_bins():
    stats = robustness.bin_stats(_study(ROWS))
    assert [b["n"] for b in stats] == [0, 4, 2]
    assert stats[0]["final_acc_median"] is None and stats[0]["final_acc_q1"] is None
    # 50, 97, 98, 99: the median ignores the one that never learned; the mean (86) would not
    assert stats[1]["final_acc_median"] == pytest.approx(97.5)
    assert (stats[1]["final_acc_q1"], stats[1]["final_acc_q3"]) == (pytest.approx(85.25), pytest.approx(98.25))
    assert stats[2]["during_acc_median"] == pytest.approx(90.0)
    assert all(b["final_acc_q3"] <= 100 for b in stats if b["n"])  # quartiles are values the data reach
    assert not any(key.endswith(("_mean", "_std")) for key in stats[0])


def test_the_table_the_csv_and_the_plot_agree_on_the_statistic(tmp_path):
    study = _study(ROWS)
    lines = robustness.summary_lines(study)
    assert "median [IQR]" in lines[0]
    assert "empty" in lines[1] and lines[1].split()[1] == "0"
    assert "97.500 [ 85.250,  98.250]" in lines[2]
    assert lines[-1].startswith("FAILED hidden=10,10") and "RuntimeError: boom" in lines[-1]
    robustness.write_study(study, tmp_path)
    header = (tmp_path / BINS_CSV).read_text().splitlines()[0].split(",")
    assert header[4:] == ["n", "final_acc_median", "final_acc_q1", "final_acc_q3", "during_acc_median",
                          "during_acc_q1", "during_acc_q3"]
    ax = robustness.study_figure(study).axes[0]
    final = next(c for c in ax.containers if c.get_label().startswith("final: median"))
    assert list(final.lines[0].get_ydata()) == pytest.approx([97.5, 85.0])


def test_plot_marks_n_empty_bins_chance_and_names_preset_and_iterations():
    fig = robustness.study_figure(_study(ROWS))
    ax = fig.axes[0]
    assert ax.get_title() == "split_mnist_cl1: 6 architectures, 300 iterations per task, 1 failed"
    assert [t.get_text() for t in ax.texts] == ["empty", "n=4", "n=2"]
    chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [50.0, 50.0]  # 1 of SplitMNIST's 2 classes
    dots = next(c for c in ax.collections if isinstance(c, PathCollection))
    assert len(dots.get_offsets()) == 6  # every finished architecture
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1  # beside the axes, over no data
    labels = [t.get_window_extent() for t in ax.texts]
    assert all(box.y0 >= axes.y1 for box in labels)  # above the frame: no cap or point is there
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])


def test_chance_follows_the_config_not_the_preset_name():
    ax = robustness.study_figure(_study(ROWS, "permuted_mnist10_cl1")).axes[0]
    chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert list(chance[0].get_ydata()) == [10.0, 10.0]  # 10-way heads


def test_a_study_folder_redraws_from_its_files_alone(tmp_path, capsys):
    study = _study(ROWS)
    written = robustness.write_study(study, tmp_path)
    assert {p.name for p in written} == {STUDY_CSV, BINS_CSV, STUDY_PNG, STUDY_YAML}
    before = {name: (tmp_path / name).read_text() for name in (STUDY_CSV, BINS_CSV)}
    (tmp_path / STUDY_PNG).unlink()
    loaded = robustness.load_study(tmp_path)
    assert loaded.rows == study.rows and loaded.config == study.config and loaded.preset == "split_mnist_cl1"
    assert robustness.main([str(tmp_path)]) == 0
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert (tmp_path / STUDY_PNG).stat().st_size > 10_000
    assert "97.500" in capsys.readouterr().out


def test_redrawing_a_folder_without_study_files_is_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="study.yaml is missing"):
        robustness.load_study(tmp_path)
    assert robustness.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
