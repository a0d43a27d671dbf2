"""Conv targets in whole runs on CIFAR-format files written here: split CIFAR-10/100 through an
hnet-generated ResNet and a HyperMask ZenkeNet, per-task batch-norm statistics through a
checkpoint, augmentation seeded per task, epochs per task, and one-line errors."""

import subprocess
import sys

import pytest
import torch

from hypercl_core.config import load_config
from hypercl_core.data.benchmarks import build_benchmark
from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner
from hypercl_core.methods.hypermask import masked
from hypercl_core.schedule import lr_factor, task_steps
from hypercl_core.seeding import task_generator
from tests.cifar_files import C100_TRAIN, PER_FILE, write_cifar
from tests.conftest import run_cut_after_first_task

TINY_CONV = ["benchmark.num_tasks=2", "target.depth=8", "hnet.chunk_dim=3000", "train.epochs_per_task=null",
             "train.iters_per_task=6", "train.eval_batch_size=64", "device=cpu"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root)
    return root


def tiny_resnet(*overrides: str):
    return load_config("split_cifar_resnet32", [*TINY_CONV, *overrides])


def test_hnet_resnet_run_keeps_batch_norm_statistics_per_task_and_resumes_exactly(tmp_path, cifar_root):
    cfg = tiny_resnet()
    whole = start_run(cfg, tmp_path / "whole", data_root=str(cifar_root)).run(show_progress=False)
    assert set(whole["matrices"]) == {"acc_task_given", "acc_task_inferred", "task_inference_acc"}
    assert whole["params"]["target_weights"] == 74_880 + 2 * 650  # ResNet-8 with 2 heads of 10
    state = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["learner"]["norm"]
    means = state["bn0.running_mean"]
    assert means.shape == (2, 16) and not torch.equal(means[0], means[1])  # each task its own statistics
    assert not torch.equal(means[1], torch.zeros(16))

    run_cut_after_first_task(cfg, tmp_path / "cut", cifar_root)
    resumed = resume_run(tmp_path / "cut", data_root=str(cifar_root)).run(show_progress=False)
    assert resumed["matrices"] == whole["matrices"]  # task 1's statistics came back from the checkpoint


def test_evaluation_uses_each_tasks_own_statistics(cifar_root):
    learner = build_learner(tiny_resnet(), str(cifar_root))
    learner.learn_task(0)
    learner.learn_task(1)
    x, _ = next(learner.bench.tasks[0].test_batches(16))
    weights = learner.generated_weights(1)

    def logits():
        return learner.target(x, weights[0], 0, task=0)

    own, stats = logits(), learner.target.norm_state()
    learner.target.load_norm_state({k: v.flip(0) for k, v in stats.items()})  # task 0 with task 1's statistics
    assert not torch.allclose(logits(), own)
    learner.target.load_norm_state(stats)
    assert torch.equal(logits(), own)
    batched = learner.target(x, weights, torch.arange(2), task=torch.arange(2))  # HNET+ENT's pass
    assert torch.allclose(batched[0], own, atol=1e-5)


def test_hypermask_masks_conv_kernels_and_leaves_output_bias_and_batch_norm(tmp_path, cifar_root):
    cfg = load_config("split_cifar_resnet32", [*TINY_CONV, "method.name=hypermask", "hnet.chunk_dim=null",
                                               "hnet.hidden=[4]"])
    learner = build_learner(cfg, str(cifar_root))
    roles = {s.role for s in learner.target.param_specs if not masked(s)}
    assert roles == {"bias", "bn_scale", "bn_shift"}  # the output bias and every batch-norm parameter
    masks = learner.masks(learner.hnet(torch.randn(1, cfg.hnet.temb_dim)))[0]
    parts = torch.split(masks, learner.target.param_sizes)
    for spec, part in zip(learner.target.param_specs, parts):
        assert bool((part == 1).all()) != masked(spec), spec.name
    result = start_run(cfg, tmp_path / "hm", data_root=str(cifar_root)).run(show_progress=False)
    assert result["finished"] and result["params"]["shared_target_weights"] == learner.target.num_weights


def test_augmented_batches_follow_the_task_seed(cifar_root):
    bench = build_benchmark(tiny_resnet().benchmark, 0, torch.device("cpu"), str(cifar_root))
    task = bench.tasks[1]
    idx = torch.arange(8)
    a, ya = task.train_batch(idx, task_generator(0, 1, torch.device("cpu")))
    b, yb = task.train_batch(idx, task_generator(0, 1, torch.device("cpu")))
    c, _ = task.train_batch(idx, task_generator(1, 1, torch.device("cpu")))
    assert torch.equal(a, b) and torch.equal(ya, yb) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (8, 3, 32, 32)
    plain, _ = next(task.test_batches(8))  # test images: normalized, never augmented
    assert torch.equal(plain, task.inputs(task.x_test[:8]))


def test_epochs_per_task_set_the_steps_from_each_tasks_size(tmp_path, cifar_root):
    cfg = tiny_resnet("train.iters_per_task=null", "train.epochs_per_task=1", "train.batch_size=32")
    result = start_run(cfg, tmp_path / "e", data_root=str(cifar_root)).run(show_progress=False)
    sizes = [5 * PER_FILE, C100_TRAIN // 10]  # CIFAR-10's 100 images, then one CIFAR-100 split's 20
    assert [s["steps"] for s in result["task_stats"]] == [task_steps(cfg.train, n) for n in sizes] == [4, 1]


def test_keras_resnet_schedule_steps_down_at_the_examples_epochs():
    train = load_config("split_cifar_resnet32").train
    factors = [lr_factor(train, epoch, 200) for epoch in (0, 79, 80, 120, 160, 180, 199)]
    assert factors == [1.0, 1.0, 0.1, 0.01, 1e-3, 0.5e-3, 0.5e-3]
    assert lr_factor(load_config("split_cifar_zenke").train, 150, 200) == 1.0


def _hypercl(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True)


def test_missing_cifar_is_one_line_and_writes_nothing(tmp_path):
    write_cifar(tmp_path / "data", "cifar10")  # CIFAR-100 missing: tasks 2-6 need it
    proc = _hypercl("run", "--config", "split_cifar_resnet32", "--runs-dir", str(tmp_path / "runs"),
                    "--data-root", str(tmp_path / "data"), *[a for s in TINY_CONV for a in ("--set", s)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "cifar-100-python" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_conv_target_on_vectors_is_one_line(tmp_path):
    proc = _hypercl("run", "--config", "split_mnist_cl1", "--runs-dir", str(tmp_path), "--set", "target.name=zenke")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "target zenke reads images" in proc.stderr and not any(tmp_path.iterdir())


@pytest.mark.parametrize("preset, ratio", [("split_cifar_resnet32_finetune", 1.0),
                                           ("split_cifar_resnet32_from_scratch", 2.0)])
def test_the_cifar_baseline_presets_run(tmp_path, cifar_root, preset, ratio):
    cfg = load_config(preset, [o for o in TINY_CONV if not o.startswith("hnet.")])
    result = start_run(cfg, tmp_path / "ft", data_root=str(cifar_root)).run(show_progress=False)
    assert result["finished"] and result["params"]["compression_ratio"] == ratio
    if preset.endswith("from_scratch"):  # task 0's own ResNet and batch-norm statistics, untouched by task 1
        acc = result["matrices"]["acc_task_given"]
        assert acc[1][0] == acc[0][0]
    run_cut_after_first_task(cfg, tmp_path / "cut", cifar_root)  # the statistics travel in the checkpoint
    resumed = resume_run(tmp_path / "cut", data_root=str(cifar_root)).run(show_progress=False)
    assert resumed["matrices"] == result["matrices"]


def test_split_cifar100_is_cifar100_alone_and_hypermask_runs_on_it(tmp_path, cifar_root):
    from hypercl_core.data.cifar import load_cifar100

    cfg = load_config("split_cifar100_hypermask", ["benchmark.num_tasks=2", "target.depth=8", "hnet.hidden=[4]",
                                                   "train.epochs_per_task=null", "train.iters_per_task=3",
                                                   "train.eval_batch_size=64", "device=cpu"])
    bench = build_benchmark(cfg.benchmark, 0, torch.device("cpu"), str(cifar_root))
    c100 = load_cifar100(cifar_root)
    for t, task in enumerate(bench.tasks):  # task t: CIFAR-100 classes 10t..10t+9, labels 0..9
        chosen = (c100.train_y >= 10 * t) & (c100.train_y < 10 * t + 10)
        assert torch.equal(task.x_train, torch.from_numpy(c100.train_x[chosen]))
        assert torch.equal(task.y_train, torch.from_numpy(c100.train_y[chosen] - 10 * t))
    result = start_run(cfg, tmp_path / "hm100", data_root=str(cifar_root)).run(show_progress=False)
    assert result["finished"]
