"""HNET+TIR: the task-inference head grows, predictions drive the HNET classifier, tiny run
(and its replay VAE's sample grid)."""

from __future__ import annotations

import torch

from hypercl_core.experiment import start_run
from hypercl_core.methods import build_learner
from orchestrator.cli import main
from tests.conftest import tiny_with_replay


def test_task_inference_head_grows_one_output_per_task(data_root):
    method = build_learner(tiny_with_replay("hnet_tir", "cl3", 3), str(data_root))
    net = method.task_inference
    x = net.bench.tasks[0].x_test[:4]
    assert [net.logits(x, net.weights, 0, known).shape[-1] for known in (1, 2, 3)] == [1, 2, 3]
    assert torch.equal(net.labels(torch.tensor([0, 1, 1]), 2), torch.tensor([2, 2, 2]))


def test_the_classifier_answers_with_the_predicted_tasks_weights(data_root):
    method = build_learner(tiny_with_replay("hnet_tir", "cl3", 2), str(data_root))
    for t in range(2):
        method.learn_task(t)
    truth = [torch.full((len(task.y_test),), j) for j, task in enumerate(method.classifier.bench.tasks)]
    right = method.classifier.evaluate(1, task_predictions=truth)
    assert right["acc_task_inferred"] == right["acc_task_given"]  # the true task: CL3 scores as task given
    assert right["task_inference_acc"] == [100.0, 100.0]
    wrong = method.classifier.evaluate(1, task_predictions=[1 - p for p in truth])
    assert wrong["acc_task_inferred"] == [0.0, 0.0] and wrong["task_inference_acc"] == [0.0, 0.0]


def test_tiny_tir_run_records_task_inference(tmp_path, data_root):
    results = start_run(tiny_with_replay("hnet_tir", "cl2", 2), tmp_path / "r", data_root=str(data_root)).run(
        show_progress=False)
    inference = results["matrices"]["task_inference_acc"]
    assert inference[0][0] == 100.0  # one task learned: nothing to confuse it with
    assert 0 <= inference[1][1] <= 100 and results["summary"]["final_acc"] > 40
    stats = results["task_stats"][1]
    assert min(stats["classifier_train_s"], stats["replay_train_s"], stats["task_inference_train_s"]) > 0
    # the run's replay VAE draws its sample grid like a replay-only run
    assert main(["samples", str(tmp_path / "r"), "--data-root", str(data_root)]) == 0
    assert (tmp_path / "r" / "samples.png").stat().st_size > 5_000
