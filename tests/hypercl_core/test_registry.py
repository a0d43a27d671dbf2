"""Methods, targets and benchmarks as registry entries: one declaration each, strict sections,
and configs saved by earlier versions (with keys their method ignored) still load as they ran."""

import pytest
import torch
import yaml

from hypercl_core.accounting import count_params
from hypercl_core.config import available_presets, build_config, config_from_flat, load_config
from hypercl_core.data.benchmarks import BENCHMARKS
from hypercl_core.errors import ConfigError
from hypercl_core.experiment import resume_run
from hypercl_core.methods import METHODS, subsystem_names
from hypercl_core.metrics import matrix_names, primary_metric
from hypercl_core.nets.targets import TARGETS, classifier_target
from hypercl_core.registry import OPTIONAL_SECTIONS
from tests.conftest import run_cut_after_first_task, tiny


def test_every_preset_has_exactly_the_sections_its_method_reads():
    for preset in available_presets():
        cfg = load_config(preset)
        spec = METHODS[cfg.method.name]
        present = {s for s in OPTIONAL_SECTIONS if getattr(cfg, s) is not None}
        assert present == spec.reads, preset
        assert primary_metric(cfg) in matrix_names(cfg) and subsystem_names(cfg)


@pytest.mark.parametrize("preset, overrides, message", [
    # HNET+R's classifier is an ordinary network: no hnet, no method keys (its VAE's beta is replay.beta)
    ("split_mnist_cl1_hnet_r", ["method.beta=0.05"], "unknown config key 'method.beta' in split_mnist_cl1_hnet_r; "
                                                     "method hnet_r takes: name"),
    ("split_mnist_cl1_hnet_r", ["hnet.hidden=[8]"], "method hnet_r does not use the hnet section (it reads replay, "
                                                    "target); remove hnet from the config"),
    ("class_mnist_vae", ["target.hidden=[8]"], "method replay does not use the target section (it reads replay)"),
    ("split_mnist_cl1_hypermask", ["method.lookahead=true"], "method hypermask takes: name, beta, reg_subset"),
    ("split_mnist_cl1", ["target.depth=20"], "target mlp takes: name, hidden, activation"),
    ("split_mnist_cl1", ["target.name=resnet"], "target resnet reads images and split_mnist gives vectors; set "
                                                "benchmark.as_rgb32=true"),
    ("split_mnist_cl1", ["target.name=convnet"], "'convnet' is none of 'mlp', 'resnet', 'zenke'"),
    ("split_mnist_cl1", ["target.name=resnet", "target.depth=30", "benchmark.as_rgb32=true"], "6n+2 layers"),
    ("permuted_mnist10_cl1", ["benchmark.as_rgb32=true"], "permuted_mnist has none"),
    ("split_mnist_cl1", ["benchmark.name=split_cifar", "benchmark.num_tasks=12"], "at most 11"),
    ("split_mnist_cl1_hnet_r", ["benchmark.as_rgb32=true"], "the replay models generate flat MNIST digits"),
    ("split_mnist_cl1", ["train.epochs_per_task=2"], "exactly one: set the other to null"),
])
def test_keys_and_sections_a_method_or_target_does_not_use_are_errors(preset, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(preset, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_set_method_name_reads_as_a_preset_extending_with_that_method():
    """The preset's keys the new method has no use for stay behind; those it shares carry over."""
    cfg = load_config("split_mnist_cl1", ["method.name=hnet_r", "replay.beta=0.01"])
    assert cfg.hnet is None and cfg.target.hidden == [400, 400] and set(type(cfg.method).model_fields) == {"name"}
    cfg = load_config("split_mnist_cl1", ["method.name=hypermask", "hnet.chunk_dim=null", "method.beta=0.002"])
    assert cfg.method.beta == 0.002 and cfg.hnet.hidden == [10, 10]
    cfg = load_config("split_mnist_cl1", ["target.name=zenke", "benchmark.as_rgb32=true"])
    assert cfg.target.name == "zenke" and count_params(cfg).target_weights == classifier_target(cfg).num_weights


# What the flat params of runs written before the registry held: every method had every method
# key, the replay model had the classifier sections, HyperMask had lookahead, targets had no name.
LEGACY = {
    "split_mnist_cl1": {"method.sparsity": 0.0, "method.l1": 0.001},
    "split_mnist_cl1_hypermask": {"method.lookahead": False},
    "split_mnist_cl1_hnet_r": {"method.beta": 0.01, "method.lookahead": True, "method.reg_subset": None,
                               "method.sparsity": 0.0, "method.l1": 0.001, "hnet.hidden": [10, 10],
                               "hnet.chunk_dim": 42000, "hnet.temb_dim": 96},
    "class_mnist_vae": {"method.beta": 0.01, "target.hidden": [400, 400], "target.activation": "relu",
                        "hnet.hidden": [10, 10], "hnet.chunk_dim": 42000},
}


@pytest.mark.parametrize("preset", sorted(LEGACY))
def test_configs_saved_before_the_registry_load_as_they_ran(preset):
    cfg = load_config(preset)
    new_keys = {"target.name", "benchmark.as_rgb32", "train.epochs_per_task", "train.lr_schedule", "target", "hnet"}
    old = {**{k: v for k, v in cfg.flat().items() if k not in new_keys}, **LEGACY[preset]}
    assert config_from_flat(old, saved=True) == cfg  # MLflow params (best --export, rerun)
    with pytest.raises(ConfigError):
        config_from_flat(old)  # as a new config, the ignored keys are refused


def test_a_run_folder_written_before_the_registry_resumes(tmp_path, data_root):
    cfg = tiny("split_mnist_cl1_hypermask", **{"benchmark.num_tasks": 2, "hnet.chunk_dim": None})
    run_cut_after_first_task(cfg, tmp_path / "old", data_root)
    tree = cfg.model_dump()
    tree["method"]["lookahead"] = False  # as hypercl wrote HyperMask's config before
    del tree["target"]["name"]
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(tree))
    state = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    state["config"] = tree
    torch.save(state, tmp_path / "old" / "checkpoint.pt")
    exp = resume_run(tmp_path / "old", data_root=str(data_root))
    assert exp.tasks_done == 1 and exp.cfg == cfg


def test_registries_declare_each_name_once_with_its_own_section():
    for registry in (METHODS, TARGETS):
        for name, spec in registry.items():
            assert spec.section.model_fields["name"].default == name
    assert set(BENCHMARKS) == {"split_mnist", "permuted_mnist", "regression1d", "class_mnist", "split_cifar",
                               "split_cifar100"}
    with pytest.raises(ValueError, match="registered twice"):
        from hypercl_core.registry import register

        register(METHODS["hnet"])


def test_counts_come_from_the_target_interface():
    """The paper's sizes (Appendix C): SplitMNIST's MLP, and ResNet-32 on split CIFAR-10/100."""
    mnist = count_params(load_config("split_mnist_cl1"))
    assert (mnist.target_weights, mnist.hnet_weights, mnist.task_embedding_weights) == (478_410, 465_192, 480)
    resnet = count_params(load_config("split_cifar_resnet32"))
    assert (resnet.target_weights, resnet.hnet_weights, resnet.task_embedding_weights) == (468_540, 457_144, 192)
    zenke = count_params(load_config("split_cifar_zenke"))
    assert zenke.target_weights == 1_276_508
    for preset in ("split_cifar_resnet32", "split_cifar_zenke"):
        cfg = load_config(preset)
        assert count_params(cfg).target_weights == classifier_target(cfg).num_weights


def test_a_saved_config_round_trips_through_its_yaml():
    for preset in available_presets():
        cfg = load_config(preset)
        assert build_config(yaml.safe_load(cfg.to_yaml()), saved=True) == cfg == build_config(cfg.model_dump())


def test_a_child_preset_whose_method_section_has_no_name_keeps_its_parents_method(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: split_mnist_cl2_ewc\nmethod: {lam: 5.0}\n")
    cfg = load_config(str(child))
    assert (cfg.method.name, cfg.method.lam, cfg.method.gamma) == ("ewc", 5.0, 0.7)
    child.write_text("extends: split_mnist_cl1_hypermask\nmethod: {beta: 0.05}\n")
    cfg = load_config(str(child))
    assert (cfg.method.name, cfg.method.beta, cfg.method.sparsity) == ("hypermask", 0.05, 30.0)
