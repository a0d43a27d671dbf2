"""ResNet and ZenkeNet as pure functions of flat weights: counts, layout, batched sets, per-task BN."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from hypercl_core.nets.conv import ResNet, ZenkeNet


def conv_count(c_in: int, c_out: int) -> int:
    return c_in * c_out * 9 + c_out  # 3x3 kernel plus bias


def test_resnet32_has_the_papers_468540_weights():
    # stem: conv 3->16 + BN(16); per stage n=5 blocks of two convs each followed by BN;
    # the first conv of stages 2 and 3 widens 16->32 and 32->64; option-A shortcuts are free.
    stem = conv_count(3, 16) + 2 * 16                                          # 480
    stage1 = 10 * (conv_count(16, 16) + 2 * 16)                                # 23,520
    stage2 = conv_count(16, 32) + 2 * 32 + 9 * (conv_count(32, 32) + 2 * 32)   # 88,512
    stage3 = conv_count(32, 64) + 2 * 64 + 9 * (conv_count(64, 64) + 2 * 64)   # 352,128
    heads = 6 * 10 * 64 + 6 * 10                                               # 3,900
    assert (stem, stage1, stage2, stage3, heads) == (480, 23_520, 88_512, 352_128, 3_900)
    assert stem + stage1 + stage2 + stage3 + heads == 468_540
    assert ResNet(32, 10, 6, 6).num_weights == 468_540
    assert ResNet(32, 10, 1, 6).num_weights == 468_540 - 3_900 + 650  # CL2: one shared head


def test_resnet20_and_zenkenet_counts():
    stem, heads = 480, 3_900
    stages = (6 * 2_352) + (4_704 + 5 * 9_312) + (18_624 + 5 * 37_056)  # n=3 blocks per stage
    assert ResNet(20, 10, 6, 6).num_weights == stem + stages + heads == 273_660
    zenke = conv_count(3, 32) + conv_count(32, 32) + conv_count(32, 64) + conv_count(64, 64)
    zenke += 2304 * 512 + 512 + 512 * 60 + 60
    assert ZenkeNet(10, 6, 6).num_weights == zenke == 1_276_508
    with pytest.raises(ValueError, match="6n\\+2"):
        ResNet(30, 10, 6, 6)


def test_resnet_spec_order_and_roles():
    net = ResNet(32, 10, 6, 6)
    specs = net.param_specs
    names = [s.name for s in specs]
    assert names[:6] == ["conv0.weight", "conv0.bias", "bn0.scale", "bn0.shift",
                         "stages.0.blocks.0.conv1.weight", "stages.0.blocks.0.conv1.bias"]
    assert names[-4:] == ["stages.2.blocks.4.bn2.scale", "stages.2.blocks.4.bn2.shift", "head.weight", "head.bias"]
    body = specs[:-2]
    assert [s.role for s in body] == ["weight", "bias", "bn_scale", "bn_shift"] * (1 + 2 * 15)
    assert all(s.heads == 1 and not s.output for s in body)
    w, b = specs[-2:]
    assert (w.shape, b.shape, w.heads, b.heads, w.output, b.output) == ((60, 64), (60,), 6, 6, True, True)
    assert specs[names.index("stages.1.blocks.0.conv1.weight")].shape == (32, 16, 3, 3)
    assert len(net.norm_channels) == 31


def test_zenkenet_spec_order_and_roles():
    specs = ZenkeNet(10, 6, 6).param_specs
    assert [s.name for s in specs] == [f"{layer}.{kind}" for layer in ("conv1", "conv2", "conv3", "conv4", "fc", "head")
                                       for kind in ("weight", "bias")]
    assert [s.role for s in specs] == ["weight", "bias"] * 6
    assert specs[8].shape == (512, 2304)
    assert [s.output for s in specs] == [False] * 10 + [True, True] and specs[-1].heads == 6


def _random_stats(net: ResNet, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.norm_state().items():
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = 0.3 * torch.randn(value.shape, generator=g)
    net.load_norm_state(state)


def _reference_resnet(net: ResNet, x, flat, head, task):
    """A plain per-layer forward of one weight set in eval mode, independent of the grouped code."""
    p = dict(zip((s.name for s in net.param_specs), net.unflatten(flat)))

    def bn(h, name):
        return F.batch_norm(h, net.running_mean[name][task], net.running_var[name][task],
                            p[f"{name}.scale"], p[f"{name}.shift"], False, 0.0, 1e-5)

    h = F.relu(bn(F.conv2d(x, p["conv0.weight"], p["conv0.bias"], padding=1), "bn0"))
    for name, c_in, c_out, stride in net.block_layout:
        out = F.relu(bn(F.conv2d(h, p[f"{name}.conv1.weight"], p[f"{name}.conv1.bias"], stride, 1), f"{name}.bn1"))
        out = bn(F.conv2d(out, p[f"{name}.conv2.weight"], p[f"{name}.conv2.bias"], 1, 1), f"{name}.bn2")
        if stride != 1:
            pad = (c_out - c_in) // 2
            h = F.pad(h[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))
        h = F.relu(out + h)
    k = net.outputs_per_head
    return F.linear(h.mean((2, 3)), p["head.weight"][head * k:(head + 1) * k], p["head.bias"][head * k:(head + 1) * k])


def _reference_zenke(net: ZenkeNet, x, flat, head):
    p = dict(zip((s.name for s in net.param_specs), net.unflatten(flat)))
    h = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1))
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2)
    h = F.relu(F.conv2d(h, p["conv3.weight"], p["conv3.bias"], padding=1))
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv4.weight"], p["conv4.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), p["fc.weight"], p["fc.bias"]))
    k = net.outputs_per_head
    return F.linear(h, p["head.weight"][head * k:(head + 1) * k], p["head.bias"][head * k:(head + 1) * k])


def _weight_sets(net, sets: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([net.init_weights() for _ in range(sets)])


def test_forward_matches_a_plain_reference_and_shapes():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    resnet = ResNet(8, 10, 6, 6)
    _random_stats(resnet)
    flat = _weight_sets(resnet, 1)[0]
    assert torch.allclose(resnet(x, flat, 4), _reference_resnet(resnet, x, flat, 4, 4), atol=1e-5)
    assert torch.allclose(resnet(x, flat, 4, task=2), _reference_resnet(resnet, x, flat, 4, 2), atol=1e-5)
    every = resnet(x, flat, None, task=2)
    assert every.shape == (3, 60) and torch.allclose(every[:, 40:50], resnet(x, flat, 4, task=2), atol=1e-6)
    zenke = ZenkeNet(10, 6, 6)
    zflat = zenke.init_weights()
    assert torch.allclose(zenke(x, zflat, 5), _reference_zenke(zenke, x, zflat, 5), atol=1e-5)
    assert zenke(x, zflat, None).shape == (3, 60)
    assert ResNet(32, 10, 6, 6)(x[:2], ResNet(32, 10, 6, 6).init_weights(), 1).shape == (2, 10)


@pytest.mark.parametrize("grouped", [False, True], ids=["set by set (CPU)", "grouped convs (GPU)"])
@pytest.mark.parametrize("which", ["resnet", "zenke"])
def test_batched_weight_sets_equal_a_loop(which, grouped):
    net = ResNet(8, 10, 6, 6) if which == "resnet" else ZenkeNet(10, 6, 6)
    if grouped:  # what a GPU runs, here on the CPU
        net._set_by_set = lambda *args: None
    if which == "resnet":
        _random_stats(net)
    sets = _weight_sets(net, 6) + 0.01 * torch.randn(6, net.num_weights)
    x = torch.randn(5, 3, 32, 32)
    heads = torch.tensor([3, 0, 5, 1, 1, 2])
    tasks = torch.tensor([0, 0, 4, 5, 2, 2])
    out = net(x, sets, heads)
    assert out.shape == (6, 5, 10)
    loop = torch.stack([net(x, sets[b], int(heads[b])) for b in range(6)])
    assert torch.allclose(out, loop, atol=1e-5, rtol=1e-5)
    loop = torch.stack([net(x, sets[b], int(heads[b]), task=int(tasks[b])) for b in range(6)])
    assert torch.allclose(net(x, sets, heads, task=tasks), loop, atol=1e-5, rtol=1e-5)
    every = net(x, sets, None, task=tasks)
    loop = torch.stack([net(x, sets[b], None, task=int(tasks[b])) for b in range(6)])
    assert every.shape == (6, 5, 60) and torch.allclose(every, loop, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="evaluation only"):
        net(x, sets, heads, train=True)
    with pytest.raises(ValueError, match="head tensor"):
        net(x, sets[0], heads)


def test_training_updates_only_the_tasks_statistics_like_batchnorm2d():
    torch.manual_seed(0)
    net = ResNet(8, 10, 6, 6)
    flat = net.init_weights()
    x = torch.randn(8, 3, 32, 32) * 2 + 1
    before = net.norm_state()
    net(x, flat, 1, train=True)
    after = net.norm_state()
    for key in before:
        assert torch.equal(before[key][[0, 2, 3, 4, 5]], after[key][[0, 2, 3, 4, 5]]), key
        assert not torch.equal(before[key][1], after[key][1]), key
    # the first layer's statistics follow torch's BatchNorm2d (momentum 0.1, unbiased variance)
    p = dict(zip((s.name for s in net.param_specs), net.unflatten(flat)))
    bn = torch.nn.BatchNorm2d(16).train()
    bn(F.conv2d(x, p["conv0.weight"], p["conv0.bias"], padding=1))
    assert torch.allclose(after["bn0.running_mean"][1], bn.running_mean, atol=1e-6)
    assert torch.allclose(after["bn0.running_var"][1], bn.running_var, atol=1e-5)
    # single-head target (CL2): task passed explicitly, head 0 shared
    cl2 = ResNet(8, 10, 1, 3)
    cl2(x, cl2.init_weights(), 0, task=2, train=True)
    assert torch.all(cl2.running_mean["bn0"][:2] == 0) and torch.any(cl2.running_mean["bn0"][2] != 0)
    with pytest.raises(ValueError, match="pass task"):
        net(x, flat, None)
    with pytest.raises(ValueError, match="out of range"):
        cl2(x, cl2.init_weights(), 0, task=3)


def test_eval_uses_each_tasks_statistics_and_the_checkpoint_round_trips():
    torch.manual_seed(0)
    net = ResNet(8, 10, 6, 6)
    flat = net.init_weights()
    for _ in range(3):
        net(torch.randn(8, 3, 32, 32), flat, 0, train=True)
        net(torch.randn(8, 3, 32, 32) * 3 + 2, flat, 1, train=True)
    x = torch.randn(4, 3, 32, 32)
    out0, out1 = net(x, flat, 0), net(x, flat, 0, task=1)
    assert not torch.allclose(out0, out1, atol=1e-3)
    buffer = io.BytesIO()
    torch.save(net.norm_state(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())
    fresh = ResNet(8, 10, 6, 6)
    fresh.load_norm_state(state)
    assert torch.equal(fresh(x, flat, 0), out0) and torch.equal(fresh(x, flat, 0, task=1), out1)
    net(x, flat, 0, train=True)  # the saved state is a copy
    assert torch.equal(state["bn0.running_mean"], fresh.norm_state()["bn0.running_mean"])
    with pytest.raises(ValueError, match="keys differ"):
        fresh.load_norm_state({})
    with pytest.raises(ValueError, match="no batch norm"):
        ZenkeNet(10, 6, 6).load_norm_state(state)
    assert ZenkeNet(10, 6, 6).norm_state() == {}


@pytest.mark.parametrize("net", [ResNet(8, 10, 6, 6), ZenkeNet(10, 6, 6)], ids=["resnet", "zenke"])
def test_head_mask_selects_one_heads_rows(net):
    parts = dict(zip((s.name for s in net.param_specs), net.unflatten(net.head_mask(2))))
    assert all(parts[s.name].all() for s in net.param_specs if not s.output)
    rows = torch.zeros(60, dtype=torch.bool)
    rows[20:30] = True
    assert torch.equal(parts["head.weight"].all(1), rows) and torch.equal(parts["head.weight"].any(1), rows)
    assert torch.equal(parts["head.bias"], rows)
    assert int(net.head_mask(2).sum()) == net.num_weights - 5 * (10 * parts["head.weight"].shape[1] + 10)


def test_init_weights_bounds_and_batchnorm_identity():
    torch.manual_seed(0)
    net = ResNet(8, 10, 6, 6)
    parts = dict(zip((s.name for s in net.param_specs), net.unflatten(net.init_weights())))
    for spec in net.param_specs:
        t = parts[spec.name]
        if spec.role == "weight":
            bound = 1 / math.sqrt(math.prod(spec.shape[1:]))
            assert t.abs().max() <= bound and t.abs().max() > 0.9 * bound, spec.name
        elif spec.role == "bn_scale":
            assert torch.all(t == 1)
        elif spec.role == "bn_shift":
            assert torch.all(t == 0)
    assert parts["conv0.weight"].abs().max() <= 1 / math.sqrt(27)
    assert parts["stages.2.blocks.0.conv1.weight"].abs().max() <= 1 / math.sqrt(32 * 9)


@pytest.mark.parametrize("which", ["resnet", "zenke"])
def test_gradients_reach_a_generator_of_the_flat_weights(which):
    torch.manual_seed(0)
    net = ResNet(8, 10, 6, 6) if which == "resnet" else ZenkeNet(10, 6, 6)
    generator = torch.nn.Linear(2, net.num_weights)
    with torch.no_grad():
        generator.bias.copy_(net.init_weights())
        generator.weight.mul_(0.01)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(net(x, generator(torch.ones(2)), 3, train=True), y)
    loss.backward()
    grad = generator.bias.grad
    parts = dict(zip((s.name for s in net.param_specs), net.unflatten(grad)))
    assert torch.isfinite(grad).all() and generator.weight.grad.abs().sum() > 0
    assert parts["conv1.weight" if which == "zenke" else "conv0.weight"].abs().sum() > 0
    assert parts["head.weight"][30:40].abs().sum() > 0 and parts["head.weight"][:30].abs().sum() == 0


def test_zenkenet_dropout_only_in_training():
    torch.manual_seed(0)
    net = ZenkeNet(10, 6, 6)
    flat, x = net.init_weights(), torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x, flat, 0), net(x, flat, 0))
    torch.manual_seed(1)
    a = net(x, flat, 0, train=True)
    torch.manual_seed(1)
    assert torch.equal(a, net(x, flat, 0, train=True))
    assert not torch.allclose(a, net(x, flat, 0, train=True)) and not torch.allclose(a, net(x, flat, 0))
    with pytest.raises(ValueError, match="32, 32"):
        net(torch.randn(2, 3, 28, 28), flat, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_both_nets_run_on_cuda():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32, device="cuda")
    heads = torch.tensor([0, 3, 5], device="cuda")
    for net in (ResNet(32, 10, 6, 6), ZenkeNet(10, 6, 6)):
        sets = torch.stack([net.init_weights() for _ in range(3)]).cuda().requires_grad_()
        out = net(x, sets[0], 3, train=True)
        out.sum().backward()
        assert out.device.type == "cuda" and sets.grad is not None and torch.isfinite(sets.grad).all()
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False  # grouped and per-set convs may pick different TF32 kernels
        try:
            batched = net(x, sets.detach(), heads)
            loop = torch.stack([net(x, sets[b].detach(), int(heads[b])) for b in range(3)])
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        assert batched.shape == (3, 4, 10)
        assert (batched - loop).abs().max() <= 1e-4 * loop.abs().max() + 1e-5
        assert all(t.device.type == "cpu" for t in net.norm_state().values())
    resnet = ResNet(8, 10, 6, 6, device="cuda")
    assert resnet.running_mean["bn0"].device.type == "cuda"
    resnet.load_norm_state(resnet.norm_state())
    assert resnet.running_var["bn0"].device.type == "cuda"
