import numpy as np
import pytest
import torch

from hypercl_core.config import BenchmarkConfig, load_config
from hypercl_core.data.idx import read_idx
from hypercl_core.data.mnist import load_mnist
from hypercl_core.data.benchmarks import build_benchmark, require_data
from hypercl_core.data.tasks import permutations
from hypercl_core.errors import DataError

CPU = torch.device("cpu")


def test_idx_reader_reads_real_mnist(data_root):
    mnist = load_mnist(data_root)
    assert mnist.train_x.shape == (60000, 28, 28) and mnist.test_x.shape == (10000, 28, 28)
    assert mnist.train_y.shape == (60000,) and set(np.unique(mnist.test_y)) == set(range(10))


def test_idx_reader_rejects_truncated_file(tmp_path, data_root):
    raw = (data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    bad = tmp_path / "labels"
    bad.write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)


def test_missing_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value) and "--data-root" in str(info.value)


@pytest.mark.parametrize("preset", ["split_mnist_cl1", "permuted_mnist10_cl3", "class_mnist_vae",
                                    "split_mnist_cl2_hnet_tir"])
def test_require_data_checks_mnist_for_configs_that_read_it(tmp_path, data_root, preset):
    cfg = load_config(preset)
    assert require_data(cfg.benchmark, data_root) == data_root
    assert require_data(cfg.benchmark, str(data_root)) == data_root
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        require_data(cfg.benchmark, tmp_path)


def test_require_data_passes_a_config_that_reads_no_files(tmp_path):
    assert require_data(load_config("regression1d").benchmark, tmp_path / "nowhere") == tmp_path / "nowhere"


def test_split_mnist_tasks_hold_digit_pairs(data_root):
    bench = build_benchmark(BenchmarkConfig(name="split_mnist"), 0, CPU, str(data_root))
    assert bench.num_tasks == 5
    assert sum(t.num_train for t in bench.tasks) == 60000
    for t, task in enumerate(bench.tasks):
        assert set(task.y_train.unique().tolist()) == {0, 1}
        assert task.class_offset == 2 * t
        assert task.x_train.shape[1] == 784 and 0 <= task.x_train.min() and task.x_train.max() <= 1


def test_permuted_mnist_is_padded_and_permuted_by_seed(data_root):
    bench = build_benchmark(BenchmarkConfig(name="permuted_mnist", num_tasks=3), 7, CPU, str(data_root))
    first, second = bench.tasks[0], bench.tasks[1]
    assert first.perm is None and first.x_train.shape[1] == 1024
    x0, _ = first.train_batch(torch.arange(4))
    x1, _ = second.train_batch(torch.arange(4))
    assert torch.equal(x1, x0[:, second.perm])
    image = x0[0].view(32, 32)
    assert image[:2].abs().sum() == 0 and image[:, :2].abs().sum() == 0  # zero padding
    assert torch.equal(permutations(3, 1024, 7)[2], permutations(3, 1024, 7)[2])
    assert not torch.equal(permutations(3, 1024, 7)[2], permutations(3, 1024, 8)[2])


def test_regression_tasks_follow_the_polynomials():
    bench = build_benchmark(BenchmarkConfig(name="regression1d", num_tasks=3, noise_std=0.0), 0, CPU)
    task = bench.tasks[2]
    assert torch.allclose(task.y_train, (task.x_train - 3) ** 3)
    assert 2 <= task.x_train.min() and task.x_train.max() <= 4 and len(task.x_test) == 1000
