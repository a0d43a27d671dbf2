"""HyperMask: semi-binary masks with the requested sparsity, the unmasked output bias,
the masked L1 penalty, exact accounting and a tiny run on real MNIST."""

from __future__ import annotations

import pytest
import torch

from hypercl_core.accounting import count_params
from hypercl_core.config import load_config
from hypercl_core.errors import ConfigError
from hypercl_core.experiment import start_run
from hypercl_core.methods import build_learner
from tests.conftest import tiny

HYPERMASK = {"method.name": "hypermask", "hnet.chunk_dim": None}


def _learner(data_root, **flat):
    return build_learner(tiny(**{**HYPERMASK, **flat}), str(data_root))


def test_masks_are_semi_binary_with_the_requested_sparsity_per_tensor(data_root):
    learner = _learner(data_root, **{"method.sparsity": 30})
    raw = torch.randn(3, learner.hnet.num_outputs)
    masks = learner.masks(raw)
    assert masks.shape == (3, learner.target.num_weights)
    assert ((masks >= 0) & (masks <= 1)).all()
    parts = torch.split(masks, learner.target.param_sizes, dim=-1)
    for size, part in zip(learner.target.param_sizes[:-1], parts[:-1]):
        zeros = (part == 0).sum(-1)
        assert (zeros == int(0.3 * size)).all()  # exactly the lowest 30% of every tensor, per task
    masked, absolute = masks[:, : learner.hnet.num_outputs], raw.tanh().abs()
    kept = masked > 0
    assert torch.equal(masked[kept], absolute[kept])  # semi-binary: kept entries keep their |tanh| value
    assert (masked[kept] < 0.5).any() and (masked[kept] > 0.5).any()
    assert (parts[-1] == 1).all()  # the output bias is never masked


def test_no_sparsity_keeps_every_entry(data_root):
    learner = _learner(data_root, **{"method.sparsity": 0})
    raw = torch.randn(2, learner.hnet.num_outputs)
    masks = learner.masks(raw)
    assert torch.allclose(masks[:, : learner.hnet.num_outputs], raw.tanh().abs())


def test_task_weights_are_the_shared_weights_times_the_mask(data_root):
    learner = _learner(data_root, **{"method.sparsity": 50})
    emb = torch.randn(2, learner.cfg.hnet.temb_dim)
    weights = learner.task_weights(emb)
    expected = learner.weights * learner.masks(learner.hnet(emb))
    assert torch.equal(weights, expected)
    out_bias = learner.target.param_sizes[-1]
    assert torch.equal(weights[:, -out_bias:], learner.weights[-out_bias:].expand(2, -1))


def test_l1_penalty_counts_only_weight_changes_the_mask_uses(data_root):
    learner = _learner(data_root, **{"method.sparsity": 50, "method.l1": 0.5})
    task = learner.bench.tasks[0]
    x, y = task.train_batch(torch.arange(16))
    emb = torch.randn(learner.cfg.hnet.temb_dim)
    learner.begin_task(1)
    base = learner.step_loss(1, emb, x, y, 1).item()
    with torch.no_grad():
        learner.weights.add_(0.01)
    mask = learner.masks(learner.hnet(emb.unsqueeze(0)))[0]
    moved_task_loss = learner._task_loss(learner.target(x, learner.weights * mask, 1), y).item()
    penalty = learner.step_loss(1, emb, x, y, 1).item() - moved_task_loss
    assert penalty == pytest.approx(0.5 * 0.01 * mask.sum().item(), rel=1e-4)
    assert learner.step_loss(0, emb, x, y, 0).item() == pytest.approx(
        learner._task_loss(learner.target(x, learner.weights * mask, 0), y).item())  # nothing to protect on task 0
    assert base > 0


def test_accounting_equals_the_built_modules(data_root):
    learner = _learner(data_root)
    counts = count_params(learner.cfg)
    assert counts.hnet_weights == learner.hnet.num_params()
    assert counts.shared_target_weights == learner.weights.numel() == learner.target.num_weights
    assert learner.hnet.num_outputs == learner.target.num_weights - learner.target.param_sizes[-1]


def test_tiny_run_learns_and_round_trips_its_state(tmp_path, data_root):
    cfg = tiny(**{**HYPERMASK, "benchmark.num_tasks": 2, "train.iters_per_task": 60, "method.sparsity": 30,
                  "method.beta": 0.001})
    results = start_run(cfg, tmp_path / "r", data_root=str(data_root)).run(show_progress=False)
    assert results["summary"]["final_acc"] > 90
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    fresh = build_learner(cfg, str(data_root))
    fresh.load_state_dict(learner.state_dict())
    assert fresh.evaluate(0) == learner.evaluate(0)


@pytest.mark.parametrize("overrides, message", [
    (["method.name=hypermask"], "set hnet.chunk_dim=null"),
    # no lookahead in HyperMask's regularizer: the key is not one of its own
    (["method.name=hypermask", "hnet.chunk_dim=null", "method.lookahead=true"],
     "unknown config key 'method.lookahead' in split_mnist_cl1; method hypermask takes: name, beta, reg_subset, sparsity, l1"),
    (["method.name=hypermask", "hnet.chunk_dim=null", "method.sparsity=100"], "config key 'method.sparsity': Input should be less than 100"),
])
def test_bad_hypermask_configs_name_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("split_mnist_cl1", overrides)
