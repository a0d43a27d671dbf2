"""`hypercl plot`: a sweep's objective per searched param and vs compression ratio, from a real (SQLite) MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from orchestrator.cli import main
from orchestrator.sweep_plot import PLOT_PNG, read_trials, searched_panels, sweep_figure
from orchestrator.tracking import (
    END_REASON,
    INFEASIBLE_TAG,
    KIND,
    PARENT,
    STOPPED_BY_SCHEDULER,
    TRIAL_ID,
    embedded_uri,
    encode_params,
    log_metrics,
)

NAME = "sw"
# (hnet.hidden, hnet.activation, train.lr, tasks learned, status, final_acc after its last task, ratio)
TRIALS = [
    ([10, 10], "elu", 1e-4, 5, "FINISHED", 97.0, 0.05),
    ([50, 50], "relu", 1e-3, 5, "FINISHED", 99.0, 0.3),
    ([100], "elu", 1e-2, 5, "FINISHED", 90.0, 1.2),
    ([50, 50], "elu", 1e-2, 2, "KILLED", 99.5, 0.3),  # stopped by ASHA after task 2
    ([10, 10], "relu", 1e-3, 1, "FAILED", 60.0, 0.05),
    ([100], "relu", 1e-4, 3, "RUNNING", 95.0, 1.2),  # still learning
]


def _store(folder: Path, trials=TRIALS, infeasible: int = 1) -> str:
    """A sweep's experiment as the sweep driver and its trials leave it (orchestrator.sweep, trial,
    progress): a parent run with the objective's tags; trials with the config as params, a batch of
    metrics per task, the ratio tag; an infeasible trial with only its tags."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = embedded_uri(folder)
    client = MlflowClient(uri)
    experiment = client.create_experiment(NAME, artifact_location=(folder / "artifacts").resolve().as_uri())
    parent = client.create_run(experiment, run_name="sweep",
                               tags={KIND: "sweep", "hypercl.metric": "final_acc", "hypercl.mode": "max"}).info.run_id
    for i, (hidden, activation, lr, tasks, status, final, ratio) in enumerate(trials):
        cfg = load_config("split_mnist_cl1", [f"hnet.hidden={hidden}", f"hnet.activation={activation}",
                                              f"train.lr={lr}"])
        run = client.create_run(experiment, run_name=f"trial-t{i}",
                                tags={KIND: "trial", PARENT: parent, TRIAL_ID: f"t{i}"}).info.run_id
        client.log_batch(run, params=encode_params(cfg.flat()),
                         tags=[RunTag("compression_ratio", f"{ratio:.6f}")])
        for task in range(1, tasks + 1):
            score = final if task == tasks else 80.0
            log_metrics(client, run, {"task": task, "final_acc": score, "during_acc": score,
                                      "compression_ratio": ratio, "infeasible": 0}, step=task)
        if status == "KILLED":
            client.set_tag(run, END_REASON, STOPPED_BY_SCHEDULER)
        if status != "RUNNING":  # a run is created RUNNING
            client.set_terminated(run, status)
    for i in range(infeasible):
        run = client.create_run(experiment, run_name=f"trial-x{i}",
                                tags={KIND: "trial", PARENT: parent, TRIAL_ID: f"x{i}",
                                      INFEASIBLE_TAG: "no chunk size meets the compression bound",
                                      "hypercl.sample": '{"hnet.hidden": "[100, 100]"}'}).info.run_id
        client.set_terminated(run, "KILLED")
    return uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """runs dir and tracking URI of the sweep of TRIALS, shared: the tests below only add artifacts."""
    runs_dir = tmp_path_factory.mktemp("runs")
    return runs_dir, _store(runs_dir / "sweeps" / NAME)


def _trials(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(NAME)
    return read_trials(client, experiment.experiment_id, NAME, "final_acc")


def test_trials_are_classified_from_status_tags_and_tasks_learned(store):
    parent, trials = _trials(store[1])
    assert parent is not None
    states = sorted(t.state for t in trials)
    assert states == ["failed", "finished", "finished", "finished", "infeasible", "stopped", "unfinished"]
    stopped = next(t for t in trials if t.state == "stopped")
    assert stopped.value == 99.5 and stopped.params["hnet.hidden"] == [50, 50]  # decoded, not JSON text
    assert next(t for t in trials if t.state == "infeasible").params == {}


def test_the_searched_params_are_those_that_vary(store):
    _, trials = _trials(store[1])
    panels = {p.key: p for p in searched_panels([t for t in trials if t.params])}
    assert set(panels) == {"hnet.activation", "hnet.hidden", "train.lr"}
    assert panels["train.lr"].categories is None and panels["train.lr"].log  # 1e-4 .. 1e-2
    assert panels["hnet.activation"].categories == ["elu", "relu"]
    assert panels["hnet.hidden"].categories == ["[10, 10]", "[50, 50]", "[100]"]


def test_figure_has_a_panel_per_searched_param_and_one_for_the_ratio(store):
    _, trials = _trials(store[1])
    fig = sweep_figure(NAME, "final_acc", "max", trials)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["hnet.activation", "hnet.hidden", "train.lr", "compression ratio"]
    assert axes[2].get_xscale() == "log" and axes[3].get_xscale() == "log"  # 0.05 .. 1.2: more than 10x
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["[10, 10]", "[50, 50]", "[100]"]
    by_label = {c.get_label(): c for c in axes[3].collections}
    assert sum(len(c.get_offsets()) for c in by_label.values()) == 6  # the infeasible one has nothing to draw
    stopped = by_label["stopped early by ASHA (score after its last task)"]
    assert len(stopped.get_offsets()) == 1
    assert len(stopped.get_facecolors()) == 0 and len(stopped.get_edgecolors()) == 1  # hollow: an outline only
    assert len(by_label["finished every task"].get_facecolors()) == 1  # filled
    assert "1 infeasible" in fig.get_suptitle() and "1 stopped early" in fig.get_suptitle()


def test_hypercl_plot_writes_the_png_into_the_sweep_folder_and_logs_it(store, tmp_path, capsys):
    runs_dir, uri = store
    assert main(["plot", "--name", NAME, "--runs-dir", str(runs_dir)]) == 0
    png = runs_dir / "sweeps" / NAME / PLOT_PNG
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in capsys.readouterr().out
    client = MlflowClient(uri)
    parent, _ = _trials(uri)
    assert PLOT_PNG in {a.path for a in client.list_artifacts(parent)}
    out = tmp_path / "elsewhere" / "plot.png"
    assert main(["plot", "--name", NAME, "--runs-dir", str(runs_dir), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert out.is_file()


def test_a_missing_sweep_is_one_line_and_writes_nothing(store, tmp_path, capsys):
    assert main(["plot", "--name", "nosuch", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no sweep named 'nosuch'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "sweeps").exists()
    # a store that holds other sweeps
    assert main(["plot", "--name", "other", "--runs-dir", str(tmp_path), "--tracking-uri", store[1]]) == 2
    assert f"sweeps there: {NAME}" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("infeasible, message", [(0, "has no trials yet"), (2, "has logged 'final_acc'")])
def test_a_sweep_with_nothing_to_draw_is_one_line_and_writes_nothing(tmp_path, capsys, infeasible, message):
    """No trial at all, or only architectures rejected before training (no score)."""
    folder = tmp_path / "sweeps" / NAME
    _store(folder, trials=[], infeasible=infeasible)
    capsys.readouterr()  # MLflow's lines from creating the store
    assert main(["plot", "--name", NAME, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (folder / PLOT_PNG).exists()


@pytest.mark.parametrize("out, message", [("plot.txt", "not a figure file"), ("folder.png", "is a folder"),
                                          ("file/plot.png", "cannot be written to")])
def test_an_out_path_no_figure_can_go_to_is_one_line_and_writes_nothing(store, tmp_path, capsys, out, message):
    runs_dir, uri = store
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("a file, not a folder\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["plot", "--name", NAME, "--runs-dir", str(runs_dir), "--tracking-uri", uri,
                 "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
