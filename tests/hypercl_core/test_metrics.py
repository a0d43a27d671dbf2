"""Which way every metric ranks: one answer (hypercl_core.metrics) for best, sweeps and plots; and the
score-matrix heatmap every run draws (matrix.png)."""

import re

import pytest

from hypercl_core.errors import UserError
from hypercl_core.experiment import Experiment
from hypercl_core.metrics import (
    ScoreMatrix,
    chance_accuracy,
    color_limits,
    higher_is_better,
    lower_is_better,
    matrix_figure,
    metric_mode,
    plot_matrix,
    score_name,
    text_color,
)
from tests.conftest import tiny, tiny_vae, tiny_with_replay

# Every config kind an experiment can run, by method, benchmark and scenario.
CONFIGS = {
    "hnet_split_cl1": lambda: tiny(),
    "hnet_split_cl1_no_inference": lambda: tiny(**{"train.eval_inferred": False}),
    "hnet_split_cl2": lambda: tiny("split_mnist_cl2"),
    "hnet_split_cl3": lambda: tiny("split_mnist_cl3"),
    "hnet_permuted_cl1": lambda: tiny("permuted_mnist10_cl1"),
    "hnet_regression1d": lambda: tiny("regression1d", **{"hnet.chunk_dim": None}),
    "hypermask_cl1": lambda: tiny("split_mnist_cl1_hypermask", **{"hnet.chunk_dim": None}),
    "hypermask_cl3": lambda: tiny("split_mnist_cl3_hypermask", **{"hnet.chunk_dim": None}),
    "replay_vae": lambda: tiny_vae(),
    "replay_gan": lambda: tiny_vae("replay.model=gan"),
    "hnet_r_cl1": lambda: tiny_with_replay("hnet_r", "cl1"),
    "hnet_r_cl2": lambda: tiny_with_replay("hnet_r", "cl2"),
    "hnet_r_cl3": lambda: tiny_with_replay("hnet_r", "cl3"),
    "hnet_tir_cl2": lambda: tiny_with_replay("hnet_tir", "cl2"),
    "hnet_tir_cl3": lambda: tiny_with_replay("hnet_tir", "cl3"),
}

# The direction of each metric, written out by name (what a person reading the table expects).
EXPECTED = {
    "task": "max",  # tasks done
    "during_acc": "max", "final_acc": "max",
    "final_acc_task_given": "max", "final_acc_task_inferred": "max", "final_task_inference_acc": "max",
    "during_mse": "min", "final_mse": "min",
    "during_nll": "min", "final_nll": "min",
    "during_sample_drift": "min", "final_sample_drift": "min",
    "forgetting": "min",  # signed so that > 0 is worse, for accuracies and losses alike
    "train_s": "min", "wall_s": "min", "steps_per_s": "max",
    "compression_ratio": "min", "trained_compression_ratio": "min",
    "infeasible": "min",  # a trial's report: 1 for an architecture that was never trained
}
PER_TASK = re.compile(r"^(?P<score>acc|mse|nll|sample_drift)_task\d+$")


def expected_mode(name: str) -> str:
    per_task = PER_TASK.match(name)
    if per_task:
        return "max" if per_task["score"] == "acc" else "min"
    return EXPECTED[name]


def logged_metrics(cfg, run_dir) -> set[str]:
    """The names an experiment of this config logs: per task (Experiment.metrics), at the end
    (the results summary) and what a sweep trial adds to each report."""
    tasks = 2
    cfg = cfg.model_copy(update={"benchmark": cfg.benchmark.model_copy(update={"num_tasks": tasks})})
    exp = Experiment(cfg, run_dir)  # the learner (and the data) is never built: scores are filled in
    names: set[str] = set()
    for t in range(tasks):
        for matrix in exp.matrices.values():
            matrix.set_row(t, [50.0 + t] * (t + 1))
        exp.task_stats.append({"train_s": 1.0, "eval_s": 0.5, "trained_compression_ratio": 0.1})
        exp.tasks_done = t + 1
        names |= set(exp.metrics(t))
    names |= set(exp.write_results()["summary"])
    return names | {"compression_ratio", "infeasible"}  # orchestrator/trial.py's additions


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_logged_metric_ranks_the_right_way(tmp_path, kind):
    cfg = CONFIGS[kind]()
    names = logged_metrics(cfg, tmp_path)
    assert f"final_{score_name(cfg)}" in names and "forgetting" in names
    for name in sorted(names):
        assert metric_mode(name) == expected_mode(name), name
        assert lower_is_better(name) == (expected_mode(name) == "min"), name
    # the run's own score agrees with the name it logs under
    assert higher_is_better(cfg) == (metric_mode(f"final_{score_name(cfg)}") == "max")


def test_the_config_kinds_cover_every_score_and_matrix():
    """So the table above meets every name an experiment can produce."""
    scores, matrices = set(), set()
    for make in CONFIGS.values():
        cfg = make()
        scores.add(score_name(cfg))
        matrices |= set(Experiment(cfg, ".").matrices)
    assert scores == {"acc", "mse", "nll", "sample_drift"}
    assert matrices == {"acc_task_given", "acc_task_inferred", "task_inference_acc", "mse", "nll", "sample_drift"}


def test_forgetting_of_a_loss_is_positive_when_the_loss_grows():
    """Why forgetting is `min` also for losses: the matrix flips the sign of a loss's drop."""
    loss = ScoreMatrix(2, higher_is_better=not lower_is_better("nll"))
    loss.set_row(0, [1.0])
    loss.set_row(1, [3.0, 1.0])  # task 0's loss grew from 1 to 3: forgotten
    assert loss.forgetting() == pytest.approx(2.0)
    acc = ScoreMatrix(2, higher_is_better=not lower_is_better("acc_task_given"))
    acc.set_row(0, [90.0])
    acc.set_row(1, [70.0, 90.0])
    assert acc.forgetting() == pytest.approx(20.0)


@pytest.mark.parametrize(
    "metric, mode",
    [("best_final_acc", "max"), ("final_acc_mean", "max"), ("final_acc_sem", "min"),
     ("best_final_sample_drift", "min"), ("final_mse_mean", "min"), ("finished_trials", "max")],
)
def test_sweep_summaries_rank_like_their_metric(metric, mode):
    assert metric_mode(metric) == mode


def test_an_unknown_metric_asks_for_the_mode_in_one_line():
    with pytest.raises(UserError, match="--mode") as info:
        metric_mode("final_acuracy")
    assert "\n" not in str(info.value)


def _matrix(rows: list[list[float]], higher_is_better: bool = True) -> ScoreMatrix:
    n = len(rows)
    return ScoreMatrix.from_list([row + [None] * (n - len(row)) for row in rows], higher_is_better)


def test_accuracy_heatmap_scale_is_0_to_100_whatever_the_data():
    """A 1.5-point dip at 99 % must not fill the color scale (the old min-max stretch did)."""
    high = _matrix([[99.9], [99.9, 98.4]])
    low = _matrix([[60.0], [12.0, 55.0], [10.0, 30.0, 58.0]])
    for matrix in (high, low):
        image = matrix_figure(matrix, "acc_task_given", "t").axes[0].images[0]
        assert image.get_clim() == (0.0, 100.0)


def test_loss_heatmap_scale_starts_at_zero_so_colors_are_proportional():
    matrix = _matrix([[0.004], [0.03, 0.005], [0.5, 0.02, 0.006]], higher_is_better=False)
    assert color_limits(matrix, "mse") == (0.0, 0.5)
    flat = _matrix([[120.0], [121.0, 119.0]], higher_is_better=False)  # NLL: no rise stretched to the whole scale
    assert color_limits(flat, "nll") == (0.0, 121.0)


def test_heatmap_ticks_are_1_based_and_the_colorbar_is_labelled():
    fig = matrix_figure(_matrix([[99.0], [98.0, 97.0], [96.0, 95.0, 94.0]]), "acc_task_given", "t")
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3"]
    assert bar.get_ylabel() == "test accuracy, task given (%)"


def test_heatmap_title_carries_final_during_and_forgetting():
    matrix = _matrix([[90.0], [70.0, 80.0]])  # final 75, during 85, forgetting 20
    title = matrix_figure(matrix, "acc_task_given", "split_mnist cl1, hnet").axes[0].get_title()
    assert title == "split_mnist cl1, hnet\nfinal 75.00 % · during 85.00 % · forgetting 20.00 points"


def test_annotations_are_dark_on_light_cells_and_light_on_dark_cells():
    """viridis: 99 % is yellow (black text), 5 % is dark purple (white text)."""
    fig = matrix_figure(_matrix([[99.0], [5.0, 99.0]]), "acc_task_given", "t")
    colors = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colors == {"99.0": "black", "5.0": "white"}
    # for a loss the colormap is reversed: the largest loss is the dark cell
    fig = matrix_figure(_matrix([[0.01], [0.5, 0.01]], higher_is_better=False), "mse", "t")
    assert {t.get_text(): t.get_color() for t in fig.axes[0].texts} == {"0.01": "black", "0.5": "white"}


@pytest.mark.parametrize("rgba, expected", [((1, 1, 0, 1), "black"), ((0.27, 0.0, 0.33, 1), "white"),
                                            ((1, 1, 1, 1), "black"), ((0, 0, 0, 1), "white")])
def test_text_color_is_the_one_with_more_contrast(rgba, expected):
    assert text_color(rgba) == expected


def test_plot_matrix_writes_a_png(tmp_path):
    plot_matrix(_matrix([[99.0], [98.0, 97.0]]), "acc_task_given", "t", tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("preset, expected", [("split_mnist_cl1", 50.0), ("split_mnist_cl2", 50.0),
                                              ("split_mnist_cl3", 10.0), ("permuted_mnist10_cl1", 10.0),
                                              ("permuted_mnist10_cl3", 1.0), ("regression1d", None)])
def test_chance_accuracy_comes_from_the_config(preset, expected):
    """1 / classes one answer picks from: a head's (CL1, CL2) or all tasks' (CL3)."""
    assert chance_accuracy(tiny(preset, **({"hnet.chunk_dim": None} if preset == "regression1d" else {}))) == expected
