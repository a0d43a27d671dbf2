"""HNET+R: replay batch composition, the growing CL3 head, a tiny run on real MNIST."""

from __future__ import annotations

import pytest
import torch

from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner
from hypercl_core.methods.hnet_r import ReplayMethod
from hypercl_core.methods.replay_classifier import current_share, replay_per_task
from tests.conftest import run_cut_after_first_task, tiny_with_replay

def test_replay_batch_has_ceil_128_over_t_images_per_earlier_task(data_root):
    assert [replay_per_task(t) for t in range(1, 6)] == [128, 64, 43, 32, 26]
    learner = build_learner(tiny_with_replay("hnet_r", "cl1", 3), str(data_root))
    learner.learn_task(0)
    learner.learn_task(1)
    snapshot = learner.replay.replay_snapshot(2)
    assert snapshot.num_tasks == 2
    images = snapshot.sample(replay_per_task(2), torch.Generator().manual_seed(0))
    assert images.shape == (2, 64, 784) and 0 <= images.min() and images.max() <= 1


def test_current_task_share_is_fixed_or_one_over_tasks_met():
    assert [current_share(0.5, t) for t in (1, 4)] == [0.5, 0.5]  # the authors': the newest weighs as all before
    assert [current_share(None, t) for t in (0, 1, 4)] == [1.0, 0.5, 0.2]  # balanced: every task met alike


@pytest.mark.parametrize("scenario", ["cl1", "cl2", "cl3"])
def test_batched_replay_logits_match_each_tasks_own_logits(data_root, scenario):
    learner = build_learner(tiny_with_replay("hnet_r", scenario, 3), str(data_root)).classifier
    images = torch.stack([learner.bench.tasks[j].x_test[:7] for j in range(2)])  # stands in for 2 replayed tasks
    batched = learner.replay_logits(images, learner.weights, 3)
    for past in range(2):
        assert torch.allclose(batched[past], learner.logits(images[past], learner.weights, past, 3), atol=1e-5)


def test_cl3_head_grows_with_the_tasks_learned(data_root):
    learner = build_learner(tiny_with_replay("hnet_r", "cl3", 3), str(data_root)).classifier
    x = learner.bench.tasks[0].x_test[:5]
    assert [learner.logits(x, learner.weights, 0, known).shape[-1] for known in (1, 2, 3)] == [2, 4, 6]


def test_cl3_replay_pushes_the_new_task_outputs_down_on_earlier_images(data_root):
    """Without this the newest outputs win on every earlier image (final accuracy ~1/tasks)."""
    learner = build_learner(tiny_with_replay("hnet_r", "cl3", 3), str(data_root)).classifier
    images = learner.bench.tasks[0].x_test[:64].unsqueeze(0)  # stands in for replay of task 0
    teacher = learner.weights.detach().clone()
    learner.replay_loss(images, teacher, 1).backward()
    out_bias = learner.weights.grad[-learner.target.param_sizes[-1]:]
    assert (out_bias[2:4] > 0).all()  # a descent step lowers task 1's outputs
    assert out_bias[4:].abs().sum() == 0  # outputs of tasks not met yet are untouched


def test_tiny_runs_learn_and_resume_like_an_uninterrupted_run(tmp_path, data_root):
    for scenario in ("cl1", "cl2", "cl3"):
        results = start_run(tiny_with_replay("hnet_r", scenario), tmp_path / scenario, data_root=str(data_root)).run(
            show_progress=False)
        assert results["summary"]["final_acc"] > 70, scenario
        assert results["task_stats"][1]["replay_train_s"] > 0 and results["task_stats"][1]["classifier_train_s"] > 0
    cfg = tiny_with_replay("hnet_r", "cl3")
    whole = start_run(cfg, tmp_path / "whole", data_root=str(data_root)).run(show_progress=False)

    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    exp = resume_run(tmp_path / "cut", data_root=str(data_root))
    assert isinstance(exp.learner, ReplayMethod) and exp.tasks_done == 1
    assert exp.run(show_progress=False)["matrices"] == whole["matrices"]
    assert set(whole["matrices"]) == {"acc_task_given", "acc_task_inferred"}
