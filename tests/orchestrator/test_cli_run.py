"""The `hypercl run` command line: user mistakes end in one line and exit 2."""

import subprocess
import sys

import pytest

from orchestrator.cli import main


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


def test_run_end_to_end_prints_summary(tmp_path, data_root):
    proc = _hypercl("run", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--name", "x",
                    "--no-progress", "--data-root", str(data_root), "--set", "benchmark.num_tasks=2",
                    "--set", "train.iters_per_task=10", "--set", "target.hidden=[32]", "--set", "device=cpu")
    assert proc.returncode == 0, proc.stderr
    assert "final_acc" in proc.stdout and (tmp_path / "x" / "results.json").is_file()
