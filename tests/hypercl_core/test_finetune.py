"""Fine-tuning, the first method added as one registry module plus its preset."""

import pytest
import torch

from hypercl_core.config import load_config
from hypercl_core.errors import ConfigError
from hypercl_core.experiment import resume_run, start_run
from hypercl_core.methods import build_learner
from tests.conftest import run_cut_after_first_task


def test_finetune_trains_the_target_itself_and_resumes_exactly(tmp_path, data_root):
    cfg = load_config("split_mnist_cl1_finetune", ["benchmark.num_tasks=2", "train.iters_per_task=40",
                                                   "target.hidden=[32]", "device=cpu"])
    whole = start_run(cfg, tmp_path / "whole", data_root=str(data_root)).run(show_progress=False)
    assert set(whole["matrices"]) == {"acc_task_given"} and whole["params"]["compression_ratio"] == 1.0
    assert whole["params"]["hnet_weights"] == 0 and whole["summary"]["final_acc"] > 90
    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    resumed = resume_run(tmp_path / "cut", data_root=str(data_root)).run(show_progress=False)
    assert resumed["matrices"] == whole["matrices"]


def test_finetune_keeps_one_set_of_batch_norm_statistics(data_root):
    cfg = load_config("split_mnist_cl1_finetune", ["benchmark.num_tasks=2", "train.iters_per_task=3",
                                                   "target.name=resnet", "target.depth=8", "benchmark.as_rgb32=true",
                                                   "train.batch_size=8", "train.eval_batch_size=500", "device=cpu"])
    learner = build_learner(cfg, str(data_root))
    learner.learn_task(0)
    after_first = learner.target.norm_state()["bn0.running_mean"].clone()
    learner.learn_task(1)
    means = learner.target.norm_state()["bn0.running_mean"]
    assert not torch.equal(means[0], after_first[0])  # the second task moved the one set on
    assert torch.equal(means[1], torch.zeros(16))  # no second set was ever used


@pytest.mark.parametrize("override, message", [
    ("method.beta=0.01", "unknown config key 'method.beta' in split_mnist_cl1_finetune; method finetune takes: name"),
    ("hnet.hidden=[8]", "method finetune does not use the hnet section (it reads target)"),
])
def test_finetune_takes_no_hypernetwork_keys(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("split_mnist_cl1_finetune", [override])
    assert message in str(err.value)
