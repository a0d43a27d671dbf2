"""`hypercl plot`: a sweep's objective against each searched parameter and the compression ratio.

Everything comes from MLflow (the trials' params, metrics, status and tags),
so the figure can be drawn for a sweep whose folder is gone, from any machine
that reaches the tracking store. The searched parameters are found, not
looked up in a space file: they are the params whose values differ between
trials. A trial's objective is its latest value, so a trial ASHA stopped early
shows the score it had after its last task; it is drawn hollow, since it never
learned the later tasks that pull a final score down.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hypercl_core.errors import UserError
from orchestrator.best import PARENT_KINDS, open_sweep_experiment, sweep_objective
from orchestrator.outcomes import trial_state
from orchestrator.tracking import KIND, decode_params

PLOT_PNG = "sweep_plot.png"  # in the sweep's folder, and on its parent run
RATIO = "compression_ratio"  # in every task's metrics, and a tag set before the first task
LOG_SPAN = 10.0  # a numeric param spanning more than this factor gets a log axis
JITTER = 0.3  # width over which the points of one category are spread


@dataclass(frozen=True)
class Trial:
    """One trial run as the plot needs it."""

    run_id: str
    params: dict[str, Any]  # decoded (orchestrator.tracking.decode_params)
    value: float | None  # the objective's latest value
    ratio: float | None
    state: str  # orchestrator.outcomes.trial_state


@dataclass(frozen=True)
class Panel:
    """One searched parameter: numeric (its values on the x axis) or categorical (one slot per label)."""

    key: str
    categories: list[str] | None  # None: numeric
    log: bool


def read_trials(client, experiment_id: str, name: str, metric: str) -> tuple[str | None, list[Trial]]:
    """The sweep's parent run id (None if it has none) and its trials, infeasible ones included."""
    runs = client.search_runs([experiment_id], max_results=50_000)
    parents = sorted((r for r in runs if r.data.tags.get(KIND) in PARENT_KINDS), key=lambda r: r.info.start_time)
    trials = [_trial(r, metric) for r in runs if r.data.tags.get(KIND) == "trial"]
    if not trials:
        raise UserError(f"sweep {name!r} has no trials yet; plot it once a trial has started")
    if not any(t.value is not None for t in trials):
        raise UserError(f"no trial of sweep {name!r} has logged {metric!r} yet; plot it once a trial finished a task")
    return (parents[-1].info.run_id if parents else None), sorted(trials, key=lambda t: t.run_id)


def _trial(run, metric: str) -> Trial:
    params = decode_params(run.data.params)
    metrics, tags = run.data.metrics, run.data.tags
    ratio = metrics.get(RATIO, float(tags[RATIO]) if RATIO in tags else None)
    return Trial(run.info.run_id, params, metrics.get(metric), ratio, trial_state(run))


def label(value: Any) -> str:
    """A param value as the x axis shows a category: strings as they are, the rest (lists such as
    hnet.hidden, None, booleans) as JSON, so [100, 100] reads as it does in a config."""
    return value if isinstance(value, str) else json.dumps(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_panel(key: str, values: list[float]) -> Panel:
    lo, hi = min(values), max(values)
    return Panel(key, None, lo > 0 and hi / lo > LOG_SPAN)


def searched_panels(trials: list[Trial]) -> list[Panel]:
    """One panel per param whose values differ between these trials (all with params), in the
    params' alphabetical order."""
    panels = []
    for key in sorted({key for t in trials for key in t.params}):
        values = [t.params.get(key) for t in trials]
        if len({label(v) for v in values}) < 2:
            continue
        if all(_numeric(v) for v in values):
            panels.append(_numeric_panel(key, values))
        else:
            panels.append(Panel(key, _ordered({label(v): v for v in values}), False))
    return panels


def _ordered(by_label: dict[str, Any]) -> list[str]:
    """Categories in their values' own order where they compare (numbers, lists of numbers), else by label."""
    try:
        return [lab for lab, _ in sorted(by_label.items(), key=lambda item: item[1])]
    except TypeError:  # mixed kinds, e.g. None beside numbers
        return sorted(by_label)


def _positions(panel: Panel, trials: list[Trial]) -> np.ndarray:
    """x of each trial: its value, or its category's slot with the slot's points spread evenly."""
    if panel.categories is None:
        return np.array([t.params[panel.key] for t in trials], dtype=float)
    slots = np.array([panel.categories.index(label(t.params.get(panel.key))) for t in trials], dtype=float)
    for slot in set(slots):
        members = np.flatnonzero(slots == slot)
        if len(members) > 1:
            slots[members] += np.linspace(-JITTER / 2, JITTER / 2, len(members))
    return slots


# How each state is drawn; infeasible trials logged no params and no score, so they are only counted.
STYLES = {
    "finished": {"label": "finished every task", "color": "tab:blue", "marker": "o"},
    "stopped": {"label": "stopped early by ASHA (score after its last task)", "facecolors": "none",
                "edgecolors": "tab:blue", "marker": "o"},
    "unfinished": {"label": "unfinished (score after its last task so far)", "facecolors": "none",
                "edgecolors": "0.5", "marker": "o"},
    "failed": {"label": "failed (score after its last task)", "color": "tab:red", "marker": "x"},
}


def sweep_figure(name: str, metric: str, mode: str, trials: list[Trial]):
    """One panel per searched param and one for the compression ratio, the objective on a shared y axis."""
    # a trial with a score has params: a trial logs its config before its first task
    drawn = [t for t in trials if t.value is not None and t.params]
    rated = [t for t in drawn if t.ratio is not None]
    panels = searched_panels(drawn)
    if rated:
        panels.append(_numeric_panel(RATIO, [t.ratio for t in rated]))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(3.6 * columns, 2.9 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        shown = rated if panel.key == RATIO else drawn
        x = np.array([t.ratio for t in shown]) if panel.key == RATIO else _positions(panel, shown)
        y = np.array([t.value for t in shown])
        for state, style in STYLES.items():
            chosen = np.array([t.state == state for t in shown], dtype=bool)
            if chosen.any():
                ax.scatter(x[chosen], y[chosen], s=22, linewidths=1.0, alpha=0.85, **style)
        if panel.categories is not None:
            slanted = len(panel.categories) > 3
            ax.set_xticks(range(len(panel.categories)), panel.categories, rotation=30 if slanted else 0,
                          ha="right" if slanted else "center", fontsize=7)
            ax.set_xlim(-0.6, len(panel.categories) - 0.4)
        elif panel.log:
            ax.set_xscale("log")
        ax.set_xlabel(panel.key.replace("_", " ") if panel.key == RATIO else panel.key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)", fontsize=8)
    words = {"finished": "finished", "stopped": "stopped early", "unfinished": "unfinished", "failed": "failed",
             "infeasible": "infeasible (rejected before training, not drawn)"}
    counts = {state: sum(t.state == state for t in trials) for state in words}
    parts = [f"{count} {words[state]}" for state, count in counts.items() if count]
    fig.suptitle(f"sweep {name}: {metric} of {len(trials)} trials\n{', '.join(parts)}", fontsize=9)
    by_label = {h.get_label(): h for ax in axes for h in ax.collections}
    fig.legend(list(by_label.values()), list(by_label), loc="outside lower center", ncols=len(by_label),
               fontsize=7, frameon=False)
    return fig


def check_figure_path(path: Path) -> None:
    """A path matplotlib can write a figure to, refused in one line before anything is read or drawn."""
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"--out {path}: not a figure file; end it in .png (or {', '.join(sorted(formats))})")
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name, e.g. {path / PLOT_PNG}")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"--out {path}: {parent} cannot be written to; pick another folder")


def plot_sweep(tracking_uri: str, runs_dir: Path, name: str, out: Path | None = None) -> Path:
    """Draw the sweep's figure (default: <runs_dir>/sweeps/<name>/sweep_plot.png) and log it on
    the sweep's parent run. Bad input fails before anything is written."""
    if out is not None:
        check_figure_path(Path(out))
    client, experiment = open_sweep_experiment(tracking_uri, name)
    metric, mode = sweep_objective(runs_dir, name, tracking_uri)
    parent, trials = read_trials(client, experiment.experiment_id, name, metric)
    fig = sweep_figure(name, metric, mode, trials)
    path = Path(out) if out is not None else Path(runs_dir) / "sweeps" / name / PLOT_PNG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:  # what the up-front check cannot see (root on a read-only or virtual filesystem)
        raise UserError(f"cannot write {path} ({exc.strerror}); pass another --out") from None
    if parent is not None:
        client.log_artifact(parent, str(path))
    return path
