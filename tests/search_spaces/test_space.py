"""Search spaces: loading, validation messages, chunk fitting and the Tune bridge."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hypercl_core.accounting import count_params
from hypercl_core.config import load_config
from hypercl_core.errors import UserError
from search_spaces.space import (
    DEFAULT_CHUNK_DIMS,
    SearchSpace,
    available_spaces,
    compression_ratio,
    encode_choice,
    fit_chunk_dim,
    load_space,
)

PRESETS = ["split_mnist_cl1", "permuted_mnist10_cl1"]


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def assert_one_line_error(exc: pytest.ExceptionInfo[UserError], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("space", ["paper_grid", "smoke"])
@pytest.mark.parametrize("preset", PRESETS)
def test_builtin_spaces_load_and_fit_presets(space: str, preset: str) -> None:
    load_space(space).check_against(load_config(preset))


@pytest.mark.parametrize("preset", ["split_mnist_cl1_hypermask", "permuted_mnist10_cl3_hypermask"])
def test_hypermask_space_fits_hypermask_presets_and_keeps_the_hnet_whole(preset: str) -> None:
    space = load_space("hypermask_grid")
    base = load_config(preset)
    space.check_against(base)
    cfg = space.materialize(space.decode({k: encode_choice(v.probe_values()[-1]) for k, v in space.params.items()}), base)
    assert cfg is not None and cfg.method.name == "hypermask" and cfg.hnet.chunk_dim is None


def test_spaces_resolve_by_name_file_name_and_path() -> None:
    assert {"paper_grid", "smoke"} <= set(available_spaces())
    by_path = load_space(Path(__file__).parents[2] / "search_spaces" / "smoke.yaml")
    assert load_space("smoke") == load_space("smoke.yaml") == by_path
    with pytest.raises(UserError) as exc:
        load_space("no_such_space")
    assert_one_line_error(exc, "no_such_space", "paper_grid")


def test_paper_grid_matches_appendix_c() -> None:
    space = load_space("paper_grid")
    choices = {key: spec.choice for key, spec in space.params.items()}
    assert choices["hnet.hidden"] == [[], [5, 5], [10, 10], [25, 25], [50, 50], [100, 100], [10], [50], [100]]
    assert choices["hnet.temb_dim"] == choices["hnet.cemb_dim"] == [8, 12, 24, 36, 62, 96, 128]
    assert choices["method.beta"] == [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]
    assert choices["hnet.activation"] == ["linear", "relu", "elu", "leaky_relu"]
    assert choices["train.lr"] == [0.0001, 0.0005, 0.001]
    assert space.max_compression_ratio == 1.0 and "hnet.chunk_dim" not in space.params
    assert space.chunk_dims == DEFAULT_CHUNK_DIMS and DEFAULT_CHUNK_DIMS[-1] == 100000


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("name: x\nparams: {hnet.hidden: {choice: [", ["bad.yaml", "not valid YAML"]),
        ("- just a list", ["bad.yaml", "mapping"]),
        ("name: x\nfoo: 1\nparams: {}", ["bad.yaml", "unknown key 'foo'", "valid keys"]),
        ("name: x\nparams: {hnet.hidden: {choise: [[5]]}}", ["params.hnet.hidden", "unknown kind 'choise'"]),
        ("name: x\nparams: {hnet.hidden: {choice: []}}",
         ["bad.yaml: params.hnet.hidden: choice list is empty; give at least one value"]),
        ("name: x\nparams: {train.lr: {uniform: [0.1, 0.2], choice: [1]}}", ["params.train.lr", "exactly one"]),
        ("name: x\nparams: {train.lr: {}}", ["params.train.lr", "exactly one"]),
        ("name: x\nparams: {train.lr: {loguniform: [0, 0.1]}}", ["params.train.lr", "lo must be > 0"]),
        ("name: x\nparams: {train.lr: {uniform: [0.1, 0.01]}}", ["params.train.lr", "lo must be below hi"]),
        ("name: x\nparams: {hnet.temb_dim: {randint: [9, 8]}}", ["params.hnet.temb_dim", "lo must not exceed hi"]),
        ("name: x\nparams: {train.lr: {uniform: [a, 0.1]}}", ["params.train.lr.uniform.0", "got 'a'"]),
        ("name: x\nparams: {hnet.hidden: {choice: 5}}", ["params.hnet.hidden.choice", "valid list"]),
        ("name: x\nparams: {hnet.hidden: [5]}", ["params.hnet.hidden", "fix it in"]),
        ("name: x\nmax_compression_ratio: 0\nparams: {}", ["max_compression_ratio", "greater than 0"]),
        ("name: x\nchunk_dims: []\nparams: {}", ["chunk_dims"]),
        ("params: {}", ["name", "Field required"]),
    ],
)
def test_bad_space_files_give_one_line_errors(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(UserError) as exc:
        load_space(write_space(tmp_path, text))
    assert_one_line_error(exc, *fragments)


@pytest.mark.parametrize(
    "params, fragments",
    [
        ({"hnet.hiden": {"choice": [[5]]}}, ["unknown config key 'hnet.hiden' in space s"]),
        ({"hnet": {"choice": [1]}}, ["unknown config key 'hnet'"]),
        ({"hnet.hidden": {"choice": [[10], 7]}}, ["space s: params.hnet.hidden", "7"]),
        ({"hnet.activation": {"choice": ["relu", "swish"]}}, ["params.hnet.activation", "'swish'"]),
        ({"method.beta": {"uniform": [-1.0, 0.1]}}, ["params.method.beta", "-1.0"]),
    ],
)
def test_check_against_rejects_bad_keys_and_values(params: dict, fragments: list[str]) -> None:
    space = SearchSpace(name="s", params=params)
    with pytest.raises(UserError) as exc:
        space.check_against(load_config("split_mnist_cl1"))
    assert_one_line_error(exc, *fragments)


def test_check_against_rejects_unreachable_bound() -> None:
    space = SearchSpace(name="s", max_compression_ratio=0.001, params={"hnet.hidden": {"choice": [[100, 100]]}})
    with pytest.raises(UserError) as exc:
        space.check_against(load_config("split_mnist_cl1"))
    assert_one_line_error(exc, "no architecture in space s reaches compression ratio <= 0.001", "smallest:",
                          "raise max_compression_ratio")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("max_ratio", [0.1, 0.3, 1.0])
def test_fit_chunk_dim_picks_largest_feasible_candidate(preset: str, max_ratio: float) -> None:
    cfg = load_config(preset)
    feasible = []
    for dim in DEFAULT_CHUNK_DIMS:
        probe = cfg.model_copy(deep=True)
        probe.hnet.chunk_dim = dim
        if count_params(probe).compression_ratio <= max_ratio:
            feasible.append(dim)
    fitted = fit_chunk_dim(cfg, max_ratio, DEFAULT_CHUNK_DIMS)
    assert feasible and fitted is not None
    assert fitted.hnet.chunk_dim == max(feasible)
    assert compression_ratio(fitted) <= max_ratio
    assert cfg.hnet.chunk_dim == load_config(preset).hnet.chunk_dim  # input untouched


def test_fit_chunk_dim_returns_none_when_unreachable() -> None:
    assert fit_chunk_dim(load_config("split_mnist_cl1"), 1e-4, DEFAULT_CHUNK_DIMS) is None


def test_materialize_every_paper_architecture_respects_bound() -> None:
    space, base = load_space("paper_grid"), load_config("split_mnist_cl1")
    keys = ["hnet.hidden", "hnet.temb_dim", "hnet.cemb_dim"]
    fitted = 0
    for values in itertools.product(*(space.params[key].choice for key in keys)):
        cfg = space.materialize(dict(zip(keys, values)), base)
        if cfg is not None:
            fitted += 1
            assert [cfg.hnet.hidden, cfg.hnet.temb_dim, cfg.hnet.cemb_dim] == list(values)
            assert compression_ratio(cfg) <= 1.0
    assert fitted > 0


def test_materialize_with_fixed_chunk_only_checks_ratio() -> None:
    space = SearchSpace(name="s", params={"hnet.chunk_dim": {"choice": [42000, 10]}})
    base = load_config("split_mnist_cl1")
    kept = space.materialize({"hnet.chunk_dim": 42000}, base)
    assert kept is not None and kept.hnet.chunk_dim == 42000
    # 10-weight chunks need ~48k chunk embeddings of 96: far above the bound.
    assert space.materialize({"hnet.chunk_dim": 10}, base) is None


def test_tune_space_builds_and_decode_round_trips() -> None:
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("paper_grid")
    domains = space.tune_space()
    assert set(domains) == set(space.params)
    assert all(isinstance(domain, tune.search.sample.Categorical) for domain in domains.values())
    assert "[10, 10]" in domains["hnet.hidden"].categories
    OptunaSearch.convert_search_space(domains)  # Optuna accepts every encoded category
    for key, spec in space.params.items():
        for value, encoded in zip(spec.choice, domains[key].categories):
            sample = {k: domains[k].categories[0] for k in domains} | {key: encoded}
            assert space.decode(sample)[key] == value


def test_range_domains_and_decode_passthrough() -> None:
    from ray import tune

    space = SearchSpace(name="s", params={
        "train.lr": {"loguniform": [1e-4, 1e-2]},
        "method.beta": {"uniform": [0.0, 1.0]},
        "hnet.temb_dim": {"randint": [8, 16]},
    })
    domains = space.tune_space()
    assert isinstance(domains["train.lr"].sampler, tune.search.sample.LogUniform)
    assert (domains["hnet.temb_dim"].lower, domains["hnet.temb_dim"].upper) == (8, 17)  # inclusive 16
    sample = {"train.lr": 0.001, "method.beta": 0.5, "hnet.temb_dim": 16, "extra": 1}
    assert space.decode(sample) == {"train.lr": 0.001, "method.beta": 0.5, "hnet.temb_dim": 16}


def test_decode_rejects_values_outside_the_choices() -> None:
    space = load_space("smoke")
    with pytest.raises(UserError) as exc:
        space.decode({"hnet.hidden": "[7]", "hnet.temb_dim": 24, "method.beta": 0.01, "train.lr": 0.001})
    assert_one_line_error(exc, "params.hnet.hidden", "[7]")


def test_a_space_that_searches_keys_the_method_does_not_use_is_refused():
    """HNET+R's classifier has no hypernetwork: sweeping hnet.* for it would log and rank keys that do nothing."""
    with pytest.raises(UserError, match=r"unknown config key 'hnet\.hidden' in space smoke \(method hnet_r does not "
                                        r"use the hnet section\)"):
        load_space("smoke").check_against(load_config("split_mnist_cl1_hnet_r"))
