"""The `hypercl run` command line: user mistakes end in one line and exit 2."""

import subprocess
import sys

import pytest
import torch
import yaml

from hypercl_core.config import load_config
from orchestrator.cli import main
from tests.conftest import run_cut_after_first_task


def _hypercl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "hnet.hiden=[5]"], "unknown config key 'hnet.hiden'"),
        (["--set", "train.lr=fast"], "config key 'train.lr'"),
        (["--set", "method.beta=-1"], "config key 'method.beta'"),
        (["--set", "target.hidden=[]"], "config key 'target.hidden'"),
        (["--set", "hnet.chunk_dim=0"], "config key 'hnet.chunk_dim'"),
        (["--set", "replay.decoder_hiden=[5]"], "valid keys in replay: model, encoder_hidden"),
        (["--set", "device=cuda:99"], "device 'cuda:99' requested"),  # no CUDA, or not 100 GPUs
    ],
)
def test_bad_config_values_exit_2_with_one_line(tmp_path, capsys, args, fragment):
    code = main(["run", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert fragment in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written for a rejected config


def test_missing_data_is_one_line_without_traceback(tmp_path):
    proc = _hypercl("run", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--data-root",
                    str(tmp_path / "nowhere"), "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hypercl: error: MNIST file") and "train-images-idx3-ubyte" in last


def test_unknown_preset_and_bad_resume(tmp_path, capsys):
    assert main(["run", "--config", "nope"]) == 2
    assert "presets:" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_resume_changes_only_the_device(tmp_path, data_root, capsys):
    """A run from a GPU machine resumes on a CPU with --set device=cpu; nothing else can change."""
    run = tmp_path / "r"
    cfg = load_config("split_mnist_cl1", ["benchmark.num_tasks=2", "train.iters_per_task=5", "target.hidden=[16]",
                                          "hnet.chunk_dim=2000", "device=cpu"])
    run_cut_after_first_task(cfg, run, data_root)
    written = yaml.safe_load((run / "config.yaml").read_text())
    resume = ["run", "--resume", str(run), "--data-root", str(data_root), "--no-progress"]

    assert main([*resume, "--set", "train.lr=1"]) == 2
    assert "only the device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        (run / "config.yaml").write_text(yaml.safe_dump({**written, "device": "cuda"}))
        assert main(resume) == 2
        assert "CUDA is not available here" in capsys.readouterr().err
    assert main([*resume, "--set", "device=cpu"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text()) == written
    assert (run / "results.json").is_file()


def test_resume_of_a_broken_config_is_one_line(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("seed: [0\n")
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and len(err.splitlines()) == 1


def test_run_end_to_end_prints_summary(tmp_path, data_root):
    proc = _hypercl("run", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--name", "x",
                    "--no-progress", "--data-root", str(data_root), "--set", "benchmark.num_tasks=2",
                    "--set", "train.iters_per_task=10", "--set", "target.hidden=[32]", "--set", "device=cpu")
    assert proc.returncode == 0, proc.stderr
    assert "final_acc" in proc.stdout and (tmp_path / "x" / "results.json").is_file()


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "- a list\n", "train: {lr: 0.01}\n"])
def test_an_empty_config_file_is_one_line_and_trains_nothing(tmp_path, capsys, data_root, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    # The overrides keep the run short should the file still be accepted.
    code = main(["run", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "--data-root", str(data_root),
                 "--no-progress", "--set", "benchmark.num_tasks=1", "--set", "train.iters_per_task=1"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"hypercl: error: {path}")
    assert "hypercl presets" in err and captured.out == ""
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_refused_before_a_run_folder_or_progress_bar(tmp_path, capsys):
    empty = tmp_path / "no_mnist_here"
    empty.mkdir()
    code = main(["run", "--config", "split_mnist_cl1", "--data-root", str(empty), "--runs-dir", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hypercl: error: MNIST file") and str(empty) in lines[0]
    assert not (tmp_path / "runs").exists()


def test_resume_with_missing_data_changes_nothing(tmp_path, data_root, capsys):
    run = tmp_path / "r"
    cfg = load_config("split_mnist_cl1", ["benchmark.num_tasks=2", "train.iters_per_task=2", "target.hidden=[16]",
                                          "hnet.chunk_dim=2000", "device=cpu"])
    run_cut_after_first_task(cfg, run, data_root)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(["run", "--resume", str(run), "--data-root", str(tmp_path / "nowhere"), "--set", "device=cpu"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "MNIST file" in captured.err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
