"""Online EWC and SI: their importances against the formulas on a tiny net, and tiny runs on real MNIST."""

import pytest
import torch
import torch.nn.functional as F

from hypercl_core.config import load_config
from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.nets.target import TargetNetwork
from hypercl_core.seeding import task_generator
from tests.conftest import run_cut_after_first_task

SMALL = ["benchmark.num_tasks=2", "train.iters_per_task=25", "target.hidden=[16]", "device=cpu"]


def per_example_squares(target, weights, x, loss) -> torch.Tensor:
    """The definition, one example at a time."""
    total = torch.zeros_like(weights)
    for n in range(len(x)):
        w = weights.clone().requires_grad_()
        (g,) = torch.autograd.grad(loss(target(x[n : n + 1], w, None, task=0))[0], w)
        total += g.square()
    return total


def predicted_nll(columns: slice):
    def loss(out: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(out[:, columns], dim=-1)
        return -log_p.gather(1, log_p.argmax(-1, keepdim=True)).squeeze(1)
    return loss


@pytest.mark.parametrize("columns", [slice(3, 6), slice(0, 6)])  # one task's head; a growing head over two tasks
def test_squared_gradient_sums_equal_the_definition(columns):
    torch.manual_seed(0)
    target = TargetMLP(12, [7, 5], 3, 2, "relu")
    weights, x = target.init_weights(), torch.rand(19, 12)
    loss = predicted_nll(columns)
    expected = per_example_squares(target, weights, x, loss)
    assert torch.allclose(target.squared_grad_sum(x, weights, loss), expected, atol=1e-5)  # the MLP's closed form
    assert torch.allclose(TargetNetwork.squared_grad_sum(target, x, weights, loss), expected, atol=1e-5)  # generic
    head0 = target.head_mask(0) & ~target.head_mask(1)
    if columns == slice(3, 6):
        assert expected[head0].abs().sum() == 0  # head 0 takes no part in head 1's loss


def test_online_ewc_accumulates_the_decayed_fisher_and_penalises_by_it(data_root):
    cfg = load_config("split_mnist_cl3_ewc", [*SMALL, "method.lam=1000", "method.gamma=0.5",
                                              "method.fisher_samples=300"])
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    fisher0 = learner.fisher(0)
    assert torch.allclose(learner.importance, fisher0)
    task = learner.bench.tasks[0]
    idx = torch.randperm(task.num_train, generator=torch.Generator().manual_seed(0))[:50]
    x = task.inputs(task.x_train[idx])
    by_hand = per_example_squares(learner.target, learner.weights.detach(), x, predicted_nll(slice(0, 2))) / 50
    ours = learner.target.squared_grad_sum(x, learner.weights, predicted_nll(slice(0, 2))) / 50
    assert torch.allclose(ours, by_hand, atol=1e-6) and by_hand.sum() > 0
    learner.learn_task(1)
    assert torch.allclose(learner.importance, learner.fisher(1) + 0.5 * fisher0, atol=1e-6)
    with torch.no_grad():
        learner.weights.add_(0.01)
    expected = 1000 * 0.5 / 2 * (learner.importance * (learner.weights - learner.anchor) ** 2).sum()
    assert torch.allclose(learner.penalty(), expected)


def test_si_path_integral_follows_every_step(data_root):
    cfg = load_config("split_mnist_cl1_si", [*SMALL, "method.c=0.5", "method.xi=0.1"])
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    first_omega, start = learner.importance.clone(), learner.anchor.clone()
    own_update = learner.update
    path = torch.zeros_like(start)

    def watched(optimizer, loss):  # -g * delta theta of every step, outside SI's own books
        nonlocal path
        before = learner.weights.detach().clone()
        own_update(optimizer, loss)
        path = path - learner.weights.grad * (learner.weights.detach() - before)

    learner.update = watched
    learner.learn_task(1)
    assert torch.allclose(learner.path, path, atol=1e-7)
    assert path.sum() > 0  # the steps lowered the loss: the path integral credits the weights that did it
    moved = learner.weights.detach() - start
    assert torch.allclose(learner.importance, first_omega + path / (moved ** 2 + 0.1), atol=1e-5)
    assert (first_omega > 0).any() and torch.equal(learner.anchor, learner.weights.detach())
    with torch.no_grad():
        learner.weights.add_(0.01)
    assert torch.allclose(learner.penalty(), 0.5 * (learner.importance * (learner.weights - learner.anchor) ** 2).sum())


@pytest.mark.parametrize("scenario, outputs", [("cl1", slice(2, 4)), ("cl2", slice(0, 2)), ("cl3", slice(0, 4))])
def test_the_fisher_is_the_mean_squared_gradient_at_the_predicted_label_over_the_scenarios_outputs(
        data_root, scenario, outputs):
    """Task 1 of SplitMNIST: its own head (CL1), the shared head (CL2), the four classes so far (CL3)."""
    cfg = load_config(f"split_mnist_{scenario}_ewc", [*SMALL, "method.fisher_samples=40", "train.eval_batch_size=16"])
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    task = learner.bench.tasks[1]
    gen = task_generator(cfg.seed, 1, learner.device, stream=4)
    chosen = torch.randperm(task.num_train, generator=gen, device=learner.device)[:40]
    x = task.inputs(task.x_train[chosen])
    expected = per_example_squares(learner.target, learner.weights.detach(), x, predicted_nll(outputs)) / 40
    assert torch.allclose(learner.fisher(1), expected, atol=1e-6) and expected.sum() > 0


@pytest.mark.parametrize("preset, sets", [("split_mnist_cl1_ewc", []), ("split_mnist_cl2_si", []),
                                          ("split_mnist_cl3_ewc", ["method.keep_optimizer=true"])])
def test_a_penalty_run_resumes_exactly(tmp_path, data_root, preset, sets):
    """With one Adam over all tasks its moments are part of the state a resumed run continues from."""
    cfg = load_config(preset, [*SMALL, *sets])
    whole = start_run(cfg, tmp_path / "whole", data_root=str(data_root)).run(show_progress=False)
    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    resumed = resume_run(tmp_path / "cut", data_root=str(data_root)).run(show_progress=False)
    assert resumed["matrices"] == whole["matrices"]
    assert whole["params"]["compression_ratio"] == 1.0


def test_a_strong_penalty_keeps_the_first_task_that_fine_tuning_forgets(tmp_path, data_root):
    """CL2 (one shared head): fine-tuning on digits 2/3 overwrites what 0/1 learned; online EWC with a
    large lambda holds the weights where task 0 left them."""
    common = ["benchmark.num_tasks=2", "train.iters_per_task=200", "target.hidden=[64]", "device=cpu"]
    finetune = start_run(load_config("split_mnist_cl2_finetune", common), tmp_path / "ft",
                         data_root=str(data_root)).run(show_progress=False)
    ewc = start_run(load_config("split_mnist_cl2_ewc", [*common, "method.lam=1e6", "method.gamma=1"]), tmp_path / "ewc",
                    data_root=str(data_root)).run(show_progress=False)
    first_ft = finetune["matrices"]["acc_task_inferred"][1][0]
    first_ewc = ewc["matrices"]["acc_task_inferred"][1][0]
    assert first_ewc > first_ft + 10, (first_ewc, first_ft)


@pytest.mark.parametrize("keep", [False, True])
def test_keep_optimizer_carries_adams_moments_from_task_to_task(data_root, keep):
    learner = build_learner(load_config("split_mnist_cl3_si", [*SMALL, f"method.keep_optimizer={str(keep).lower()}"]),
                            data_root=str(data_root))
    for t in range(2):
        learner.learn_task(t)
    if keep:
        opt = learner.task_optimizer()
        assert opt is learner.optimizer and float(opt.state[learner.weights]["step"]) == 2 * 25
    else:
        assert learner.optimizer is None and not learner.task_optimizer().state
        assert learner.task_optimizer() is not learner.task_optimizer()
