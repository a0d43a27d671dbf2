"""The random-architecture grid and its stratified sampler (no training)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from hypercl_core.config import load_config
from hypercl_core.errors import UserError
from hypercl_core.hnets.mlp_hnet import HyperNetwork
from hypercl_core.nets.mlp import TargetMLP
from search_spaces.architectures import (CEMB_DIMS, OUTPUT_SIZES, Architecture, all_architectures, bin_edges,
                                         bin_index, bin_quotas, stratified_sample)


@pytest.fixture(scope="module")
def split_archs():
    base = load_config("split_mnist_cl1")
    return base, all_architectures(base)


def test_grid_is_the_papers(split_archs):
    _, archs = split_archs
    hidden = {a.hidden for a in archs}
    assert {len(h) for h in hidden} == {1, 2}
    assert {size for h in hidden for size in h} == {5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
    assert {a.cemb_dim for a in archs} == set(CEMB_DIMS) == {8, 12, 24, 56, 96}
    assert {a.chunk_dim for a in archs} == set(OUTPUT_SIZES)
    assert {10, 750, 1000, 5000, 10000, 40000} <= set(OUTPUT_SIZES) and len(OUTPUT_SIZES) == 21
    assert len(archs) == (11 + 11 * 11) * 5 * 21


def test_ratio_before_training_equals_the_built_modules(split_archs):
    base, archs = split_archs
    target = TargetMLP(784, base.target.hidden, 2, base.benchmark.num_tasks, base.target.activation)
    for arch in random.Random(0).sample(archs, 5):
        hnet = HyperNetwork(target.num_weights, base.hnet.temb_dim, list(arch.hidden), base.hnet.activation,
                            arch.chunk_dim, arch.cemb_dim)
        built = (sum(p.numel() for p in hnet.parameters()) + base.benchmark.num_tasks * base.hnet.temb_dim)
        assert built / target.num_weights == pytest.approx(arch.ratio, rel=1e-12)
        assert hnet(torch.zeros(1, base.hnet.temb_dim)).shape == (1, target.num_weights)


def test_sample_stays_in_range_and_fills_bins_evenly(split_archs):
    _, archs = split_archs
    edges = bin_edges(0.05, 2.0, 8)
    chosen = stratified_sample(archs, 80, (0.05, 2.0), 8, seed=3)
    assert len(chosen) == 80 and len(set(chosen)) == 80
    assert all(0.05 <= a.ratio <= 2.0 for a in chosen)
    per_bin = Counter(bin_index(a.ratio, edges) for a in chosen)
    assert sorted(per_bin) == list(range(8)) and set(per_bin.values()) == {10}
    # plain random draws over the same range are far from even: the stratification is doing work
    in_range = [a for a in archs if 0.05 <= a.ratio <= 2.0]
    plain = Counter(bin_index(a.ratio, edges) for a in random.Random(3).sample(in_range, 80))
    assert max(plain.values()) - min(plain.get(i, 0) for i in range(8)) > 5


def test_a_thin_bin_gives_its_share_to_the_others(split_archs):
    _, archs = split_archs
    # SplitMNIST's smallest ratio is ~0.022, so log bins from 0.01 start with an empty bin and a thin one
    edges = bin_edges(0.01, 2.0, 10)
    chosen = stratified_sample(archs, 100, (0.01, 2.0), 10, seed=0)
    counts = [sum(bin_index(a.ratio, edges) == i for a in chosen) for i in range(10)]
    capacity = [sum(bin_index(a.ratio, edges) == i for a in archs) for i in range(10)]
    assert capacity[0] == 0 and counts[0] == 0 and sum(counts) == 100
    full = [c for c, cap in zip(counts, capacity) if cap > c]
    assert max(full) - min(full) <= 1


def test_quotas_are_as_even_as_capacity_allows():
    rng = random.Random(0)
    assert bin_quotas([100, 100, 100], 10, rng) in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert bin_quotas([1, 0, 50, 50], 20, rng) in ([1, 0, 10, 9], [1, 0, 9, 10])
    assert sum(bin_quotas([2, 2, 2], 6, rng)) == 6


def test_same_seed_same_architectures(split_archs):
    _, archs = split_archs
    first = stratified_sample(archs, 30, (0.01, 2.0), 5, seed=11)
    assert first == stratified_sample(archs, 30, (0.01, 2.0), 5, seed=11)
    assert first != stratified_sample(archs, 30, (0.01, 2.0), 5, seed=12)
    assert all(isinstance(a, Architecture) for a in first)


def test_linear_bins_and_the_edges():
    assert bin_edges(0.5, 2.5, 4, "linear") == [0.5, 1.0, 1.5, 2.0, 2.5]
    log = bin_edges(0.01, 1.0, 2)
    assert log[1] == pytest.approx(0.1) and log[-1] == 1.0
    assert bin_index(1.0, log) == 1 and bin_index(0.01, log) == 0 and bin_index(1.01, log) == -1


def test_more_architectures_than_the_range_holds_is_a_user_error(split_archs):
    _, archs = split_archs
    with pytest.raises(UserError, match="lower --n-archs or widen --ratio-range"):
        stratified_sample(archs, 10, (0.001, 0.02), 3)
