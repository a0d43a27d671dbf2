"""The hnet-protected replay models (VAE, GAN) on class-incremental MNIST (tiny runs on real data)."""

from __future__ import annotations

import pytest
import torch

from hypercl_core.accounting import count_params
from hypercl_core.config import load_config
from hypercl_core.errors import ConfigError
from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner
from hypercl_core.replay.snapshot import decode_logits, to_pixels
from orchestrator.cli import main
from tests.conftest import run_cut_after_first_task, tiny_vae

def test_class_mnist_tasks_are_single_digits(data_root):
    learner = build_learner(tiny_vae(tasks=10), str(data_root))
    for t, task in enumerate(learner.bench.tasks):
        assert task.class_offset == t and (task.y_train == 0).all() and len(task.x_test) > 800


def test_samples_are_images_and_batched_decoding_matches_per_task(data_root):
    learner = build_learner(tiny_vae(tasks=2), str(data_root))
    learner.learn_task(0)
    learner.learn_task(1)
    both = learner.kept_samples([0, 1])
    assert both.shape == (2, 8, 784) and both.min() >= 0 and both.max() <= 1
    assert torch.allclose(both[1], learner.kept_samples([1])[0], atol=1e-6)
    drawn = learner.sample([1, 0], 5, torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 5, 784)


def test_the_regularizer_keeps_earlier_digits_generated(tmp_path, data_root):
    protected = start_run(tiny_vae(), tmp_path / "p", data_root=str(data_root)).run(show_progress=False)
    unprotected = start_run(tiny_vae("replay.beta=0"), tmp_path / "u", data_root=str(data_root)).run(
        show_progress=False)
    drift_p = protected["summary"]["final_sample_drift"]
    drift_u = unprotected["summary"]["final_sample_drift"]
    assert drift_p * 3 < drift_u
    assert protected["matrices"]["sample_drift"][0][0] == 0.0  # nothing drifts before a later task
    assert protected["summary"]["trained_compression_ratio"] == pytest.approx(protected["summary"]["compression_ratio"])


@pytest.mark.parametrize("model", ["vae", "gan"])  # the GAN's dropout draws from the global random stream
def test_resume_equals_uninterrupted_and_samples_command(model, tmp_path, data_root):
    cfg = tiny_vae(tasks=2, iters=20) if model == "vae" else tiny_gan(iters=20)
    whole = start_run(cfg, tmp_path / "whole", data_root=str(data_root)).run(show_progress=False)

    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    torch.manual_seed(12345)  # as a new process would be
    exp = resume_run(tmp_path / "cut", data_root=str(data_root))
    assert exp.tasks_done == 1
    assert exp.run(show_progress=False)["matrices"] == whole["matrices"]
    assert main(["samples", str(tmp_path / "cut"), "--data-root", str(data_root)]) == 0
    assert (tmp_path / "cut" / "samples.png").stat().st_size > 5_000


def test_samples_refuses_a_run_without_a_replay_model(tmp_path, data_root, capsys):
    cfg = load_config("split_mnist_cl1", ["benchmark.num_tasks=1", "train.iters_per_task=2", "target.hidden=[8]",
                                          "hnet.chunk_dim=1000", "device=cpu"])
    start_run(cfg, tmp_path / "r", data_root=str(data_root)).run(show_progress=False)
    assert main(["samples", str(tmp_path / "r")]) == 2
    assert "without a replay model" in capsys.readouterr().err


def test_accounting_equals_the_built_modules(data_root):
    cfg = tiny_vae()
    learner = build_learner(cfg, str(data_root))
    counts = count_params(cfg)
    assert counts.target_weights == learner.decoder.num_weights
    assert counts.hnet_weights == learner.hnet.num_params()
    assert count_params(load_config("class_mnist_vae")).hnet_weights == 552_904  # 10,10 ELU, output 50,000


@pytest.mark.parametrize("preset, overrides, message", [
    ("split_mnist_cl1", ["method.name=replay"], "needs a replay section"),
    ("split_mnist_cl1", ["replay.beta=0.01"], "method hnet does not use the replay section"),
    ("split_mnist_cl1", ["benchmark.name=class_mnist"], "use method.name=replay"),
    ("class_mnist_vae", ["benchmark.num_tasks=11"], "at most 10"),
    ("class_mnist_gan", ["replay.discriminator_lr=0"], "discriminator_lr"),
    ("split_mnist_cl3_hnet_tir", ["replay.current_weight=1"], "current_weight"),
])
def test_bad_replay_configs_name_the_fix(preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(preset, overrides)


def tiny_gan(*overrides: str, tasks: int = 2, iters: int = 30):
    small = ["replay.decoder_hidden=[32, 64]", "replay.discriminator_hidden=[64]", "replay.latent_dim=8",
             "replay.hnet.hidden=[8]", "replay.hnet.chunk_dim=4000", "replay.hnet.temb_dim=8",
             "replay.hnet.cemb_dim=8", "device=cpu", "train.lr=0.001"]
    return load_config("class_mnist_gan", [*small, f"benchmark.num_tasks={tasks}", f"train.iters_per_task={iters}",
                                           *overrides])


def test_gan_generates_images_keeps_digits_and_round_trips(tmp_path, data_root):
    protected = start_run(tiny_gan(), tmp_path / "p", data_root=str(data_root)).run(show_progress=False)
    unprotected = start_run(tiny_gan("replay.beta=0"), tmp_path / "u", data_root=str(data_root)).run(
        show_progress=False)
    assert set(protected["matrices"]) == {"sample_drift"}
    assert protected["summary"]["final_sample_drift"] * 3 < unprotected["summary"]["final_sample_drift"]
    exp = resume_run(tmp_path / "p", data_root=str(data_root))
    images = exp.learner.sample([0, 1], 4, torch.Generator().manual_seed(0))
    assert images.shape == (2, 4, 784) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(exp.learner.kept_samples([0])[0], exp.learner.kept_samples([0, 1])[0], atol=1e-6)
    out = tmp_path / "figures" / "gan.png"  # a folder that does not exist yet
    assert main(["samples", str(tmp_path / "p"), "--data-root", str(data_root), "--out", str(out)]) == 0
    assert out.stat().st_size > 5_000


def test_gan_starts_with_images_that_depend_on_the_noise(data_root):
    """With the hnet's plain Xavier init the generator hardly reacts to z and collapses
    (benchmarks/RESULTS.md); the preset starts generated weights at std 0.06."""
    @torch.no_grad()
    def start_diversity(*overrides: str) -> float:
        learner = build_learner(load_config("class_mnist_gan", ["benchmark.num_tasks=1", "device=cpu", *overrides]),
                                str(data_root))
        assert all(torch.count_nonzero(m.bias) == 0 for m in learner.discriminator if isinstance(m, torch.nn.Linear))
        weights = learner.hnet(torch.randn(1, 96, generator=torch.Generator().manual_seed(1)))
        z = torch.randn(1, 64, 100, generator=torch.Generator().manual_seed(2))
        images = to_pixels(decode_logits(learner.decoder, weights, z, learner.conditions[:1]), "tanh")
        return float(images[0].std(0).mean())

    assert start_diversity() > 10 * start_diversity("replay.init_weight_std=null")


def test_hnet_r_refuses_gan_replay():
    with pytest.raises(ConfigError, match="set replay.model=vae"):
        load_config("split_mnist_cl1_hnet_r", ["replay.model=gan"])
