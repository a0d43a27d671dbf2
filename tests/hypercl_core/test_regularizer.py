import copy

import pytest
import torch

from hypercl_core.hnets.mlp_hnet import HyperNetwork
from hypercl_core.regularizer import OutputRegularizer, adam_lookahead


def _hnet():
    torch.manual_seed(0)
    return HyperNetwork(num_outputs=500, temb_dim=4, hidden=[8], activation="elu", chunk_dim=120, cemb_dim=3)


def _train_steps(hnet, opt, n):
    for _ in range(n):
        opt.zero_grad()
        hnet(torch.randn(2, 4)).square().mean().backward()
        opt.step()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("warm_steps", [0, 3])
def test_lookahead_is_adams_next_step_and_leaves_state_alone(warm_steps, fused):
    hnet = _hnet()
    opt = torch.optim.Adam(hnet.parameters(), lr=0.01, fused=fused)
    _train_steps(hnet, opt, warm_steps)
    opt.zero_grad()
    hnet(torch.randn(2, 4)).square().mean().backward()
    state_before = copy.deepcopy(opt.state_dict())
    params_before = [p.detach().clone() for p in hnet.parameters()]
    looked = adam_lookahead(opt)
    assert all(not v.requires_grad for v in looked.values())
    after = opt.state_dict()
    for key, st in state_before["state"].items():
        for name, value in st.items():
            assert torch.equal(value, after["state"][key][name])
    opt.step()
    for p, before in zip(hnet.parameters(), params_before):
        assert not torch.equal(p.detach(), before)
        assert torch.equal(p.detach(), looked[p])  # Adam's own kernel on copies: the very values of its step


def test_regularizer_is_zero_right_after_the_snapshot():
    hnet = _hnet()
    reg = OutputRegularizer(hnet, torch.randn(3, 4), beta=0.5)
    assert reg.loss(hnet).item() == 0.0


def test_regularizer_averages_over_tasks_and_applies_masks():
    hnet = _hnet()
    embs = torch.randn(3, 4)
    masks = torch.zeros(3, 500)
    masks[:, :10] = 1
    reg = OutputRegularizer(hnet, embs, beta=2.0, masks=masks)
    with torch.no_grad():
        hnet.layers[-1].bias.add_(1.0)  # every output moves by exactly 1
    assert reg.loss(hnet).item() == pytest.approx(2.0 * 3 * 10 / 3)


def test_regularizer_uses_the_lookahead_parameters():
    hnet = _hnet()
    reg = OutputRegularizer(hnet, torch.randn(2, 4), beta=1.0)
    bias = hnet.layers[-1].bias
    looked = {bias: bias.detach() + 0.5}
    # all 500 outputs of both tasks move by 0.5: mean over tasks of 500 * 0.25
    value = reg.loss(hnet, looked)
    assert value.item() == pytest.approx(125.0)
    # the lookahead is not differentiated: the gradient is the looked-ahead outputs' drift, on the bias
    (grad,) = torch.autograd.grad(value, [bias])
    # d/db_u = β/2 · 2 tasks · 2·0.5 per chunk that uses unit u: 5 chunks for units 0-19, 4 after
    assert torch.allclose(grad[:20], torch.full((20,), 5.0)) and torch.allclose(grad[20:], torch.full((100,), 4.0))


def _naive(hnet, embs, targets, masks, beta, deltas):
    """Eq. 2 written plainly: the reference the fused implementation must match."""
    params = {n: p + deltas[p] if p in deltas else p for n, p in hnet.named_parameters()}
    out = torch.func.functional_call(hnet, params, (embs,))
    return beta * ((out - targets).square() * masks).sum() / len(embs)


def test_fused_regularizer_matches_the_plain_formula_in_value_and_gradient():
    hnet = _hnet()  # 500 outputs in chunks of 120: a 100-wide unused tail
    embs = torch.randn(3, 4)
    masks = (torch.rand(3, 500) > 0.3).float()
    masks[0] = 1.0
    with torch.no_grad():
        targets = hnet(embs)
    reg = OutputRegularizer(hnet, embs, beta=0.7, masks=masks)
    with torch.no_grad():
        for p in hnet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    deltas = {p: 0.01 * torch.randn_like(p) for p in hnet.parameters()}
    fused = reg.loss(hnet, {p: p.detach() + d for p, d in deltas.items()})
    grads = torch.autograd.grad(fused, list(hnet.parameters()))
    plain = _naive(hnet, embs, targets, masks, 0.7, deltas)
    plain_grads = torch.autograd.grad(plain, list(hnet.parameters()))
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    for g, h in zip(grads, plain_grads):
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-6)


def test_stochastic_subset_regularizes_k_tasks():
    hnet = _hnet()
    reg = OutputRegularizer(hnet, torch.randn(6, 4), beta=1.0, subset=2)
    with torch.no_grad():
        hnet.layers[-1].bias.add_(1.0)
    gen = torch.Generator().manual_seed(0)
    assert reg.loss(hnet, generator=gen).item() == pytest.approx(500.0)  # mean over 2 tasks of 500
    assert reg._pick(gen).numel() == 2
