"""`hypercl table` against hand-computed means and SEMs, on a real (SQLite) MLflow store written as trials write it."""

import math

import pytest
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from orchestrator.cli import main
from orchestrator.table import read_table
from orchestrator.tracking import KIND, PRESET_TAG, SweepTracker, TrialTracker, embedded_uri, log_metrics

# (preset, seed) -> final_acc
RUNS = {("split_mnist_cl2_ewc", 0): 64.0, ("split_mnist_cl2_ewc", 1): 66.0, ("split_mnist_cl2_ewc", 2): 68.5,
        ("split_mnist_cl2_si", 0): 70.0, ("split_mnist_cl2_si", 1): 71.0,
        ("split_mnist_cl3_ewc", 0): 19.5, ("split_mnist_cl3_si", 0): 20.5, ("split_mnist_cl3_si", 1): 19.5}


def record(folder, name, runs, overrides=(), kind="compare", tags=None):
    """A comparison's MLflow experiment: a parent run and one finished trial run per (preset, seed)."""
    uri = embedded_uri(folder / "sweeps" / name)
    (folder / "sweeps" / name).mkdir(parents=True)
    tracker = SweepTracker(uri, name)
    parent = tracker.parent_run(kind, tags={PRESET_TAG: "several"})
    for i, ((preset, seed), value) in enumerate(runs.items()):
        trial = TrialTracker(uri, tracker.experiment_id, parent, f"v{i:04d}", f"variant-{i}")
        cfg = load_config(preset, [f"seed={seed}", *overrides])
        trial.log_config(cfg.model_dump(), cfg.flat())
        trial.set_tags({PRESET_TAG: preset, **(tags or {})})
        log_metrics(trial.client, trial.run_id, {"final_acc": value}, step=5)
        trial.client.set_terminated(trial.run_id, "FINISHED")
    MlflowClient(uri).set_terminated(parent, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One store of RUNS for the tests that only read it (an MLflow SQLite store takes seconds to create)."""
    folder = tmp_path_factory.mktemp("table")
    record(folder, "cmp", RUNS)
    return folder


def sem(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def test_cells_are_means_and_sems_over_seeds_with_the_best_of_each_row_marked(runs_dir, tmp_path):
    table = read_table([(embedded_uri(runs_dir / "sweeps" / "cmp"), "cmp")], "final_acc", {})
    assert table.rows == ["SplitMNIST CL2", "SplitMNIST CL3"] and table.columns == ["Online EWC", "SI"]
    ewc = table.cells[("SplitMNIST CL2", "Online EWC")]
    assert ewc.mean == pytest.approx(66.1666667) and ewc.sem == pytest.approx(sem([64.0, 66.0, 68.5]))
    assert sorted(ewc.seeds) == [0, 1, 2] and ewc.note is None and ewc.reported == 64.32
    assert table.best("SplitMNIST CL2") == "SI"
    assert table.cells[("SplitMNIST CL3", "Online EWC")].sem == 0.0  # one seed

    out = tmp_path / "t.md"
    assert main(["table", "--runs-dir", str(runs_dir), "--name", "cmp", "--paper", "--out", str(out)]) == 0
    text = out.read_text()
    assert f"| SplitMNIST CL2 | 66.17 ± {sem([64.0, 66.0, 68.5]):.2f} (n=3) [paper 64.32] | **70.50 ± 0.50 (n=2) " \
           "[paper 65.36]** |" in text
    assert "| SplitMNIST CL3 | 19.50 ± 0.00 (n=1) [paper 19.96] | **20.00 ± 0.50 (n=2) [paper 19.99]** |" in text


def test_csv_and_latex_carry_the_same_cells(runs_dir, capsys):
    assert main(["table", "--runs-dir", str(runs_dir), "--name", "cmp", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,method,final_acc_mean,final_acc_sem,n,seeds,best,note"
    assert "SplitMNIST CL2,SI,70.5000,0.5000,2,0 1,1," in lines
    assert main(["table", "--runs-dir", str(runs_dir), "--name", "cmp", "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"SplitMNIST CL2 & $66.17 \pm 1.30$ & $\mathbf{70.50 \pm 0.50}$ \\" in tex


def test_the_best_of_a_loss_is_the_lowest(runs_dir):
    table = read_table([(embedded_uri(runs_dir / "sweeps" / "cmp"), "cmp")], "final_acc", {})
    table.metric = "final_mse"
    assert table.best("SplitMNIST CL2") == "Online EWC"


def test_a_config_that_is_not_the_preset_as_shipped_gets_a_note(tmp_path, capsys):
    record(tmp_path, "cmp", {("split_mnist_cl2_ewc", 0): 60.0}, overrides=["method.lam=5"])
    assert main(["table", "--runs-dir", str(tmp_path), "--name", "cmp"]) == 0
    out = capsys.readouterr().out
    assert "**60.00 ± 0.00 (n=1)** (1)" in out and "(1) preset split_mnist_cl2_ewc with method.lam=5.0 (in cmp)" in out


def test_tables_read_several_experiments_and_filter_by_tag(tmp_path):
    a = record(tmp_path, "a", {("split_mnist_cl2_ewc", 0): 60.0}, tags={"group": "x"})
    b = record(tmp_path, "b", {("split_mnist_cl2_si", 0): 61.0}, tags={"group": "y"})
    both = read_table([(a, "a"), (b, "b")], "final_acc", {})
    assert both.columns == ["Online EWC", "SI"]
    only = read_table([(a, "a"), (b, "b")], "final_acc", {"group": "y"})
    assert only.columns == ["SI"]


def test_two_configs_in_one_cell_are_refused(tmp_path, capsys):
    record(tmp_path, "a", {("split_mnist_cl2_ewc", 0): 60.0})
    record(tmp_path, "b", {("split_mnist_cl2_ewc", 1): 61.0}, overrides=["method.lam=5"])
    capsys.readouterr()
    assert main(["table", "--runs-dir", str(tmp_path), "--name", "a", "--name", "b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hypercl: error: Online EWC on SplitMNIST CL2 has runs of different configs")
    assert "\n" not in err and "Traceback" not in err


def test_a_seed_twice_in_one_cell_is_refused(tmp_path, capsys):
    record(tmp_path, "a", {("split_mnist_cl2_ewc", 0): 60.0})
    record(tmp_path, "b", {("split_mnist_cl2_ewc", 0): 61.0})
    capsys.readouterr()
    assert main(["table", "--runs-dir", str(tmp_path), "--name", "a", "--name", "b"]) == 2
    assert "has seed 0 twice" in capsys.readouterr().err


def test_runs_without_seeds_are_refused_in_one_line(tmp_path, capsys):
    uri = embedded_uri(tmp_path / "sweeps" / "bare")
    (tmp_path / "sweeps" / "bare").mkdir(parents=True)
    tracker = SweepTracker(uri, "bare")
    client = MlflowClient(uri)
    run = client.create_run(tracker.experiment_id, tags={KIND: "trial"}).info.run_id
    client.log_param(run, "method.name", "ewc")
    client.log_metric(run, "final_acc", 50.0)
    client.set_terminated(run, "FINISHED")
    capsys.readouterr()
    assert main(["table", "--runs-dir", str(tmp_path), "--name", "bare"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no seed param, and a table averages over seeds" in err


@pytest.mark.parametrize("argv, message", [
    (["--name", "missing"], "no sweep named 'missing'"),
    (["--name", "cmp", "--tag", "novalue"], "--tag takes KEY=VALUE"),
    (["--name", "cmp", "--tag", "group=none"], "no finished trial with final_acc in cmp with tag group=none"),
    (["--name", "cmp", "--out", "/proc/no/such/table.md"], "cannot write the table to /proc/no/such/table.md"),
])
def test_bad_table_requests_fail_in_one_line(runs_dir, capsys, argv, message):
    capsys.readouterr()
    assert main(["table", "--runs-dir", str(runs_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
