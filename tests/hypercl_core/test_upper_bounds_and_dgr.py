"""From scratch, joint training and DGR+distill: what each changes in the classifier, on real MNIST."""

import pytest
import torch

from hypercl_core.config import load_config
from hypercl_core.errors import ConfigError
from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner, build_subsystem
from hypercl_core.replay.snapshot import GeneratorSnapshot
from tests.conftest import run_cut_after_first_task

SMALL = ["benchmark.num_tasks=2", "train.iters_per_task=25", "target.hidden=[16]", "device=cpu"]
SMALL_VAE = ["method.encoder_hidden=[32]", "method.decoder_hidden=[32]", "method.latent_dim=4"]


def test_from_scratch_keeps_each_task_in_its_own_network(data_root):
    learner = build_learner(load_config("split_mnist_cl1_from_scratch", SMALL), str(data_root))
    learner.learn_task(0)
    first = learner.evaluate(0)["acc_task_given"][0]
    kept = learner.trained[0].clone()
    learner.learn_task(1)
    assert torch.equal(learner.trained[0], kept) and not torch.equal(learner.trained[1], kept)
    assert learner.evaluate(1)["acc_task_given"][0] == first  # nothing shared, nothing forgotten


def test_from_scratch_draws_each_network_apart_from_other_seeds(data_root):
    seed0 = build_learner(load_config("split_mnist_cl1_from_scratch", SMALL), str(data_root))
    seed1 = build_learner(load_config("split_mnist_cl1_from_scratch", [*SMALL, "seed=1"]), str(data_root))
    seed0.begin_task(1)  # seed 0's second network
    assert not torch.equal(seed0.weights, seed1.weights)  # is not seed 1's first


def test_dgr_replays_every_image_through_every_earlier_head_in_cl1(data_root):
    cfg = load_config("split_mnist_cl1_dgr", [*SMALL, *SMALL_VAE, "benchmark.num_tasks=4"])
    classifier = build_subsystem("classifier", cfg, str(data_root))
    images = torch.rand(3, 5, 784)
    out = classifier.replay_logits(images, classifier.weights, 3)
    assert out.shape == (3, 15, 2)
    for head in range(3):
        assert torch.allclose(out[head], classifier.target(images.flatten(0, 1), classifier.weights, head))


def test_from_scratch_needs_the_task_id():
    with pytest.raises(ConfigError, match="needs the task id to pick it: set benchmark.scenario=cl1"):
        load_config("split_mnist_cl1_from_scratch", ["benchmark.scenario=cl2"])


def test_from_scratch_counts_one_network_per_task(tmp_path, data_root):
    result = start_run(load_config("split_mnist_cl1_from_scratch", SMALL), tmp_path / "r",
                       data_root=str(data_root)).run(show_progress=False)
    assert result["params"]["compression_ratio"] == 2.0


def test_joint_draws_every_task_seen_so_far(data_root):
    cfg = load_config("split_mnist_cl3_joint", [*SMALL, "train.iters_per_task=100", "target.hidden=[64]"])
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    learner.learn_task(1)
    after = learner.evaluate(1)["acc_task_inferred"]
    assert min(after) > 80, after  # CL3 with one growing head: only joint data keeps digits 0/1 alive


def test_generator_snapshot_draws_every_earlier_task_at_once():
    snap = GeneratorSnapshot([4, 8, 784], torch.randn(4 * 8 + 8 + 8 * 784 + 784), num_tasks=3)
    images = snap.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (3, 5, 784) and 0 <= images.min() and images.max() <= 1
    again = snap.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(images, again) and not torch.equal(images[0], images[1])


def test_dgr_vae_replays_its_own_snapshot_and_refuses_an_unlearned_one(data_root):
    cfg = load_config("split_mnist_cl2_dgr", [*SMALL, *SMALL_VAE])
    vae = build_subsystem("replay_vae", cfg, str(data_root))
    with pytest.raises(ValueError, match="needs tasks 0..0 learned"):
        vae.replay_snapshot(1)
    vae.learn_task(0)
    snap = vae.replay_snapshot(1)
    vae.learn_task(1)
    assert not torch.equal(snap.weights, vae.weights.detach())  # the snapshot stayed as task 0 left it
    assert snap.sample(3).shape == (1, 3, 784)


def test_dgr_runs_and_resumes_exactly(tmp_path, data_root):
    cfg = load_config("split_mnist_cl3_dgr", [*SMALL, *SMALL_VAE])
    whole = start_run(cfg, tmp_path / "whole", data_root=str(data_root)).run(show_progress=False)
    assert set(whole["matrices"]) == {"acc_task_given", "acc_task_inferred"}
    assert whole["params"]["compression_ratio"] > 1  # the VAE is trained too
    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    resumed = resume_run(tmp_path / "cut", data_root=str(data_root)).run(show_progress=False)
    assert resumed["matrices"] == whole["matrices"]


@pytest.mark.parametrize("override, message", [
    ("replay.latent_dim=8", "method dgr does not use the replay section"),
    ("method.beta=0.01", "unknown config key 'method.beta'"),
    ("benchmark.as_rgb32=true", "the replay models generate flat MNIST digits"),
])
def test_dgr_refuses_what_it_does_not_read(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("split_mnist_cl1_dgr", [override])
