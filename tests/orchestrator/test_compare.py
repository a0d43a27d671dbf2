"""`hypercl compare`: several presets over seeds on real local Ray and MLflow, each method as its own
actors, tagged so `hypercl table` reads them back; and the weight-penalty spaces."""

from __future__ import annotations

import pytest
import ray
from mlflow.tracking import MlflowClient

from hypercl_core.config import load_config
from orchestrator.cli import main
from orchestrator.sweep import plan_compare
from orchestrator.tracking import KIND, PRESET_TAG, decode_params, embedded_uri
from search_spaces.space import load_space

pytestmark = pytest.mark.slow
TINY = ["benchmark.num_tasks=2", "train.iters_per_task=5", "target.hidden=[16]", "train.eval_batch_size=5000",
        "device=cpu"]


def test_compare_runs_every_preset_over_seeds_and_tables_them(tmp_path, capsys, data_root):
    sets = [a for s in TINY for a in ("--set", s)]
    # half a CPU per actor: the SI trial (2 bundles) and the DGR trial (3) run side by side on 2 CPUs
    argv = ["compare", "--configs", "split_mnist_cl2_si", "split_mnist_cl2_dgr", "--seeds", "1", "--name", "cmp",
            "--runs-dir", str(tmp_path), "--data-root", str(data_root), "--max-concurrent", "2",
            "--cpus-per-subsystem", "0.5", *sets,
            "--set", "method.encoder_hidden=[16]", "--set", "method.decoder_hidden=[16]"]
    assert main(argv) == 2  # the VAE's sizes under --set are DGR's keys: --set must fit every compared preset
    err = capsys.readouterr().err
    assert "unknown config key 'method.encoder_hidden'" in err and "method si takes: name, c, xi" in err
    assert err.count("\n") == 1 and not (tmp_path / "sweeps" / "cmp").exists()
    argv = argv[:-4]
    assert main(argv) == 0
    ray.shutdown()
    out = capsys.readouterr().out
    assert "| SplitMNIST CL2 |" in out and "(n=1)" in out and "SI" in out and "DGR+distill" in out
    client = MlflowClient(embedded_uri(tmp_path / "sweeps" / "cmp"))
    experiment = client.get_experiment_by_name("cmp")
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'")
    seen = {(t.data.tags[PRESET_TAG], decode_params(t.data.params)["seed"]) for t in trials}
    assert seen == {("split_mnist_cl2_si", 0), ("split_mnist_cl2_dgr", 0)}
    dgr = [t for t in trials if t.data.tags[PRESET_TAG] == "split_mnist_cl2_dgr"]
    assert all("placement.replay_vae" in t.data.tags for t in dgr)  # its VAE had an actor of its own
    assert all(t.info.status == "FINISHED" and 0 <= t.data.metrics["final_acc"] <= 100 for t in trials)
    assert main(["table", "--name", "cmp", "--runs-dir", str(tmp_path), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and all(",1,0," in r for r in rows[1:])
    assert main(["sweeps", "--runs-dir", str(tmp_path)]) == 0  # no "best" over different methods: the table's way
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cmp "))
    assert "compare" in row and "per method: hypercl table --name cmp" in row and "final_acc" not in row


def test_compare_refuses_presets_scored_apart_or_repeated():
    from hypercl_core.errors import UserError

    with pytest.raises(UserError, match="regression1d is judged by final_mse"):
        plan_compare(["split_mnist_cl2_ewc", "regression1d"], 1)
    with pytest.raises(UserError, match="names split_mnist_cl2_ewc more than once"):
        plan_compare(["split_mnist_cl2_ewc", "split_mnist_cl2_ewc"], 1)
    spec = plan_compare(["split_mnist_cl1_ewc", "permuted_mnist10_cl1_si"], 2, name="c")
    assert [v["preset"] for v in spec.variants] == ["split_mnist_cl1_ewc"] * 2 + ["permuted_mnist10_cl1_si"] * 2
    assert [v["config"]["seed"] for v in spec.variants] == [0, 1, 0, 1]
    assert spec.num_tasks is None and spec.tasks_per_trial() == {"v0000": 5, "v0001": 5, "v0002": 10, "v0003": 10}
    assert spec.variant_order() == [0, 2, 1, 3]  # seed 0 of every preset first


@pytest.mark.parametrize("space, preset, key", [("ewc_grid", "split_mnist_cl2_ewc", "method.lam"),
                                                ("si_grid", "permuted_mnist10_cl3_si", "method.c")])
def test_the_penalty_spaces_sweep_their_strengths(space, preset, key):
    s = load_space(space)
    base = load_config(preset)
    s.check_against(base)
    cfg = s.materialize({key: 10.0}, base)
    assert cfg.flat()[key] == 10.0 and cfg.hnet is None  # no hypernetwork: no chunk to fit


@pytest.mark.parametrize("argv, message", [
    (["--configs", "split_mnist_cl2_ewc", "--set", "method.name=nope"], "method.name"),
    (["--configs", "no_such_preset"], "config 'no_such_preset' is neither a YAML file nor a preset"),
    (["--configs", "split_mnist_cl2_ewc", "--seeds", "0"], "--seeds must be at least 1"),
    (["--resume", "RUNS/sweeps/x", "--configs", "split_mnist_cl2_ewc", "--seeds", "2"], "drop --configs and --seeds"),
])
def test_bad_compare_requests_fail_in_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    argv = [a.replace("RUNS", str(tmp_path)) for a in argv]
    assert main(["compare", "--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_compare_refuses_two_configs_for_one_table_cell(tmp_path):
    from hypercl_core.errors import UserError

    own = tmp_path / "ewc.yaml"
    own.write_text("extends: split_mnist_cl2_ewc\nmethod: {lam: 5.0}\n")
    with pytest.raises(UserError, match="are both Online EWC on SplitMNIST CL2 with different configs"):
        plan_compare(["split_mnist_cl2_ewc", str(own)], 1)
    same = tmp_path / "same.yaml"
    same.write_text("extends: split_mnist_cl2_ewc\n")
    with pytest.raises(UserError, match="are the same config; give it once"):
        plan_compare(["split_mnist_cl2_ewc", str(same)], 1)


def test_each_compared_trial_asks_for_its_own_methods_actors():
    from orchestrator.actors import Placement
    from orchestrator.searcher import TRIAL_KEY
    from orchestrator.sweep import _trial_resources

    spec = plan_compare(["split_mnist_cl2_si", "split_mnist_cl2_dgr"], 1, name="c")
    resources = _trial_resources(spec, Placement())
    assert [len(resources({TRIAL_KEY: key}).bundles) for key in ("v0000", "v0001")] == [2, 3]  # trial + actors
