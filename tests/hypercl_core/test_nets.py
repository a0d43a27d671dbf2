import math

import pytest
import torch
from torch import nn

from hypercl_core.accounting import count_params
from hypercl_core.config import load_config
from hypercl_core.data.benchmarks import build_benchmark
from hypercl_core.hnets.mlp_hnet import HyperNetwork
from hypercl_core.methods.hnet import HnetLearner
from hypercl_core.methods.hypermask import HyperMaskLearner
from hypercl_core.nets.mlp import TargetMLP


def test_split_mnist_cl1_sizes_match_the_paper():
    cfg = load_config("split_mnist_cl1")
    counts = count_params(cfg)
    assert counts.target_weights == 478_410
    assert counts.hnet_weights == 465_192
    assert counts.task_embedding_weights == 480
    target = TargetMLP(784, [400, 400], 2, 5, "relu")
    hnet = HyperNetwork(target.num_weights, 96, [10, 10], "elu", 42_000, 96)
    assert target.num_weights == 478_410 and hnet.num_params() == 465_192 and hnet.num_chunks == 12


def test_cl2_uses_one_shared_head():
    assert count_params(load_config("split_mnist_cl2")).target_weights == 475_202


def test_accounting_equals_built_modules_for_full_and_chunked():
    for overrides in ([], ["hnet.chunk_dim=null", "target.hidden=[20]"], ["hnet.hidden=[]", "hnet.chunk_dim=333"]):
        cfg = load_config("split_mnist_cl1", overrides)
        target = TargetMLP(784, cfg.target.hidden, 2, 5, "relu")
        h = cfg.hnet
        hnet = HyperNetwork(target.num_weights, h.temb_dim, h.hidden, h.activation, h.chunk_dim, h.cemb_dim)
        counts = count_params(cfg)
        assert counts.target_weights == target.num_weights
        assert counts.hnet_weights == hnet.num_params()


def test_chunks_are_assembled_in_order_and_the_tail_is_cut():
    torch.manual_seed(0)
    hnet = HyperNetwork(num_outputs=1000, temb_dim=3, hidden=[7], activation="relu", chunk_dim=300, cemb_dim=2)
    assert hnet.num_chunks == math.ceil(1000 / 300) == 4
    embs = torch.randn(2, 3)
    out = hnet(embs)
    assert out.shape == (2, 1000)
    for b in range(2):
        pieces = []
        for c in range(hnet.num_chunks):
            h = torch.relu(hnet.layers[0](torch.cat([embs[b], hnet.chunk_embs[c]])))
            pieces.append(hnet.layers[1](h))
        assert torch.allclose(out[b], torch.cat(pieces)[:1000], atol=1e-6)


@pytest.mark.parametrize("hidden", [[7, 5], []])
@pytest.mark.parametrize("batch", [1, 4])
def test_chunked_forward_has_the_gradients_of_the_concatenated_input(hidden, batch):
    """The first layer runs as task part + chunk part and the output layer drops the padded tail
    itself (one embedding, a training step, takes another path than several); the gradients are
    those of the definition, for the embeddings too."""
    torch.manual_seed(0)
    hnet = HyperNetwork(num_outputs=1000, temb_dim=3, hidden=hidden, activation="elu", chunk_dim=300, cemb_dim=2)
    embs, probe = torch.randn(batch, 3, requires_grad=True), torch.randn(batch, 1000)

    def by_definition():
        h = torch.cat([embs.unsqueeze(1).expand(-1, 4, -1), hnet.chunk_embs.unsqueeze(0).expand(batch, -1, -1)], -1)
        for layer in hnet.layers[:-1]:
            h = hnet.act(layer(h))
        return hnet.layers[-1](h).reshape(batch, -1)[:, :1000]

    inputs = [embs, *hnet.parameters()]
    grads = [torch.autograd.grad((f() * probe).sum(), inputs) for f in (lambda: hnet(embs), by_definition)]
    for ours, reference in zip(*grads):
        assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)


def test_init_is_xavier_with_zero_biases_and_normal_chunk_embeddings():
    torch.manual_seed(0)
    hnet = HyperNetwork(50_000, 96, [10, 10], "elu", 42_000, 96)
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in hnet.layers)
    bound = math.sqrt(6 / (10 + 42_000))
    assert hnet.layers[-1].weight.abs().max() <= bound
    assert abs(hnet.chunk_embs.std().item() - 1) < 0.2


def test_full_hnet_output_blocks_get_their_own_xavier_scale():
    """The 1D-regression target (1-10-10-1): its one-unit output bias must not start at the 141-wide scale."""
    target = TargetMLP(1, [10, 10], 1, 1, "sigmoid")
    torch.manual_seed(0)
    hnet = HyperNetwork(target.num_weights, 2, [10, 10], "sigmoid", output_blocks=list(target.param_sizes))
    blocks = hnet.layers[-1].weight.split(list(target.param_sizes), dim=1)
    bounds = [math.sqrt(6 / (10 + n)) for n in target.param_sizes]
    assert all(b.abs().max() <= bound for b, bound in zip(blocks, bounds))
    # Each block fills its own range (seeded, so not flaky): the output bias reaches 3x the whole layer's bound.
    assert all(b.abs().max() > 0.7 * bound for b, bound in zip(blocks, bounds))
    assert blocks[-1].abs().max() > 3 * math.sqrt(6 / (10 + target.num_weights))
    with pytest.raises(ValueError, match="output_blocks"):
        HyperNetwork(target.num_weights, 2, [10], "sigmoid", output_blocks=[1, 2])


@pytest.mark.parametrize("blocks", [None, [5, 20, 975]])
def test_a_seed_initializes_as_nn_linear_layers_would(blocks):
    """The (h, units) output layer draws its init as nn.Linear's (units, h) did, and consumes the
    random stream as it did: a seed starts every run from the init that earlier code gave it."""
    dims = [3, 7, 1000]
    torch.manual_seed(0)
    hnet = HyperNetwork(1000, 3, dims[1:-1], "elu", output_blocks=blocks)
    after = torch.rand(3)
    torch.manual_seed(0)
    reference = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    for layer in reference:
        nn.init.xavier_uniform_(layer.weight)
    with torch.no_grad():
        for block in reference[-1].weight.split(blocks) if blocks else []:
            nn.init.xavier_uniform_(block)
    assert torch.equal(torch.rand(3), after)
    state = hnet.state_dict()
    for i, layer in enumerate(reference):
        assert torch.equal(state[f"layers.{i}.weight"], layer.weight)


@pytest.mark.parametrize("chunk_dim", [300, None])
def test_output_layer_is_held_units_last_and_checkpoints_keep_nn_linear_layout(chunk_dim):
    """The output layer's weight is (h, units) in memory, its gradient arrives in that layout, and its
    state_dict holds nn.Linear's (units, h): a checkpoint of the earlier layout loads to the same outputs."""
    torch.manual_seed(0)
    hnet = HyperNetwork(1000, 3, [7], "elu", chunk_dim, 2 if chunk_dim else 0)
    width = 300 if chunk_dim else 1000
    weight = hnet.layers[-1].weight
    assert weight.shape == (7, width) and weight.is_contiguous()
    hnet(torch.randn(1, 3)).square().sum().backward()
    assert weight.grad.shape == weight.shape and weight.grad.is_contiguous()
    state = hnet.state_dict()
    assert state["layers.1.weight"].shape == (width, 7)
    embs = torch.randn(3, 3)
    old = nn.Linear(7, width)  # what earlier code held, and wrote into checkpoints
    with torch.no_grad():
        old.weight.copy_(state["layers.1.weight"])
    assert torch.equal(old.weight, weight.t())
    other = HyperNetwork(1000, 3, [7], "elu", chunk_dim, 2 if chunk_dim else 0)
    other.load_state_dict({**state, "layers.1.weight": old.weight.detach().clone()})
    assert torch.equal(other(embs), hnet(embs))


def test_output_init_can_be_rescaled_to_a_requested_weight_std():
    torch.manual_seed(0)
    hnet = HyperNetwork(413_284, 96, [25, 25], "elu", 75_000, 96)
    probe = torch.randn(16, 96)
    assert hnet(probe).std() < 0.03  # the Xavier output layer of a 75,000-wide chunk
    hnet.rescale_output_init(0.06, probe)
    assert hnet(probe).std().item() == pytest.approx(0.06, rel=1e-4)
    assert hnet(torch.randn(4, 96)).std().item() == pytest.approx(0.06, rel=0.2)  # other embeddings too
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in hnet.layers)


def test_hnet_uses_per_tensor_init_and_hypermask_does_not(data_root):
    cpu = torch.device("cpu")
    cfg = load_config("regression1d")
    learner = HnetLearner(cfg, build_benchmark(cfg.benchmark, 0, cpu), cpu)
    assert learner.hnet.output_blocks == [10, 10, 100, 10, 10, 1]
    cfg = load_config("split_mnist_cl1_hypermask", ["target.hidden=[20]"])
    assert HyperMaskLearner(cfg, build_benchmark(cfg.benchmark, 0, cpu, str(data_root)), cpu).hnet.output_blocks is None
    cfg = load_config("split_mnist_cl1")
    assert HnetLearner(cfg, build_benchmark(cfg.benchmark, 0, cpu, str(data_root)), cpu).hnet.output_blocks is None


def test_batched_weights_equal_one_network_at_a_time():
    torch.manual_seed(0)
    target = TargetMLP(5, [6, 4], 3, 4, "elu")
    weights = torch.randn(4, target.num_weights)
    x = torch.randn(9, 5)
    heads = torch.tensor([2, 0, 3, 1])
    batched = target(x, weights, heads)
    assert batched.shape == (4, 9, 3)
    for t in range(4):
        assert torch.allclose(batched[t], target(x, weights[t], int(heads[t])), atol=1e-6)
    full = target(x, weights[0], None)
    assert torch.allclose(full[:, 6:9], target(x, weights[0], 2), atol=1e-6)


def test_head_mask_keeps_shared_layers_and_one_head():
    target = TargetMLP(5, [6], 3, 4, "relu")
    mask = target.head_mask(2)
    w1, b1, w2, b2 = target.unflatten(mask)
    assert w1.all() and b1.all()
    assert w2[6:9].all() and b2[6:9].all()
    assert w2.sum() == 3 * 6 and b2.sum() == 3
