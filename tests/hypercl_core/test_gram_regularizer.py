"""The Gram-form regularizer against the explicit reference and a float64 evaluation of Eq. 2.

Tolerances: far from the snapshot (drift ≥ 1e-3 of the weights) value within
1e-5 and every gradient within 1e-4 of its largest entry, relative to float64;
right after the snapshot (drift 1e-6, where the loss is ~1e-7 and float32
outputs only carry ~1e-7 absolute) value and gradients as close to float64
as the explicit reference's, within a factor of 2 plus 1e-4.
"""

import pytest
import torch

from hypercl_core.config import load_config
from hypercl_core.gram_regularizer import GramOutputRegularizer, explicit_cost, gram_cost
from hypercl_core.hnets.mlp_hnet import HyperNetwork
from hypercl_core.hnets.protected import Protection, output_regularizer
from hypercl_core.methods import build_learner
from hypercl_core.nets.mlp import TargetMLP
from hypercl_core.regularizer import OutputRegularizer, adam_lookahead

HEADS = TargetMLP(784, [100, 100], 2, 5, "relu")
HEAD_MASKS = torch.stack([HEADS.head_mask(t) for t in range(5)]).float()

LAYOUTS = {
    # name: (hnet outputs, chunk width, hidden, earlier tasks, masks)
    "chunked, padded tail": (5000, 300, [6], 6, None),
    "chunked, multi-head": (HEADS.num_weights, 4000, [10, 10], 4, HEAD_MASKS[:4]),
    "full hnet, multi-head": (HEADS.num_weights, None, [25], 4, HEAD_MASKS[:4]),
    "chunked, random masks": (5000, 300, [6], 6, "random"),
    # units 0-99 of chunk 5 masked for one task: those units are common in chunks 0-4 and 6-16, not a range
    "chunked, a hole in a middle chunk": (5000, 300, [6], 6, "hole"),
    "linear hnet, many tasks": (3000, 500, [], 40, None),
}


def _setup(layout: str, drift: float, lookahead: bool):
    outputs, chunk, hidden, n, masks = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    hnet = HyperNetwork(outputs, 8, hidden, "elu", chunk, 4 if chunk else 0)
    embs = torch.randn(n, 8, generator=gen)
    if masks == "random":
        masks = (torch.rand(n, outputs, generator=gen) > 0.3).float()
    elif masks == "hole":
        masks = torch.ones(n, outputs)
        masks[2, 5 * chunk : 5 * chunk + 100] = 0
    with torch.no_grad():
        targets = hnet(embs)
    regs = OutputRegularizer(hnet, embs, 0.7, masks), GramOutputRegularizer(hnet, embs, 0.7, masks)
    with torch.no_grad():
        for p in hnet.parameters():
            p.add_(drift * torch.randn(p.shape, generator=gen))
    deltas = {p: 0.1 * drift * torch.randn(p.shape, generator=gen) for p in hnet.parameters()} if lookahead else None
    full = masks if masks is not None else torch.ones(n, outputs)
    return hnet, embs, targets, full, regs, deltas


def _float64(hnet, embs, targets, masks, deltas):
    params = {n: (p + deltas[p] if deltas else p).double() for n, p in hnet.named_parameters()}
    out = torch.func.functional_call(hnet, params, (embs.double(),))
    value = 0.7 * ((out - targets.double()).square() * masks.double()).sum() / len(embs)
    return value, torch.autograd.grad(value, list(hnet.parameters()))


def _looked(deltas):
    """The looked-ahead values `adam_lookahead` would hand the regularizer for these changes."""
    return {p: p.detach() + d for p, d in deltas.items()} if deltas else None


def _errors(reg, hnet, deltas, value64, grads64):
    value = reg.loss(hnet, _looked(deltas))
    grads = torch.autograd.grad(value, list(hnet.parameters()))
    value_err = abs(value.item() - value64.item()) / value64.item()
    grad_err = max(float((g.double() - r).abs().max() / r.abs().max()) for g, r in zip(grads, grads64))
    return value_err, grad_err


@pytest.mark.parametrize("layout", LAYOUTS)
def test_zero_value_and_gradient_at_the_snapshot(layout):
    hnet, _, _, _, (_, gram), _ = _setup(layout, 0.0, False)
    value = gram.loss(hnet)
    assert value.item() == 0.0
    assert all(g.abs().max() == 0 for g in torch.autograd.grad(value, list(hnet.parameters()), allow_unused=True)
               if g is not None)


@pytest.mark.parametrize("lookahead", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_float64_far_from_the_snapshot(layout, lookahead):
    for drift in (1e-3, 0.1):
        hnet, embs, targets, masks, (_, gram), deltas = _setup(layout, drift, lookahead)
        value_err, grad_err = _errors(gram, hnet, deltas, *_float64(hnet, embs, targets, masks, deltas))
        assert value_err < 1e-5 and grad_err < 1e-4, (drift, value_err, grad_err)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_as_close_to_float64_as_the_reference_right_after_the_snapshot(layout):
    hnet, embs, targets, masks, (ref, gram), deltas = _setup(layout, 1e-6, True)
    exact = _float64(hnet, embs, targets, masks, deltas)
    ref_value, ref_grad = _errors(ref, hnet, deltas, *exact)
    value_err, grad_err = _errors(gram, hnet, deltas, *exact)
    assert value_err <= 2 * ref_value + 1e-4 and grad_err <= 2 * ref_grad + 1e-4, (value_err, ref_value, grad_err, ref_grad)


def test_form_follows_the_shapes_and_the_snapshot_shrinks():
    """SplitMNIST's hnet (chunks of 42,000 from 10 units): one earlier task's 12 rows are cheaper
    explicitly, four tasks' 48 rows in the Gram form (the crossover measured on this machine)."""
    assert explicit_cost(12, 42000, 10) < gram_cost(12, 42000, 10)
    assert gram_cost(48, 42000, 10) < explicit_cost(48, 42000, 10)
    hnet, _, _, _, (ref, gram), _ = _setup("linear hnet, many tasks", 0.0, False)
    assert any(getattr(term, "gram", False) for term in gram.terms)
    assert gram.held_bytes() < ref.held_bytes() / 4


def test_the_gram_form_is_used_unless_a_subset_is_drawn():
    hnet, embs, *_ = _setup("chunked, padded tail", 0.0, False)
    assert isinstance(output_regularizer(hnet, embs, Protection(0.1), None), GramOutputRegularizer)
    assert isinstance(output_regularizer(hnet, embs, Protection(0.1, reg_subset=2), None), OutputRegularizer)


@pytest.mark.parametrize("lookahead", [True, False])
def test_equal_to_the_reference_through_a_real_run(lookahead):
    """SplitMNIST on real data, multi-head: learn two tasks, snapshot before the third, then
    compare both forms at the snapshot and after 150 Adam steps on the third task."""
    cfg = load_config("split_mnist_cl1", ["target.hidden=[100,100]", "train.iters_per_task=150",
                                          f"method.lookahead={str(lookahead).lower()}"])
    learner = build_learner(cfg)
    for t in range(2):
        learner.learn_task(t)
    hnet = learner.hnet
    embs, masks = learner.embeddings.stacked(detach=True), learner.head_masks[:2].float()
    ref, gram = OutputRegularizer(hnet, embs, 0.01, masks), GramOutputRegularizer(hnet, embs, 0.01, masks)
    opt = torch.optim.Adam(hnet.parameters(), lr=cfg.train.lr)
    task = learner.bench.tasks[2]
    gen = torch.Generator().manual_seed(0)
    for step in range(151):
        opt.zero_grad()
        x, y = task.train_batch(torch.randint(task.num_train, (128,), generator=gen))
        learner.step_loss(2, torch.randn(cfg.hnet.temb_dim, generator=gen), x, y, 2).backward()
        looked = adam_lookahead(opt) if lookahead else None
        if step in (0, 150):
            values, grads = [], []
            for reg in (ref, gram):
                value = reg.loss(hnet, looked)
                values.append(value.item())
                grads.append(torch.autograd.grad(value, list(hnet.parameters())))
            assert values[1] == pytest.approx(values[0], rel=1e-4, abs=1e-9)
            for g_gram, g_ref in zip(grads[1], grads[0]):
                assert (g_gram - g_ref).abs().max() <= 1e-3 * g_ref.abs().max() + 1e-9
            if step == 150:
                assert values[0] > 0
        gram.loss(hnet, looked).backward()
        opt.step()


def test_bool_masks_as_the_training_loop_passes_them_equal_float_ones():
    hnet, embs, _, masks, _, _ = _setup("chunked, multi-head", 0.0, False)
    regs = [GramOutputRegularizer(hnet, embs, 0.7, m) for m in (masks, masks.bool())]
    with torch.no_grad():
        for p in hnet.parameters():
            p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    values = [reg.loss(hnet).item() for reg in regs]
    assert values[0] > 0 and values[0] == values[1]


def test_a_backward_after_a_newer_forward_is_refused():
    """A Gram term keeps its step's [A, c] in a buffer beside W*: the backward of an older loss would read
    the newer step's, so it is refused instead of returning a wrong gradient."""
    hnet, _, _, _, (_, gram), _ = _setup("chunked, multi-head", 1e-3, False)
    assert any(getattr(term, "gram", False) for term in gram.terms)
    older, newer = gram.loss(hnet), gram.loss(hnet)
    with pytest.raises(RuntimeError, match="ran forward again"):
        older.backward()
    newer.backward()
    assert all(p.grad is not None for p in hnet.parameters())
