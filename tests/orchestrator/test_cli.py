"""The `hypercl` command explains itself: help and defaults, --version, completion, listings, `best --format`,
-q/-v, `run --print-config`, one spelling of --config, and one-line errors for bad input.

MLflow is real: a tiny SQLite store built in tmp, as sweeps leave it. Nothing here starts Ray or trains.
"""

from __future__ import annotations

import argparse
import fcntl
import csv
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hypercl_core.config import available_presets, load_config
from orchestrator import cli
from orchestrator.cli import build_parser, main
from orchestrator.console import set_verbosity
from orchestrator.listing import sweep_row
from orchestrator.tracking import KIND, PARENT, embedded_uri, encode_params

ROOT = Path(__file__).resolve().parents[2]
TRIAL_PARAMS = {"hnet.hidden": [10, 10], "hnet.activation": "elu", "method.beta": 0.01, "train.lr": 0.001}
ACCURACIES = {"t0": 90.0, "t1": 95.0, "t2": 92.0}  # the `done` sweep's finished trials
RATIOS = {"t0": 0.5, "t1": 0.25, "t2": 0.75}


@pytest.fixture(autouse=True)
def _default_verbosity():
    """-q/-v set hypercl's logger for the process: leave it as a plain run finds it."""
    yield
    set_verbosity(quiet=False, verbose=0)


def _hypercl(*args: str, env: dict[str, str] | None = None, module: str = "orchestrator.cli"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, **(env or {})}, timeout=120)


def _spec(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"name": folder.name, "metric": "final_acc", "mode": "max",
                                                       **fields}))


def _dead_pid() -> int:
    """The pid of a process that has ended: a driver killed without a chance to close its parent run."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A runs folder with one sweep of each state `hypercl sweeps` tells apart.

    done: finished, 3 of 4 trials (one failed); cut: a rerun whose driver died (parent still RUNNING),
    logged to done's store as to a server; new: folder only; broken: its store is not a database;
    garbled: its sweep.yaml is not YAML. `done` is the newest, so `best` without --name picks it.
    """
    root = tmp_path_factory.mktemp("cli") / "runs"
    sweeps = root / "sweeps"
    done = sweeps / "done"
    done.mkdir(parents=True)
    uri = embedded_uri(done)
    client = MlflowClient(uri)
    experiment = client.create_experiment("done", artifact_location=(done / "artifacts").resolve().as_uri())
    parent = client.create_run(experiment, run_name="sweep", tags={KIND: "sweep"}).info.run_id
    for key, accuracy in ACCURACIES.items():
        run = client.create_run(experiment, run_name=key, tags={KIND: "trial", PARENT: parent}).info.run_id
        client.log_batch(run, params=encode_params({**TRIAL_PARAMS, "seed": int(key[1:])}))
        client.log_metric(run, "final_acc", accuracy)
        client.log_metric(run, "compression_ratio", RATIOS[key])
        client.set_terminated(run, "FINISHED")
    failed = client.create_run(experiment, run_name="t3", tags={KIND: "trial", PARENT: parent}).info.run_id
    client.set_terminated(failed, "FAILED")
    client.set_terminated(parent, "FINISHED")

    cut_experiment = client.create_experiment("cut")
    cut_parent = client.create_run(cut_experiment, run_name="rerun", tags={KIND: "rerun"}).info.run_id
    seed0 = client.create_run(cut_experiment, run_name="v0", tags={KIND: "trial", PARENT: cut_parent}).info.run_id
    client.log_metric(seed0, "final_acc", 88.0)
    client.set_terminated(seed0, "FINISHED")
    _spec(sweeps / "cut", kind="rerun", variants=[{"seed": s} for s in range(3)], parent_run_id=cut_parent,
          tracking_uri=uri)
    (sweeps / "cut" / ".driver.lock").write_text(str(_dead_pid()))

    _spec(sweeps / "new", kind="sweep", num_samples=8)
    _spec(sweeps / "broken", kind="sweep", num_samples=2, parent_run_id="0" * 32)
    (sweeps / "broken" / "mlflow.db").write_text("not a database\n")
    (sweeps / "garbled").mkdir()
    (sweeps / "garbled" / "sweep.yaml").write_text("kind: [sweep\n")
    _spec(done, kind="sweep", num_samples=4, parent_run_id=parent, tracking_uri=uri)  # written last: the newest
    newest = max(p.stat().st_mtime for p in sweeps.glob("*/sweep.yaml"))
    os.utime(done / "sweep.yaml", (newest + 10, newest + 10))
    return root


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ---- help, defaults, version -----------------------------------------------------------------------------------


def test_every_option_of_every_command_has_help_that_says_its_default():
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"run", "presets", "spaces", "sweeps", "sweep", "best", "rerun", "robustness"} <= set(commands)
    for name, command in [("hypercl", parser), *commands.items()]:
        text = command.format_help()
        assert "(default: None)" not in text and "(default: [])" not in text, name
        formatter = command._get_formatter()
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings and action.nargs != 0 and not action.required:  # flags are off unless given
                shown = formatter._get_help_string(action)
                assert "default" in shown or "required" in shown, f"{name} {action.option_strings}: {shown}"


def test_top_level_help_describes_the_tool_and_its_three_workflows():
    text = build_parser().format_help()
    assert "The `hypercl` command." not in text and "hypernetworks" in text
    for example in ("hypercl sweep --space smoke --config split_mnist_cl1", "hypercl best --top 5 --export",
                    "hypercl rerun --config best.yaml --seeds 5", "hypercl robustness --config split_mnist_cl1",
                    "register-python-argcomplete hypercl"):
        assert example in text


def test_the_old_spellings_of_the_config_still_work_but_are_not_shown():
    parser = build_parser()
    assert parser.parse_args(["sweep", "--preset", "split_mnist_cl2", "--space", "smoke"]).config == "split_mnist_cl2"
    assert parser.parse_args(["robustness", "--preset", "split_mnist_cl1"]).config == "split_mnist_cl1"
    assert parser.parse_args(["rerun", "best.yaml"]).config_positional == "best.yaml"
    commands = _subparsers(parser)
    for name in ("sweep", "robustness", "rerun"):
        text = commands[name].format_help()
        assert "--preset" not in text and "CONFIG_POSITIONAL" not in text and "--config" in text


def test_version_is_the_installed_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hypercl {version('hypercl')}"


def test_python_dash_m_hypercl_is_the_command():
    proc = _hypercl("--version", module="hypercl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hypercl {version('hypercl')}"
    from hypercl import __version__

    assert __version__ == version("hypercl")


# ---- completion ---------------------------------------------------------------------------------------------


def test_completers_offer_presets_spaces_and_sweep_names(runs):
    offered = cli.complete_configs("split_mnist_cl3")
    assert {p for p in available_presets() if p.startswith("split_mnist_cl3")} <= set(offered)
    assert "split_mnist_cl1" not in offered
    assert "smoke" in cli.complete_spaces("sm")
    names = cli.complete_sweep_names("", parsed_args=argparse.Namespace(runs_dir=str(runs)))
    assert set(names) == {"done", "cut", "new", "broken", "garbled"} and names[-1] == "done"  # newest last
    folders = cli.complete_sweep_folders(str(runs / "sweeps" / "c"), parsed_args=argparse.Namespace(runs_dir=str(runs)))
    assert folders == [str(runs / "sweeps" / "cut")]


def test_shell_completion_protocol_lists_presets(tmp_path):
    """What bash does after `eval "$(register-python-argcomplete hypercl)"` and a tab."""
    line = "hypercl run --config split_mnist_cl3_h"
    out = tmp_path / "completions"
    proc = _hypercl(env={"_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
                         "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert set(out.read_text().split("\n")) == {"split_mnist_cl3_hnet_r", "split_mnist_cl3_hnet_tir",
                                                "split_mnist_cl3_hypermask"}


# ---- listings -----------------------------------------------------------------------------------------------


def test_presets_and_spaces_list_one_line_descriptions(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available_presets()
    described = dict(line.split(maxsplit=1) for line in lines)
    assert described["split_mnist_cl1"] == "SplitMNIST (5 tasks of 2 digits), task identity given, multi-head target."
    assert described["class_mnist_gan"].startswith("The hnet-protected GAN")  # not cut at "Fig. A8"
    assert all(len(text) <= 88 for text in described.values())
    assert main(["spaces"]) == 0
    spaces = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert spaces["smoke"] == "small local sweep around the paper's SplitMNIST settings"  # its description field
    assert {"paper_grid", "hypermask_grid"} <= set(spaces)


def test_header_summary_is_the_first_sentence_shortened(tmp_path):
    from orchestrator.listing import DESCRIPTION_WIDTH, header_summary

    short = tmp_path / "short.yaml"
    short.write_text("# A preset (paper Fig. 2, e.g. the\n# first). Then more.\nseed: 0\n# not the header\n")
    assert header_summary(short) == "A preset (paper Fig. 2, e.g. the first)."
    long = tmp_path / "long.yaml"
    long.write_text("# " + "word " * 60 + "\n")
    summary = header_summary(long)
    assert summary.endswith("...") and len(summary) <= DESCRIPTION_WIDTH
    (tmp_path / "bare.yaml").write_text("seed: 0\n")
    assert header_summary(tmp_path / "bare.yaml") == ""


def test_a_sweep_whose_driver_holds_its_lock_is_running_and_interrupted_once_it_lets_go(runs):
    folder = runs / "sweeps" / "cut"
    with (folder / ".driver.lock").open("a+") as handle:  # as orchestrator.sweep._lock holds it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sweep_row(folder).status == "running"
    assert sweep_row(folder).status == "interrupted"  # the lock went with its holder


def test_sweeps_lists_each_sweep_with_its_status_trials_and_best(runs, capsys):
    assert main(["sweeps", "--runs-dir", str(runs)]) == 0
    captured = capsys.readouterr()
    header, *lines = captured.out.splitlines()
    assert header.split() == ["name", "kind", "status", "trials", "finished", "best", "folder"]
    rows = {line.split()[0]: line for line in lines}
    assert list(rows)[-1] == "done"  # oldest first, as `best` picks the newest
    # trials: how many ended of the total (a failed one too); finished: those `best` ranks
    assert rows["done"].split()[1:7] == ["sweep", "finished", "4/4", "3", "final_acc", "95.0000"]
    assert rows["done"].endswith(str(runs / "sweeps" / "done"))
    assert rows["cut"].split()[1:7] == ["rerun", "interrupted", "1/3", "1", "final_acc", "88.0000"]
    assert rows["new"].split()[1:7] == ["sweep", "not", "started", "0/8", "0", "-"]
    assert "unreadable store (" in rows["broken"] and "?/2" in rows["broken"]
    assert "unreadable sweep.yaml (" in rows["garbled"]


def test_sweeps_without_any_is_a_hint_not_an_error(tmp_path, capsys):
    assert main(["sweeps", "--runs-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no sweeps under" in captured.err
    assert main(["sweeps", "-q", "--runs-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


# ---- best --format ------------------------------------------------------------------------------------------


def test_best_json_parses_and_carries_rank_value_run_id_params_and_ratio(runs, capsys):
    assert main(["best", "--name", "done", "--runs-dir", str(runs), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["sweep"], doc["metric"], doc["mode"]) == ("done", "final_acc", "max")
    assert [r["rank"] for r in doc["runs"]] == [1, 2, 3]
    assert [r["final_acc"] for r in doc["runs"]] == [95.0, 92.0, 90.0]
    assert [r["compression_ratio"] for r in doc["runs"]] == [0.25, 0.75, 0.5]
    client = MlflowClient(embedded_uri(runs / "sweeps" / "done"))
    for record in doc["runs"]:
        assert client.get_run(record["run_id"]).data.metrics["final_acc"] == record["final_acc"]
        assert record["hnet.hidden"] == [10, 10] and record["hnet.activation"] == "elu"
        assert record["method.beta"] == 0.01 and record["train.lr"] == 0.001
        assert record["hnet.chunk_dim"] is None  # a key param the run lacks


def test_best_csv_reads_back_the_same_records(runs, capsys):
    assert main(["best", "--name", "done", "--runs-dir", str(runs), "--format", "json", "--top", "2"]) == 0
    records = json.loads(capsys.readouterr().out)["runs"]
    assert main(["best", "--name", "done", "--runs-dir", str(runs), "--format", "csv", "--top", "2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2 == len(records)
    for row, record in zip(rows, records):
        assert int(row["rank"]) == record["rank"] and row["run_id"] == record["run_id"]
        assert float(row["final_acc"]) == record["final_acc"]
        assert float(row["compression_ratio"]) == record["compression_ratio"]
        assert json.loads(row["hnet.hidden"]) == [10, 10] and row["hnet.activation"] == "elu"
        assert row["hnet.chunk_dim"] == ""


def test_best_with_export_keeps_stdout_machine_readable(runs, tmp_path, capsys):
    exported = tmp_path / "best.yaml"
    assert main(["best", "--name", "done", "--runs-dir", str(runs), "--format", "json", "--export",
                 str(exported)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["runs"][0]["final_acc"] == 95.0
    assert f"hypercl rerun --config {exported}" in captured.err  # the hint, beside the data, not in it
    assert yaml.safe_load(exported.read_text())["hnet"]["hidden"] == [10, 10]


# ---- -q / -v ------------------------------------------------------------------------------------------------


def test_quiet_leaves_results_only_and_verbose_says_what_was_decided(runs, tmp_path, capsys):
    base = ["best", "--runs-dir", str(runs), "--export", str(tmp_path / "b.yaml")]
    assert main(base) == 0  # default: the result and the hint
    captured = capsys.readouterr()
    assert "best 3 of sweep done" in captured.out and "exported the best config" in captured.err
    assert "newest sweep" not in captured.err
    for quiet in (["-q", *base], [*base, "--quiet"]):  # before or after the subcommand
        assert main(quiet) == 0
        captured = capsys.readouterr()
        assert "best 3 of sweep done" in captured.out and captured.err == ""
    assert main([*base, "-v"]) == 0
    err = capsys.readouterr().err
    assert f"the newest sweep under {runs / 'sweeps'} is done" in err
    assert "ranking by the sweep's objective: final_acc (max)" in err


def test_verbosity_levels_of_hypercls_own_log(capsys):
    """What sweep progress and hints go through: -q keeps warnings (a failed trial), -v adds INFO."""
    from orchestrator.console import log, note

    def said() -> list[str]:
        note("a hint")
        log.info("a decision")
        log.warning("a failed trial")
        return capsys.readouterr().err.splitlines()

    assert said() == ["a hint", "a failed trial"]
    set_verbosity(quiet=True, verbose=0)
    assert said() == ["a failed trial"]
    set_verbosity(quiet=False, verbose=1)
    assert said() == ["a hint", "a decision", "a failed trial"]


def test_quiet_run_prints_its_result_and_nothing_else(tmp_path, capsys, data_root):
    tiny = ["benchmark.num_tasks=2", "train.iters_per_task=5", "target.hidden=[16]", "device=cpu"]
    args = ["run", "-q", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--name", "r",
            "--data-root", str(data_root), *[item for s in tiny for item in ("--set", s)]]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar, no "run folder:" line
    assert "final_acc" in captured.out and (tmp_path / "r" / "results.json").is_file()


# ---- run --print-config, rerun --set --------------------------------------------------------------------------


def test_print_config_prints_the_resolved_config_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--config", "split_mnist_cl1", "--set", "train.lr=0.01", "--set", "hnet.hidden=[5]"]
    assert main([*args, "--print-config", "--runs-dir", str(tmp_path / "runs")]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == load_config("split_mnist_cl1", ["train.lr=0.01", "hnet.hidden=[5]"]).model_dump()
    assert printed["train"]["lr"] == 0.01 and printed["hnet"]["hidden"] == [5]
    assert list(tmp_path.iterdir()) == []


def test_rerun_applies_set_on_top_of_its_config(tmp_path):
    from orchestrator.sweep import plan_rerun

    exported = tmp_path / "best.yaml"
    exported.write_text(load_config("split_mnist_cl1", ["train.lr=0.01"]).to_yaml())
    spec = plan_rerun(str(exported), 2, ["train.iters_per_task=7"], name="r")
    assert spec.base_config["train"]["lr"] == 0.01 and spec.base_config["train"]["iters_per_task"] == 7
    assert spec.variants == [{"seed": 0}, {"seed": 1}]


# ---- bad input: one line, exit 2, nothing written ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "the following arguments are required: COMMAND; see hypercl -h"),
        (["run"], "one of the arguments --config --resume is required; see hypercl run -h"),
        (["best", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["run", "--config", "split_mnist_cl1", "-q", "-v"], "not allowed with argument -q/--quiet"),
        (["sweeps", "--bogus"], "unrecognized arguments: --bogus"),
        (["rerun", "--seeds", "many"], "argument --seeds: invalid int value: 'many'"),
        (["run", "--resume", "RUNS/r", "--print-config"], "drop --print-config or pass --config"),
        (["run", "--config", "split_mnist_cl1", "--print-config", "--set", "train.lr=fast"], "config key 'train.lr'"),
        (["rerun", "--config", "split_mnist_cl1", "--set", "train.lr=fast"], "config key 'train.lr'"),
        (["rerun", "split_mnist_cl1", "--config", "split_mnist_cl2"], "pass one, as --config"),
        (["rerun"], "needs a config: --config"),
        (["sweep", "--space", "smoke"], "needs --space and --config"),
        (["sweep", "--resume", "RUNS/sweeps/s", "--set", "train.lr=0.1"], "drop --set"),
        (["robustness", "--resume", "RUNS/sweeps/s", "--config", "split_mnist_cl1"], "drop --config"),
        (["best", "--format", "json", "--top", "0"], "--top must be at least 1"),
    ],
)
def test_bad_cli_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, fragment):
    runs = tmp_path / "runs"
    argv = [arg.replace("RUNS", str(runs)) for arg in args]
    try:
        code = main([*argv, "--runs-dir", str(runs)] if argv else argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("hypercl: error: ") and fragment in lines[0], captured.err
    assert captured.out == "" and not runs.exists()
