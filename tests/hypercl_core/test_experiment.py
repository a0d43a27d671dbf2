import json

import numpy as np
import pytest
import torch

from hypercl_core.errors import DataError, UserError
from hypercl_core.experiment import resume_run, start_run
from tests.conftest import run_cut_after_first_task, tiny, tiny_vae, tiny_with_replay


def _run(cfg, path, data_root, **kw):
    return start_run(cfg, path, data_root=str(data_root)).run(show_progress=False, **kw)


def test_run_writes_config_matrix_and_summary(tmp_path, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 3})
    results = _run(cfg, tmp_path / "r", data_root)
    folder = tmp_path / "r"
    for name in ("config.yaml", "checkpoint.pt", "results.json", "matrix.csv", "matrix.png"):
        assert (folder / name).is_file()
    assert results["finished"] and json.loads((folder / "results.json").read_text())["config"] == cfg.model_dump()
    matrix = np.array(results["matrices"]["acc_task_given"], dtype=float)
    assert np.isnan(matrix[0, 1]) and not np.isnan(matrix[2, 0])
    s = results["summary"]
    assert s["final_acc"] == pytest.approx(np.nanmean(matrix[2]))
    assert s["during_acc"] == pytest.approx(np.mean(np.diag(matrix)))
    assert s["final_acc"] > 80  # even 30 steps separate digit pairs
    origin = json.loads((folder / "results.json").read_text())["provenance"]  # the code and command behind it
    assert len(origin["git_commit"]) == 40 and isinstance(origin["git_dirty"], bool)
    assert origin["host"] and origin["hypercl_version"] == results["hypercl_version"] and origin["command"]


def test_same_seed_gives_the_same_result(tmp_path, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 2})
    a = _run(cfg, tmp_path / "a", data_root)
    b = _run(cfg, tmp_path / "b", data_root)
    assert a["matrices"] == b["matrices"]
    c = _run(tiny(**{"benchmark.num_tasks": 2, "seed": 1}), tmp_path / "c", data_root)
    assert c["matrices"] != a["matrices"]


def test_cl1_can_skip_task_inference_without_changing_its_score(tmp_path, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 2})
    full = _run(cfg, tmp_path / "a", data_root)
    lean = _run(tiny(**{"benchmark.num_tasks": 2, "train.eval_inferred": False}), tmp_path / "b", data_root)
    assert set(lean["matrices"]) == {"acc_task_given"}
    assert lean["matrices"]["acc_task_given"] == full["matrices"]["acc_task_given"]
    assert "final_acc_task_inferred" in full["summary"] and "final_acc_task_inferred" not in lean["summary"]
    assert lean["summary"]["trained_compression_ratio"] == pytest.approx(lean["summary"]["compression_ratio"])


def test_resume_equals_uninterrupted(tmp_path, data_root):
    cfg = tiny("split_mnist_cl2", **{"benchmark.num_tasks": 3})
    whole = _run(cfg, tmp_path / "whole", data_root)

    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    exp = resume_run(tmp_path / "cut", data_root=str(data_root))
    assert exp.tasks_done == 1
    resumed = exp.run(show_progress=False)
    assert resumed["matrices"] == whole["matrices"]
    origin = resumed["provenance"]  # the session that started it, with the resuming one appended
    assert origin["command"] == whole["provenance"]["command"] and len(origin["resumes"]) == 1
    assert origin["resumes"][0]["git_commit"] == origin["git_commit"] and "resumes" not in origin["resumes"][0]


def test_resume_accepts_a_run_from_before_a_config_key_existed_but_not_a_changed_one(tmp_path, data_root):
    """A key added later with a default (as replay.init_weight_std was) must not orphan older runs."""
    cfg = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 2})
    run_cut_after_first_task(cfg, tmp_path / "old", data_root)
    checkpoint = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["train"]["eval_inferred"]  # as written before the key existed
    torch.save(state, checkpoint)
    assert resume_run(tmp_path / "old", data_root=str(data_root)).tasks_done == 1

    state["config"]["train"]["lr"] *= 2
    torch.save(state, checkpoint)
    with pytest.raises(UserError, match="different config"):
        resume_run(tmp_path / "old", data_root=str(data_root))


def test_start_refuses_an_existing_run_and_resume_a_non_run(tmp_path, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 1, "train.iters_per_task": 2})
    _run(cfg, tmp_path / "r", data_root)
    with pytest.raises(UserError, match="already holds a run"):
        start_run(cfg, tmp_path / "r")
    with pytest.raises(UserError, match="not a run folder"):
        resume_run(tmp_path)


def test_fine_tuning_forgets_and_the_regularizer_protects(tmp_path, data_root):
    # A shared head (CL2) makes an unprotected hnet overwrite task 0 within a few hundred steps.
    common = {"benchmark.num_tasks": 3, "train.iters_per_task": 150, "hnet.hidden": [16]}
    protected = _run(tiny("split_mnist_cl2", **common, **{"method.beta": 0.05}), tmp_path / "p", data_root)
    finetuned = _run(tiny("split_mnist_cl2", **common, **{"method.beta": 0.0}), tmp_path / "f", data_root)
    first_task = lambda r: r["matrices"]["acc_task_given"][2][0]  # noqa: E731
    assert first_task(protected) > 97
    assert first_task(finetuned) < first_task(protected) - 10
    assert finetuned["summary"]["forgetting"] > protected["summary"]["forgetting"] + 5


def test_regression_reports_mse(tmp_path):
    cfg = tiny("regression1d", **{"train.iters_per_task": 50, "hnet.chunk_dim": None, "hnet.hidden": [10, 10],
                                  "hnet.temb_dim": 2, "target.hidden": [10, 10]})
    results = start_run(cfg, tmp_path / "r").run(show_progress=False)
    assert set(results["matrices"]) == {"mse"} and results["summary"]["final_mse"] > 0


def test_start_and_resume_check_the_data_before_writing(tmp_path, data_root):
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="MNIST file"):
        start_run(tiny(), tmp_path / "r", data_root=nowhere)
    assert not (tmp_path / "r").exists()

    cfg = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 2})
    run_cut_after_first_task(cfg, tmp_path / "cut", data_root)
    written = (tmp_path / "cut" / "config.yaml").read_text()
    with pytest.raises(DataError, match="MNIST file"):
        resume_run(tmp_path / "cut", device="cpu", data_root=nowhere)
    assert (tmp_path / "cut" / "config.yaml").read_text() == written

    # 1D regression generates its data: no MNIST needed
    start_run(tiny("regression1d", **{"hnet.chunk_dim": None}), tmp_path / "reg", data_root=nowhere)
    assert (tmp_path / "reg" / "config.yaml").is_file()


EVERY_METHOD = {
    "hnet_cl1": lambda: tiny(**{"benchmark.num_tasks": 1, "train.iters_per_task": 2}),
    "hnet_cl3": lambda: tiny("split_mnist_cl3", **{"benchmark.num_tasks": 1, "train.iters_per_task": 2}),
    "hnet_regression": lambda: tiny("regression1d", **{"benchmark.num_tasks": 1, "train.iters_per_task": 2,
                                                       "hnet.chunk_dim": None}),
    "hypermask": lambda: tiny("split_mnist_cl3_hypermask", **{"benchmark.num_tasks": 1, "train.iters_per_task": 2,
                                                               "hnet.chunk_dim": None}),
    "replay_vae": lambda: tiny_vae(tasks=1, iters=2),
    "replay_gan": lambda: tiny_vae("replay.model=gan", tasks=1, iters=2),  # carries its dropout RNG state
    "hnet_r": lambda: tiny_with_replay("hnet_r", "cl3", 1, "train.iters_per_task=2"),
    "hnet_tir": lambda: tiny_with_replay("hnet_tir", "cl2", 1, "train.iters_per_task=2"),
}


@pytest.mark.parametrize("method", list(EVERY_METHOD))
def test_every_methods_checkpoint_is_tensors_and_plain_containers(tmp_path, data_root, method):
    """Checkpoints load with weights_only=True, which unpickles nothing but tensors and plain containers."""
    _run(EVERY_METHOD[method](), tmp_path / "r", data_root)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["tasks_done"] == 1
    assert resume_run(tmp_path / "r", data_root=str(data_root)).tasks_done == 1


class _WritesAFile:
    """What a planted checkpoint could do on unpickling: call anything, here open a file for writing."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_checkpoint_with_other_objects_is_refused_unrun(tmp_path, data_root):
    cfg = tiny(**{"benchmark.num_tasks": 2, "train.iters_per_task": 2})
    run_cut_after_first_task(cfg, tmp_path / "r", data_root)
    checkpoint = tmp_path / "r" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "ran"
    state["task_stats"].append({"train_s": _WritesAFile(marker)})
    torch.save(state, checkpoint)
    with pytest.raises(UserError, match="holds objects other than tensors") as info:
        resume_run(tmp_path / "r", data_root=str(data_root))
    assert not marker.exists()
    assert "\n" not in str(info.value)
