"""The replay sample grid (hypercl_core/replay/grid.py): its title names the model, so a VAE's grid and a GAN's differ."""

import torch

from hypercl_core.replay.grid import plot_sample_grid, sample_grid_title
from tests.conftest import tiny_vae, tiny_with_replay


def test_the_title_names_the_model_and_the_run():
    vae = sample_grid_title(tiny_vae(), 3, "class_mnist_vae-20260101")
    gan = sample_grid_title(tiny_vae("replay.model=gan"), 3, "class_mnist_gan-20260101")
    assert vae == "VAE samples (trained alone), class_mnist: 3 of 3 tasks learned\nrun class_mnist_vae-20260101"
    assert gan.startswith("GAN samples (trained alone), class_mnist: 3 of 3 tasks learned")
    assert sample_grid_title(tiny_vae(), 2) == "VAE samples (trained alone), class_mnist: 2 of 3 tasks learned"


def test_a_classifiers_replay_names_the_method_and_scenario():
    title = sample_grid_title(tiny_with_replay("hnet_r", "cl3"), 1)
    assert title == "VAE samples (replayed by HNET+R), split_mnist cl3: 1 of 2 tasks learned"
    assert "replayed by HNET+TIR" in sample_grid_title(tiny_with_replay("hnet_tir", "cl2"), 2)


def test_the_grid_is_written_as_a_png(tmp_path):
    images = torch.rand(2, 4, 784)
    out = tmp_path / "grid" / "samples.png"
    plot_sample_grid(images, images, ["digit 0", "digit 1"], sample_grid_title(tiny_vae(), 2), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
