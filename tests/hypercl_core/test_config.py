import pytest

from hypercl_core.accounting import count_params
from hypercl_core.config import available_presets, config_from_flat, load_config
from hypercl_core.errors import ConfigError


def test_every_preset_loads_and_validates():
    names = available_presets()
    assert {"split_mnist_cl1", "split_mnist_cl2", "split_mnist_cl3", "permuted_mnist10_cl1",
            "permuted_mnist10_cl2", "permuted_mnist10_cl3", "regression1d"} <= set(names)
    for method in ("hypermask", "hnet_r", "hnet_tir"):  # every method on both MNIST benchmarks
        for bench in ("split_mnist", "permuted_mnist10"):
            assert any(n.startswith(bench) and n.endswith(method) for n in names), (bench, method)
    for name in names:
        cfg = load_config(name)
        assert cfg.benchmark.num_tasks >= 1
        assert count_params(cfg).compression_ratio > 0


def test_extends_merges_parent_and_overrides_win():
    cfg = load_config("split_mnist_cl3", ["train.lr=1e-4", "hnet.hidden=[25,25]", "hnet.chunk_dim=null"])
    assert cfg.benchmark.scenario == "cl3"
    assert cfg.target.hidden == [400, 400]  # from the parent preset
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.hnet.hidden == [25, 25]
    assert cfg.hnet.chunk_dim is None


def test_flat_round_trip_is_identity():
    cfg = load_config("permuted_mnist10_cl1")
    flat = cfg.flat()
    assert flat["hnet.chunk_dim"] == 78000 and flat["method.beta"] == 0.01
    assert config_from_flat(flat) == cfg


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("hnet.hiden=[5]", "unknown config key 'hnet.hiden'"),
        ("nosuch=1", "unknown config key 'nosuch'"),
        ("train.lr=abc", "config key 'train.lr'"),
        ("hnet.hidden=10", "config key 'hnet.hidden'"),
        ("method.beta=-0.1", "config key 'method.beta'"),
        ("target.hidden=[]", "config key 'target.hidden'"),
        ("hnet.chunk_dim=0", "config key 'hnet.chunk_dim'"),
        ("benchmark.num_tasks=6", "num_tasks for split_mnist must be at most 5"),
        ("device=gpu", "device must be"),
        ("novalue", "is not key=value"),
    ],
)
def test_bad_values_name_the_key_in_one_line(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("split_mnist_cl1", [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="split_mnist_cl1"):
        load_config("split_mnist_cl9")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "is empty"),
        ("# only a comment\n\n# and another\n", "is empty"),
        ("{}\n", "is empty"),
        ("- benchmark\n- train\n", "holds a list, not a mapping"),
        ("split_mnist_cl1\n", "holds a plain string, not a mapping"),
        ("3\n", "holds a single int value, not a mapping"),
        ("train:\n  lr: 0.01\n", "names no benchmark"),
    ],
)
def test_a_config_file_without_a_benchmark_is_refused_in_one_line(tmp_path, text, fragment):
    """An empty file would otherwise train on the defaults: a full SplitMNIST run nobody asked for."""
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), ["train.iters_per_task=1"])
    message = str(info.value)
    assert fragment in message and str(path) in message
    assert "`benchmark`" in message and "hypercl presets" in message  # how to fix it
    assert "\n" not in message


def test_a_file_that_extends_a_preset_needs_nothing_else(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: split_mnist_cl3\n")
    assert load_config(str(path)) == load_config("split_mnist_cl3")
